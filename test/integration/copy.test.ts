// enclave session cp (issue 24): a tar streamed between the CLI, running as
// the caller, and a tar the session's init runs inside the session. Trees
// round-trip with modes, owners and symlinks (copied as links, never
// followed); a hostile session's tar (its own `tar` replaced) never writes
// outside the destination on the host; an endless one stops at
// api.max_copy_mb; a client killed mid-copy leaves no process in the
// session; another tenant cannot copy from or to a session not its own, and
// a tenant's copy writes only what it may write itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { CLI, cliAs, isRoot, TestDaemon, type CliResult } from './harness.js';
import { entry, tarOf } from '../unit/tarCraft.js';

const GID = 48415; // a group nobody on the machine has
const A = { uid: 48411, groups: [GID] };
const B = { uid: 48412, groups: [GID] };
const CAP_MB = 256;

const ok = (r: CliResult, what: string): CliResult => {
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${r.stderr}`);
  return r;
};

/** Every path under dir: type, mode, owner, and content or link target. */
function tree(dir: string, owners = true, at = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of readdirSync(join(dir, at)).sort()) {
    const rel = at ? `${at}/${n}` : n;
    const st = lstatSync(join(dir, rel));
    const who = owners ? ` ${st.uid}:${st.gid}` : '';
    if (st.isSymbolicLink()) out[rel] = `link -> ${readlinkSync(join(dir, rel))}${who}`;
    else if (st.isDirectory()) {
      out[rel] = `dir ${(st.mode & 0o7777).toString(8)}${who}`;
      Object.assign(out, tree(dir, owners, rel));
    } else out[rel] = `file ${(st.mode & 0o7777).toString(8)}${who} ${createHash('sha256').update(readFileSync(join(dir, rel))).digest('hex').slice(0, 16)}`;
  }
  return out;
}

/** The session's processes, by command name (what a copy may leave behind), but the shell asking. */
async function sessionComms(d: TestDaemon, s: string): Promise<string[]> {
  const r = await d.sh(s, 'for p in /proc/[0-9]*; do [ "$p" = /proc/$$ ] && continue; read -r c < $p/comm 2>/dev/null && echo "$c"; done');
  return r.stdout.split('\n').filter(Boolean);
}

async function noneLeft(d: TestDaemon, s: string, names: string[]): Promise<string[]> {
  let left: string[] = [];
  for (let i = 0; i < 50; i++) {
    left = (await sessionComms(d, s)).filter((c) => names.includes(c));
    if (left.length === 0) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
  return left;
}

describe.skipIf(!isRoot)('session cp (root)', () => {
  const d = new TestDaemon({
    topConfig: `socket_gid = ${GID}\n`,
    extraConfig:
      `[api]\nmax_copy_mb = ${CAP_MB}\n` +
      `[access]\nrate_per_minute = 1000\n` +
      `[[access.rules]]\nname = "tenants"\ngids = [${GID}]\nactions = ["session.*"]\nscope = "self"\n`,
  });
  const host = (...p: string[]) => join(d.dir, 'host', ...p);

  beforeAll(async () => {
    await d.start();
    mkdirSync(host(), { recursive: true, mode: 0o755 });
    await d.create({ name: 'cp', tmp_mb: 512 });
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('round-trips a tree host -> session -> host: files, a subdirectory, modes, owners, symlinks as links never followed', async () => {
    const src = host('src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'alpha\n');
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\necho run\n');
    chmodSync(join(src, 'run.sh'), 0o750);
    writeFileSync(join(src, 'sub', 'secret'), 'only me\n');
    chmodSync(join(src, 'sub', 'secret'), 0o600);
    writeFileSync(join(src, 'sub', 'owned'), 'theirs\n');
    chmodSync(join(src, 'sub'), 0o711);
    symlinkSync('/etc/shadow', join(src, 'abs-link'));
    symlinkSync('../a.txt', join(src, 'sub', 'rel-link'));

    // Into an existing directory: it arrives under its own name, owned by the session's root.
    ok(await d.cli(['session', 'cp', src, 'cp:/tmp']), 'cp in');
    const inside = await d.sh('cp', 'cd /tmp/src && stat -c "%n %u:%g %a %F" . a.txt run.sh sub sub/secret abs-link sub/rel-link && readlink abs-link sub/rel-link && cat sub/rel-link && ./run.sh');
    expect(inside.stdout).toBe(
      [
        '. 0:0 755 directory',
        'a.txt 0:0 644 regular file',
        'run.sh 0:0 750 regular file',
        'sub 0:0 711 directory',
        'sub/secret 0:0 600 regular file',
        'abs-link 0:0 777 symbolic link',
        'sub/rel-link 0:0 777 symbolic link',
        '/etc/shadow',
        '../a.txt',
        'alpha',
        'run',
        '',
      ].join('\n'),
    );

    // Owners other than root inside, and a symlink the session plants towards a host-like path.
    ok(await d.sh('cp', 'chown 1000:1000 /tmp/src/sub/owned && chown 1234:5678 /tmp/src/sub && ln -s /etc/passwd /tmp/src/planted'), 'chown');

    // Back to a new host path: the caller's files (root here), modes kept, links still links.
    ok(await d.cli(['session', 'cp', 'cp:/tmp/src', host('back')]), 'cp out');
    const want = { ...tree(src), planted: 'link -> /etc/passwd 0:0' };
    expect(tree(host('back'))).toEqual(want);
    expect(readlinkSync(host('back', 'abs-link'))).toBe('/etc/shadow');

    // -a keeps the session's numbers.
    ok(await d.cli(['session', 'cp', '-a', 'cp:/tmp/src', host('back-a')]), 'cp -a out');
    expect(statSync(host('back-a', 'sub')).uid).toBe(1234);
    expect(statSync(host('back-a', 'sub')).gid).toBe(5678);
    expect(statSync(host('back-a', 'sub', 'owned')).uid).toBe(1000);
    expect(statSync(host('back-a', 'a.txt')).uid).toBe(0);
    expect(tree(host('back-a'), false)).toEqual(tree(host('back'), false));

    // -a into the session keeps the host's numbers; without it they are the session root's.
    chownSync(join(src, 'sub', 'owned'), 4321, 4322);
    ok(await d.cli(['session', 'cp', '--archive', join(src, 'sub'), 'cp:/tmp/arch']), 'cp -a in');
    expect((await d.sh('cp', 'stat -c "%u:%g" /tmp/arch/owned /tmp/arch')).stdout).toBe('4321:4322\n0:0\n');
  });

  it('follows docker cp\'s path rules: /. for contents, a file to a file, a new name, a trailing slash, - for a tar', async () => {
    ok(await d.sh('cp', 'mkdir -p /tmp/rules/d && echo one > /tmp/rules/d/f && echo top > /tmp/rules/t && mkdir /tmp/existing'), 'setup');
    // The contents of a directory into a new host directory, and into an existing one.
    ok(await d.cli(['session', 'cp', 'cp:/tmp/rules/.', host('contents')]), 'contents');
    expect(readdirSync(host('contents')).sort()).toEqual(['d', 't']);
    mkdirSync(host('into'));
    chmodSync(host('into'), 0o700);
    ok(await d.cli(['session', 'cp', 'cp:/tmp/rules/.', host('into')]), 'contents into');
    expect(readdirSync(host('into')).sort()).toEqual(['d', 't']);
    expect(statSync(host('into')).mode & 0o777).toBe(0o700); // an existing directory keeps its mode
    // A file onto a file, and under a new name.
    writeFileSync(host('t.txt'), 'old');
    ok(await d.cli(['session', 'cp', 'cp:/tmp/rules/t', host('t.txt')]), 'file to file');
    expect(readFileSync(host('t.txt'), 'utf8')).toBe('top\n');
    ok(await d.cli(['session', 'cp', host('t.txt'), 'cp:/tmp/existing/renamed']), 'file in, new name');
    ok(await d.cli(['session', 'cp', `${host('contents')}/.`, 'cp:/tmp/existing']), 'contents in');
    expect((await d.sh('cp', 'cd /tmp/existing && ls && cat renamed d/f')).stdout).toBe('d\nrenamed\nt\ntop\none\n');
    // Errors, docker's: a directory onto a file, a missing directory named with a slash, a file asked as a directory.
    const dirToFile = await d.cli(['session', 'cp', 'cp:/tmp/rules/d', host('t.txt')]);
    expect([dirToFile.code, dirToFile.stderr]).toEqual([1, expect.stringMatching(/cannot copy a directory to .*t\.txt/)]);
    expect((await d.cli(['session', 'cp', 'cp:/tmp/rules/t', `${host('nope')}/`])).stderr).toMatch(/no such directory/);
    expect((await d.cli(['session', 'cp', 'cp:/tmp/rules/t/', host('x')])).stderr).toMatch(/not a directory/);
    expect((await d.cli(['session', 'cp', host('contents'), 'cp:/tmp/rules/t'])).stderr).toMatch(/cannot copy a directory to \/tmp\/rules\/t/);
    const missing = await d.cli(['session', 'cp', 'cp:/tmp/none', host('x')]);
    expect([missing.code, missing.stderr]).toEqual([1, expect.stringContaining('/tmp/none: no such file or directory in the session')]);
    expect(existsSync(host('x'))).toBe(false);
    // - : the session's tar on stdout, a tar from stdin into a directory.
    const out = await d.cli(['session', 'cp', 'cp:/tmp/rules', '-']);
    expect(out.code).toBe(0);
    expect(spawnSync('tar', ['-tf', '-'], { input: out.stdoutBytes, encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort()).toEqual(['rules/', 'rules/d/', 'rules/d/f', 'rules/t']);
    ok(await d.cli(['session', 'cp', '-', 'cp:/tmp/existing'], out.stdoutBytes), 'stdin in');
    expect((await d.sh('cp', 'cat /tmp/existing/rules/d/f')).stdout).toBe('one\n');
    // Usage: both sides on the host, a relative session path.
    expect((await d.cli(['session', 'cp', host('a'), host('b')])).code).toBe(2);
    expect((await d.cli(['session', 'cp', 'cp:tmp', host('b')])).stderr).toMatch(/must be absolute/);
  });

  it('streams a large file without holding it: 200 MiB both ways, byte-exact', async () => {
    const big = host('big.bin');
    const chunk = randomBytes(1024 * 1024);
    writeFileSync(big, Buffer.concat(Array.from({ length: 200 }, (_, i) => (i % 2 ? chunk : chunk.reverse()))));
    const sum = createHash('sha256').update(readFileSync(big)).digest('hex');
    const t0 = Date.now();
    ok(await d.cli(['session', 'cp', big, 'cp:/tmp/big.bin']), 'big in');
    expect((await d.sh('cp', 'sha256sum /tmp/big.bin')).stdout.split(' ')[0]).toBe(sum);
    ok(await d.cli(['session', 'cp', 'cp:/tmp/big.bin', host('big-back.bin')]), 'big out');
    expect(createHash('sha256').update(readFileSync(host('big-back.bin'))).digest('hex')).toBe(sum);
    console.log(`200 MiB in and out in ${Date.now() - t0} ms`);
    await d.sh('cp', 'rm /tmp/big.bin');
    rmSync(big);
    rmSync(host('big-back.bin'));
  });

  it('a hostile session\'s tar (its own tar replaced) never writes outside the destination on the host', async () => {
    await d.create({ name: 'evil' });
    const outside = host('outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'victim'), 'original\n');
    const dest = host('evil-dest');
    mkdirSync(dest);
    const before = readdirSync(host()).sort();
    const dir = (path: string) => entry({ path, type: 'Directory', mode: 0o755 });
    const cases: Record<string, Buffer> = {
      benign: tarOf(dir('B/'), entry({ path: 'B/marker' }, 'from the fake tar\n')),
      dotdot: tarOf(dir('B/'), entry({ path: 'B/../../outside/pwned' }, 'pwned')),
      absolute: tarOf(dir('B/'), entry({ path: join(outside, 'pwned') }, 'pwned')),
      'pax-dotdot': tarOf(dir('B/'), entry({ path: 'B/innocent', pax: { path: 'B/../../outside/pwned' } }, 'pwned')),
      'symlink-then-file': tarOf(dir('B/'), entry({ path: 'B/l', type: 'SymbolicLink', linkpath: outside }), entry({ path: 'B/l/pwned' }, 'pwned')),
      'symlink-to-etc-then-file': tarOf(dir('B/'), entry({ path: 'B/etc', type: 'SymbolicLink', linkpath: '/etc' }), entry({ path: 'B/etc/enclave-pwned' }, 'pwned')),
      'hard-link': tarOf(dir('B/'), entry({ path: 'B/h', type: 'Link', linkpath: join(outside, 'victim') })),
      'same-name-over-symlink': tarOf(dir('B/'), entry({ path: 'B/f', type: 'SymbolicLink', linkpath: join(outside, 'victim') }), entry({ path: 'B/f' }, 'pwned')),
    };
    const setup = [
      'mkdir -p /tmp/evil /tmp/B',
      // The session's tar, replaced: whatever it is asked for, it sends the crafted tar named in /tmp/evil/which.
      `printf '%s\\n' '#!/bin/sh' 'exec cat "/tmp/evil/$(cat /tmp/evil/which)"' > /usr/local/bin/tar`,
      'chmod 755 /usr/local/bin/tar',
    ].join(' && ');
    ok(await d.sh('evil', setup), 'plant tar');
    for (const [name, tar] of Object.entries(cases)) ok(await d.sh('evil', `cat > /tmp/evil/${name}`, tar), `put ${name}`);
    const run = async (name: string) => {
      ok(await d.sh('evil', `echo ${name} > /tmp/evil/which`), 'which');
      return d.cli(['session', 'cp', 'evil:/tmp/B', dest]);
    };
    // The fake tar is what the copy reads: a benign crafted tar arrives as crafted.
    ok(await run('benign'), 'benign');
    expect(readFileSync(join(dest, 'B', 'marker'), 'utf8')).toBe('from the fake tar\n');
    for (const name of ['dotdot', 'absolute', 'pax-dotdot', 'symlink-then-file', 'symlink-to-etc-then-file', 'hard-link']) {
      const r = await run(name);
      expect(r.code, name).toBe(1);
      expect(r.stderr, name).toMatch(/refused/);
    }
    // A file over a symlink the tar made replaces the link; it is never written through.
    ok(await run('same-name-over-symlink'), 'same name');
    expect(lstatSync(join(dest, 'B', 'f')).isFile()).toBe(true);
    expect(tree(outside)).toEqual({ victim: expect.stringMatching(/^file 644 0:0 /) });
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('original\n');
    expect(existsSync('/etc/enclave-pwned')).toBe(false);
    expect(readdirSync(host()).sort()).toEqual(before);
    expect(readdirSync(dest)).toEqual(['B']);
  });

  it('an endless tar from a session stops at api.max_copy_mb, and leaves nothing running in the session', async () => {
    const head = entry({ path: 'B/endless', size: 4 * 1024 ** 3 }).subarray(0, 512);
    ok(await d.sh('evil', 'cat > /tmp/evil/endless.head', head), 'put head');
    ok(await d.sh('evil', `printf '%s\\n' '#!/bin/sh' 'cat /tmp/evil/endless.head; exec cat /dev/zero' > /usr/local/bin/tar`), 'endless tar');
    const dest = host('endless-dest');
    mkdirSync(dest);
    const t0 = Date.now();
    const r = await d.cli(['session', 'cp', 'evil:/tmp/B', dest]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`the stream passed ${CAP_MB} MiB (api.max_copy_mb)`);
    expect(statSync(join(dest, 'B', 'endless')).size).toBeLessThanOrEqual(CAP_MB * 1024 * 1024);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(await noneLeft(d, 'evil', ['cat', 'sh', 'tar'])).toEqual([]);
    rmSync(dest, { recursive: true });
  });

  it('a client killed mid-copy leaves no process in the session, either way', async () => {
    // Out: the session's real tar reads a 50 GiB sparse file; the CLI is killed once bytes land.
    ok(await d.sh('cp', 'truncate -s 50G /tmp/huge && mkdir -p /tmp/slow-in'), 'huge');
    const dest = host('killed-out');
    mkdirSync(dest);
    const out = spawn(process.execPath, [CLI, 'session', 'cp', 'cp:/tmp/huge', dest], { env: { ...process.env, ENCLAVE_SOCKET: d.socket }, stdio: 'ignore' });
    for (let i = 0; i < 200 && !(existsSync(join(dest, 'huge')) && statSync(join(dest, 'huge')).size > 0); i++) await new Promise((r) => setTimeout(r, 25));
    expect(statSync(join(dest, 'huge')).size).toBeGreaterThan(0);
    expect(await sessionComms(d, 'cp')).toContain('tar');
    out.kill('SIGKILL');
    expect(await noneLeft(d, 'cp', ['tar', 'sh'])).toEqual([]);

    // In: a tar on the CLI's stdin that never ends; the session's tar -x waits for more until the CLI is killed.
    const cin = spawn(process.execPath, [CLI, 'session', 'cp', '-', 'cp:/tmp/slow-in'], { env: { ...process.env, ENCLAVE_SOCKET: d.socket }, stdio: ['pipe', 'ignore', 'ignore'] });
    cin.stdin.on('error', () => undefined);
    cin.stdin.write(entry({ path: 'part', size: 1024 ** 3 }).subarray(0, 512));
    cin.stdin.write(Buffer.alloc(1024 * 1024, 7));
    let seen = false;
    for (let i = 0; i < 100 && !seen; i++) {
      seen = (await d.sh('cp', 'test -s /tmp/slow-in/part && echo yes')).stdout === 'yes\n';
      if (!seen) await new Promise((r) => setTimeout(r, 50));
    }
    expect(seen).toBe(true);
    expect(await sessionComms(d, 'cp')).toContain('tar');
    cin.kill('SIGKILL');
    expect(await noneLeft(d, 'cp', ['tar', 'sh'])).toEqual([]);
    await d.sh('cp', 'rm -rf /tmp/huge /tmp/slow-in');
  });

  it('a stopped session is refused either way, saying to start it', async () => {
    await d.create({ name: 'cold', tmp_mb: 16 });
    ok(await d.cli(['session', 'stop', 'cold']), 'stop');
    writeFileSync(host('cold-file'), 'x\n');
    for (const args of [['cold:/tmp', host('cold-out')], [host('cold-file'), 'cold:/tmp/']]) {
      const r = await d.cli(['session', 'cp', ...args]);
      expect([r.code, r.stderr], args.join(' ')).toEqual([1, expect.stringContaining('is stopped; start it first')]);
    }
    expect(existsSync(host('cold-out'))).toBe(false);
    await d.destroy('cold');
  });

  it('another tenant cannot copy from or to a session not its own; a tenant\'s copy reads and writes only as itself', async () => {
    const small = ['--memory', '256', '--pids', '256', '--tmp-size', '64'];
    const made = JSON.parse(ok(await cliAs(d.socket, A, ['session', 'create', '--name', 'mine', '--json', ...small]), 'A create').stdout) as { id: string };
    const aHome = host('a');
    mkdirSync(aHome);
    chownSync(aHome, A.uid, A.uid);
    chmodSync(aHome, 0o700);
    writeFileSync(join(aHome, 'notes'), 'A notes\n');
    chownSync(join(aHome, 'notes'), A.uid, A.uid);
    const as = (who: typeof A, args: string[]) => cliAs(d.socket, who, ['session', 'cp', ...args]);

    ok(await as(A, [join(aHome, 'notes'), 'mine:/tmp/']), 'A in');
    ok(await as(A, ['mine:/tmp/notes', join(aHome, 'back')]), 'A out');
    expect(statSync(join(aHome, 'back')).uid).toBe(A.uid);
    expect(readFileSync(join(aHome, 'back'), 'utf8')).toBe('A notes\n');
    // The CLI runs as A: it cannot write where A cannot, nor read what A cannot.
    const intoRoot = await as(A, ['mine:/tmp/notes', '/root/enclave-cp-stolen']);
    expect(intoRoot.code).toBe(1);
    expect(existsSync('/root/enclave-cp-stolen')).toBe(false);
    const shadow = await as(A, ['/etc/shadow', 'mine:/tmp/']);
    expect([shadow.code, shadow.stderr]).toEqual([1, expect.stringMatching(/EACCES|permission denied/i)]);
    expect((await cliAs(d.socket, A, ['session', 'exec', 'mine', '--', 'ls', '/tmp'])).stdout).toBe('notes\n');
    const archive = await as(A, ['-a', 'mine:/tmp/notes', join(aHome, 'a')]);
    expect([archive.code, archive.stderr]).toEqual([1, expect.stringContaining('needs root')]);

    // B, by name, qualified name and id, either way.
    writeFileSync(host('b-file'), 'from B\n');
    for (const ref of ['mine', `${A.uid}:mine`, made.id]) {
      const from = await as(B, [`${ref}:/tmp/notes`, '/tmp/enclave-cp-b']);
      expect(from.code, ref).toBe(1);
      expect(from.stderr, ref).toMatch(/no session|denied|not allowed|may not/i);
      const to = await as(B, [host('b-file'), `${ref}:/tmp/`]);
      expect(to.code, ref).toBe(1);
    }
    expect(existsSync('/tmp/enclave-cp-b')).toBe(false);
    expect((await cliAs(d.socket, A, ['session', 'exec', 'mine', '--', 'ls', '/tmp'])).stdout).toBe('notes\n');
    const events = (JSON.parse(ok(await d.cli(['events', '--session', made.id, '--json']), 'events').stdout) as { events: { caller_uid: number; action: string; decision: string }[] }).events;
    expect(events.filter((e) => e.caller_uid === B.uid && e.action === 'session.cp' && e.decision === 'deny').length).toBeGreaterThan(0);
  });
});
