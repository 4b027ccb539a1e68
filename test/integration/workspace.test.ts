// Sessions as workspaces: the minimal root shows nothing of the host's data,
// and under the workspace profile root inside can bind :80, chown, su and
// install packages into a writable, size-capped layer, while the host's files
// never change. Under strict, each of those is refused as before profiles.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { isRoot, listenPort, TestDaemon } from './harness.js';

const hash = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

/** Host places outside the minimal root, where the test leaves a sentinel file and a 0777 UNIX socket. */
const OUTSIDE = ['/var/tmp', '/srv', '/opt', '/home'];
const SENTINEL_PREFIX = 'enclave-it-sentinel-';

/**
 * What a host user outside an entry's owner and group cannot read under
 * `root`, topmost only: a directory without both o+r and o+x, or a file
 * (not a link) without o+r. Walked here with lstat, on root's own
 * filesystem (the session's layer is that mount alone), independently of
 * how the daemon finds them.
 */
function unreadableByOthers(root: string): string[] {
  const dev = lstatSync(root).dev;
  const out: string[] = [];
  const visit = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = lstatSync(p, { throwIfNoEntry: false });
      if (!st || st.isSymbolicLink()) continue;
      if (st.isDirectory()) {
        if ((st.mode & 0o005) !== 0o005) out.push(p);
        else if (st.dev === dev) visit(p);
      } else if ((st.mode & 0o004) === 0) out.push(p);
    }
  };
  visit(root);
  return out;
}

/** A non-empty world-readable file near `hidden` (below its parent, not under a hidden entry): the control that /usr still reads. */
function readableNeighbour(hidden: string, all: string[]): string | undefined {
  const queue = [dirname(hidden)];
  while (queue.length > 0) {
    const dir = queue.shift()!;
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (all.some((h) => p === h || p.startsWith(`${h}/`))) continue;
      const st = lstatSync(p);
      if (st.isFile() && (st.mode & 0o004) !== 0 && st.size > 0) return p;
      if (st.isDirectory() && (st.mode & 0o005) === 0o005) queue.push(p);
    }
  }
  return undefined;
}

describe.skipIf(!isRoot)('workspace sessions and the minimal root (root)', () => {
  const d = new TestDaemon();
  const port = listenPort(53);
  const sentinels: string[] = [];
  const servers: Server[] = [];
  let debPath: string;
  let pyTar: string;
  let npmTgz: string;

  beforeAll(async () => {
    // Leftovers of an earlier, killed run first.
    for (const dir of OUTSIDE) for (const n of readdirSync(dir)) if (n.startsWith(SENTINEL_PREFIX)) rmSync(join(dir, n), { recursive: true, force: true });
    for (const dir of OUTSIDE) {
      const mine = join(dir, `${SENTINEL_PREFIX}${d.runId}`);
      mkdirSync(mine, { mode: 0o755 });
      chmodSync(mine, 0o755);
      writeFileSync(join(mine, 'secret.txt'), 'host data\n', { mode: 0o644 });
      const sock = join(mine, 'service.sock');
      const srv = createServer((c) => c.end('reached\n'));
      await new Promise<void>((r) => srv.listen(sock, r));
      chmodSync(sock, 0o777);
      servers.push(srv);
      sentinels.push(mine);
    }
    await d.start();
    // A package, a Python project and an npm tarball, built on the host, installed inside.
    const pkg = join(d.dir, 'deb');
    mkdirSync(join(pkg, 'DEBIAN'), { recursive: true });
    mkdirSync(join(pkg, 'usr/local/bin'), { recursive: true });
    writeFileSync(join(pkg, 'DEBIAN/control'), 'Package: enclave-it-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: Enclave tests <t@example.invalid>\nDescription: test package\n');
    writeFileSync(join(pkg, 'usr/local/bin/enclave-it-hello'), '#!/bin/sh\necho hello-from-deb\n', { mode: 0o755 });
    debPath = join(d.dir, 'hello.deb');
    execFileSync('dpkg-deb', ['--root-owner-group', '-b', pkg, debPath], { stdio: 'ignore' });
    const py = join(d.dir, 'py');
    mkdirSync(join(py, 'enclave_it_probe'), { recursive: true });
    writeFileSync(join(py, 'setup.py'), 'from setuptools import setup\nsetup(name="enclave-it-probe", version="1.0", packages=["enclave_it_probe"])\n');
    writeFileSync(join(py, 'enclave_it_probe/__init__.py'), 'WHERE = __file__\n');
    pyTar = join(d.dir, 'py.tar');
    execFileSync('tar', ['-C', py, '-cf', pyTar, '.']);
    const js = join(d.dir, 'js');
    mkdirSync(js);
    writeFileSync(join(js, 'package.json'), JSON.stringify({ name: 'enclave-it-npm', version: '1.0.0', bin: { 'enclave-it-npm': 'cli.js' } }));
    writeFileSync(join(js, 'cli.js'), '#!/usr/bin/env node\nconsole.log("hello-from-npm");\n', { mode: 0o755 });
    const packed = execFileSync('npm', ['pack', '--silent', '--pack-destination', d.dir], { cwd: js, encoding: 'utf8' }).trim().split('\n').pop()!;
    npmTgz = join(d.dir, packed);
    await d.create({ name: 'ws', publish: [{ host_ip: '127.0.0.1', host_port: port, session_port: 80 }] });
    await d.create({ name: 'st', profile: 'strict' });
  }, 60_000);
  afterAll(async () => {
    for (const s of servers) s.close();
    for (const p of sentinels) rmSync(p, { recursive: true, force: true });
    await d.cleanup();
  });

  it.each(['ws', 'st'])('%s: sees no host data outside the OS and cannot reach a host UNIX socket', async (s) => {
    for (const dir of sentinels) {
      const py = `import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n  s.connect("${dir}/service.sock"); print("reached")\nexcept OSError as e:\n  print(e.strerror)`;
      const r = await d.sh(s, `cat ${dir}/secret.txt 2>&1; python3 -c '${py}'`);
      expect(r.stdout).not.toContain('host data');
      expect(r.stdout).not.toContain('reached');
      expect(r.stdout).toMatch(/No such file or directory[\s\S]*No such file or directory/);
    }
    // The sockets do answer on the host: the test's control.
    const answer = await new Promise<string>((resolve, reject) => {
      const c = connect(join(sentinels[0]!, 'service.sock'));
      let got = '';
      c.on('data', (b: Buffer) => (got += b.toString()));
      c.on('end', () => resolve(got.trim()));
      c.on('error', reject);
    });
    expect(answer).toBe('reached');
  });

  let hiddenOnHost: string[] | undefined;
  it.each(['ws', 'st'])('%s: shows nothing of the host\'s /usr that other host users cannot read; the rest of /usr reads', async (s) => {
    const hidden = (hiddenOnHost ??= unreadableByOthers('/usr'));
    if (hidden.length === 0) {
      // This image has /usr/share/polkit-1/rules.d 0700: CI must find it.
      if (process.env.CI) throw new Error('no entry under /usr is unreadable by other users on this CI host: the image changed, and this test proves nothing');
      console.warn('\n*** this host has no entry under /usr that other users cannot read: the /usr hiding test is SKIPPED ***\n');
      return;
    }
    if (process.env.CI) expect(hidden).toContain('/usr/share/polkit-1/rules.d');
    // Masked in the stored plan, which the session keeps whatever the daemon finds later.
    const db = new Database(join(d.stateDir, 'enclave.db'), { readonly: true });
    try {
      const row = db.prepare('SELECT plan FROM session_plans WHERE session_id = ?').get((await d.show(s)).id) as { plan: string };
      const masks = (JSON.parse(row.plan) as { ops: { op: string; args: string[] }[] }).ops.filter((o) => o.op === 'mask').map((o) => `/${o.args[0]}`);
      for (const p of hidden) expect(masks).toContain(p);
    } finally {
      db.close();
    }
    for (const p of hidden) {
      const st = lstatSync(p);
      // A directory: its names, what is in it, and no way to write there; a file: its bytes (an empty mask reads as nothing).
      const inside = st.isDirectory() ? readdirSync(p).slice(0, 20) : [];
      const probe = st.isDirectory()
        ? `ls -A '${p}' 2>/dev/null; ${inside.map((n) => `head -c 64 '${p}/${n}' 2>/dev/null; `).join('')}touch '${p}/enclave-it-probe' 2>/dev/null && echo wrote`
        : `head -c 64 '${p}' 2>/dev/null`;
      const r = await d.sh(s, probe);
      expect([p, r.stdout]).toEqual([p, '']);
      const near = readableNeighbour(p, hidden);
      expect(near, `a readable file near ${p}`).toBeDefined();
      const control = await d.sh(s, `sha256sum '${near}'`);
      expect(control.stdout.split(' ')[0]).toBe(hash(near!));
    }
  });

  it('has an /etc of system accounts only, with every password locked', async () => {
    const r = await d.sh('ws', 'cut -d: -f3 /etc/passwd; echo ===; cut -d: -f2 /etc/shadow | sort -u; echo ===; ls /var; find /srv /opt /mnt -mindepth 1 | wc -l');
    const [uids, pw, rest] = r.stdout.split('===\n');
    for (const uid of uids!.trim().split('\n').map(Number)) expect(uid < 1000 || uid === 65534, `uid ${uid}`).toBe(true);
    expect(pw!.trim()).toBe('*');
    expect(rest).toMatch(/^backups\ncache\nlib\nlocal\nlock\nlog\nmail\nopt\nrun\nspool\ntmp\n0\n$/);
  });

  it('workspace: binds :80, and the published port reaches it from the host; strict: EACCES', async () => {
    await d.sh('ws', 'cd /tmp && setsid python3 -m http.server 80 --bind 0.0.0.0 </dev/null >/dev/null 2>&1 &');
    let body = '';
    for (let i = 0; i < 50 && !body; i++) {
      // Each try bounded: one that meets the server half-started is retried, not waited on.
      body = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) }).then((r) => (r.ok ? r.text() : ''), () => '');
      if (!body) await new Promise((r) => setTimeout(r, 100));
    }
    expect(body).toMatch(/Directory listing/);
    const st = await d.sh('st', 'python3 -c "import socket; socket.socket().bind((\\"0.0.0.0\\", 80))" 2>&1 | tail -1');
    expect(st.stdout).toMatch(/PermissionError: \[Errno 13\]/);
  });

  it('publishes and unpublishes a port while the session runs, with the conflict rules of create', async () => {
    const more = listenPort(54);
    const fetchBody = () => fetch(`http://127.0.0.1:${more}/`, { signal: AbortSignal.timeout(3000) }).then((r) => r.text(), () => '');
    expect(await fetchBody()).toBe('');
    const pub = await d.cli(['session', 'publish', 'ws', `${more}:80`]);
    expect([pub.code, pub.stdout]).toEqual([0, `127.0.0.1:${port} -> 80/tcp\n127.0.0.1:${more} -> 80/tcp\n`]);
    expect(await fetchBody()).toMatch(/Directory listing/); // the server of the test above
    const again = await d.cli(['session', 'publish', 'st', `127.0.0.1:${more}:80`]);
    expect([again.code, again.stderr]).toEqual([1, expect.stringMatching(`127.0.0.1:${more} is already published by session`)]);
    const wide = await d.cli(['session', 'publish', 'ws', `0.0.0.0:${more + 1}:80`]);
    expect(wide.stderr).toMatch(/must be a loopback address/);
    // A host port something else listens on: refused, and nothing recorded.
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(more + 2, '127.0.0.1', r));
    const taken = await d.cli(['session', 'publish', 'ws', `${more + 2}:80`]);
    busy.close();
    expect(taken.stderr).toMatch(/the host port is already in use/);
    expect((await d.show('ws')).network.published.map((p) => p.host_port)).toEqual([port, more]);
    const un = await d.cli(['session', 'unpublish', 'ws', String(more)]);
    expect([un.code, un.stderr]).toEqual([0, '']);
    expect(await fetchBody()).toBe('');
    expect((await d.cli(['session', 'unpublish', 'ws', String(more)])).stderr).toMatch(/does not publish 127.0.0.1:/);
  });

  it('workspace: chown, su to nobody and dpkg -i work; strict refuses each', async () => {
    const script = 'touch /tmp/f && chown 1000:1000 /tmp/f && stat -c %u:%g /tmp/f; su -s /bin/sh nobody -c id 2>&1; cat > /tmp/h.deb && dpkg -i /tmp/h.deb >/dev/null 2>&1; enclave-it-hello 2>&1; dpkg -s enclave-it-hello 2>&1 | grep Status';
    const ws = await d.sh('ws', script, readFileSync(debPath));
    expect(ws.stdout).toBe('1000:1000\nuid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\nhello-from-deb\nStatus: install ok installed\n');
    const st = await d.sh('st', script, readFileSync(debPath));
    expect(st.stdout).not.toContain('1000:1000');
    expect(st.stderr).toMatch(/chown: changing ownership of '\/tmp\/f': Operation not permitted/);
    expect(st.stdout).toMatch(/su: cannot set groups: Operation not permitted/);
    expect(st.stdout).not.toContain('hello-from-deb');
    expect(existsSync('/usr/local/bin/enclave-it-hello')).toBe(false);
  });

  it('workspace: pip and npm install into the session layer; the host sees nothing', async () => {
    const pip = await d.sh('ws', 'mkdir /tmp/py && tar -C /tmp/py -xf - && cd /tmp && python3 -m pip install -q --no-index --no-build-isolation --break-system-packages /tmp/py 2>/dev/null; python3 -c "import enclave_it_probe as p; print(p.WHERE)"', readFileSync(pyTar));
    expect(pip.stdout.trim()).toMatch(/^\/usr\/local\/lib\/python3[.\d]*\/dist-packages\/enclave_it_probe\/__init__\.py$/);
    expect(existsSync(pip.stdout.trim())).toBe(false);
    const npm = await d.sh('ws', 'cat > /tmp/p.tgz && npm install -g --offline --no-audit --no-fund /tmp/p.tgz >/dev/null 2>&1; enclave-it-npm; npm root -g', readFileSync(npmTgz));
    expect(npm.stdout.split('\n')[0]).toBe('hello-from-npm');
    expect(existsSync(join(npm.stdout.split('\n')[1]!, 'enclave-it-npm'))).toBe(false);
    // Under strict the system site is read-only, so pip falls back to a user install in root's HOME (/root, a tmpfs of its own).
    const st = await d.sh('st', 'mkdir /tmp/py && tar -C /tmp/py -xf - && cd /tmp && python3 -m pip install -q --no-index --no-build-isolation --break-system-packages /tmp/py >/dev/null 2>&1; python3 -c "import enclave_it_probe as p; print(p.WHERE)"; touch /usr/local/lib/x 2>&1', readFileSync(pyTar));
    expect(st.stdout.split('\n')[0]).toMatch(/^\/root\/\.local\/lib\/python3[.\d]*\/site-packages\/enclave_it_probe\/__init__\.py$/);
    expect(st.stdout).toMatch(/Read-only file system/);
  });

  it('workspace: a write over a host file in /usr lands in the session layer; the host file is unchanged', async () => {
    const target = '/usr/lib/os-release';
    const before = hash(target);
    const ws = await d.sh('ws', `echo ENCLAVE_IT_CHANGED >> ${target} && tail -1 ${target}; echo x > /usr/share/enclave-it-new && echo new`);
    expect(ws.stdout).toBe('ENCLAVE_IT_CHANGED\nnew\n');
    expect(hash(target)).toBe(before);
    expect(existsSync('/usr/share/enclave-it-new')).toBe(false);
    const st = await d.sh('st', `echo x >> ${target} 2>&1; echo x > /etc/enclave-it 2>&1`);
    expect((st.stdout + st.stderr).match(/Read-only file system/g)?.length).toBe(2);
    expect(hash(target)).toBe(before);
  });

  it('workspace: the root layer ends in ENOSPC at --root-size, and the session goes on', async () => {
    await d.create({ name: 'small', root_mb: 8 });
    const r = await d.sh('small', 'dd if=/dev/zero of=/opt/fill bs=1M count=32 2>&1 | grep -o "No space left on device"; rm /opt/fill; echo fine > /usr/ok && cat /usr/ok');
    expect(r.stdout).toBe('No space left on device\nfine\n');
    expect((await d.show('small')).limits.root_mb).toBe(8);
  });

  it('refuses --root-size for a strict session, and an unknown profile, before creating anything', async () => {
    const bad = await d.api('POST', '/v1/sessions', { profile: 'strict', root_mb: 8 });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toMatch(/root_mb needs a writable root/);
    const unknown = await d.cli(['session', 'create', '--profile', 'root']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--profile/);
    expect((await d.show('st')).profile).toBe('strict');
    expect((await d.show('ws')).profile).toBe('workspace');
  });
});
