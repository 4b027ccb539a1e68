// Volumes' data (issue 24): used bytes from the filesystem, online growth
// (never a shrink), export and import of their contents, and snapshots that
// carry a session's settings and its volumes' contents into `create --from`.
// A snapshot is hostile input: a manifest that does not fit is refused
// before anything is made. Another tenant can neither grow nor read your
// volume, and growth is charged to the owner's budget.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { volumeSchema, type Volume } from '../../src/api/schemas.js';
import { cliAs, isRoot, listenPort, requestsAs, TestDaemon, type CliResult } from './harness.js';

const MIB = 1024 * 1024;

const ok = (r: CliResult, what: string): CliResult => {
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${r.stderr}`);
  return r;
};

/** The volumes as the API lists them (root: every owner's). */
async function volumes(d: TestDaemon): Promise<Volume[]> {
  return (JSON.parse(ok(await d.cli(['volume', 'list', '--json']), 'volume list').stdout) as { volumes: unknown[] }).volumes.map((v) => volumeSchema.parse(v));
}

/** Owners, modes, types and link targets of a tree, and a file's content: what a round trip must keep. */
const TREE = (root: string) =>
  `cd ${root} && find . -mindepth 1 | sort | while read -r p; do stat -c "%n %u:%g %a %F %h" "$p"; done; readlink abs rel; cat tree/notes`;

describe.skipIf(!isRoot)('volume data: used bytes, resize, export and import, snapshots with settings and volumes (root)', () => {
  const d = new TestDaemon();
  const port = listenPort(55);
  const file = (n: string) => join(d.dir, n);

  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('shows used bytes as df does, and they move when a file is written inside', async () => {
    ok(await d.cli(['volume', 'create', 'data', '--size', '64']), 'create');
    const before = volumeSchema.parse(JSON.parse(ok(await d.cli(['volume', 'show', 'data', '--json']), 'show').stdout));
    expect(before.used_bytes).toEqual(expect.any(Number));
    await d.create({ name: 'u', volumes: [{ name: 'data', target: '/data' }] });
    const df = ok(await d.sh('u', 'dd if=/dev/urandom of=/data/blob bs=1M count=8 2>/dev/null && sync && df -B1 --output=used /data | tail -1'), 'write');
    const after = volumeSchema.parse(JSON.parse(ok(await d.cli(['volume', 'show', 'data', '--json']), 'show').stdout));
    expect(after.used_bytes! - before.used_bytes!).toBeGreaterThanOrEqual(8 * MIB);
    // The same statfs the session's df reads.
    expect(after.used_bytes).toBe(Number(df.stdout.trim()));
    expect(ok(await d.cli(['volume', 'list']), 'list').stdout).toMatch(/^NAME\s+SIZE\s+USED\s+OWNER\s+USED BY\ndata\s+64 MiB\s+\d+\.\d MiB\s+0\s+u:\/data$/m);
    expect(ok(await d.cli(['volume', 'show', 'data']), 'show').stdout).toMatch(/^used\s+\d+\.\d MiB$/m);
    ok(await d.sh('u', 'rm /data/blob && sync'), 'rm');
    const freed = volumeSchema.parse(JSON.parse(ok(await d.cli(['volume', 'show', 'data', '--json']), 'show').stdout));
    expect(after.used_bytes! - freed.used_bytes!).toBeGreaterThanOrEqual(8 * MIB);
  });

  it('grows: online while a session mounts it (it sees the new size at once), else offline; a shrink is refused with the reason', async () => {
    const dfSize = async () => Number(ok(await d.sh('u', 'df -B1M --output=size /data | tail -1'), 'df').stdout.trim());
    const small = await dfSize();
    expect(small).toBeLessThanOrEqual(64);
    const full = await d.sh('u', 'dd if=/dev/zero of=/data/big bs=1M count=80 2>&1 | grep -c "No space left"; rm -f /data/big');
    expect(full.stdout).toBe('1\n');
    // Growing a mounted ext4 needs CAP_SYS_RESOURCE (the daemon runs with this process's capabilities).
    const capSysResource = ((BigInt(`0x${/^CapEff:\s*(\w+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`) >> 24n) & 1n) === 1n;
    const online = await d.cli(['volume', 'resize', 'data', '--size', '160', '--json']);
    if (capSysResource) {
      expect([online.code, online.stderr]).toEqual([0, '']);
    } else {
      // Refused with the reason, before anything changed; then offline, once nothing mounts it.
      expect([online.code, online.stderr]).toEqual([1, expect.stringMatching(/volume data is mounted by u, and growing a mounted filesystem needs CAP_SYS_RESOURCE/)]);
      expect((await volumes(d)).find((v) => v.name === 'data')!.size_mb).toBe(64);
      await d.destroy('u');
      const offline = ok(await d.cli(['volume', 'resize', 'data', '--size', '160', '--json']), 'resize offline');
      expect(volumeSchema.parse(JSON.parse(offline.stdout)).size_mb).toBe(160);
      await d.create({ name: 'u', volumes: [{ name: 'data', target: '/data' }] });
    }
    expect(await dfSize()).toBeGreaterThan(140);
    expect(statSync(join(d.stateDir, 'volumes', 'images', `${(await volumes(d)).find((v) => v.name === 'data')!.id}.ext4`)).size).toBe(160 * MIB);
    ok(await d.sh('u', 'dd if=/dev/zero of=/data/big bs=1M count=80 2>/dev/null && sync && rm /data/big'), 'write 80 MiB after the grow');
    const shrink = await d.cli(['volume', 'resize', 'data', '--size', '32']);
    expect([shrink.code, shrink.stderr]).toEqual([1, expect.stringMatching(/volume data is 160 MiB and volumes only grow: ext4 cannot shrink a mounted filesystem/)]);
    const bad = await d.cli(['volume', 'resize', 'data', '--size', '8']);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/--size.*16/)]);
    const missing = await d.cli(['volume', 'resize', 'data']);
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringMatching(/--size MB is required/)]);
    expect((await volumes(d)).find((v) => v.name === 'data')!.size_mb).toBe(160);
    // A grow beyond what the disk can promise is refused (volumes.reserve_mb) and leaves the size as it was.
    const huge = await d.cli(['volume', 'resize', 'data', '--size', String(1024 * 1024)]);
    expect([huge.code, huge.stderr]).toEqual([1, expect.stringMatching(/not enough disk for volume data to grow by \d+ MiB.*volumes\.reserve_mb/)]);
    expect((await volumes(d)).find((v) => v.name === 'data')!.size_mb).toBe(160);
  });

  it('exports and imports a tree with owners, modes, hard and symbolic links; refuses an export while a session may write it', async () => {
    const setup = [
      'mkdir -p /data/tree/sub && echo secret-notes > /data/tree/notes && chown 1000:1001 /data/tree/notes && chmod 640 /data/tree/notes',
      'chown 33:33 /data/tree/sub && chmod 2750 /data/tree/sub && ln /data/tree/notes /data/tree/sub/hard',
      'ln -s /etc/shadow /data/abs && ln -s tree/notes /data/rel && chown -h 1000:1000 /data/rel',
    ].join(' && ');
    ok(await d.sh('u', setup), 'setup');
    const want = ok(await d.sh('u', TREE('/data')), 'tree').stdout;
    expect(want).toContain('./tree/notes 1000:1001 640 regular file 2\n');
    const busy = await d.cli(['volume', 'export', 'data', '-o', file('data.tar.zst')]);
    expect([busy.code, busy.stderr]).toEqual([1, expect.stringMatching(/volume data is mounted read-write by u: reading it needs no other writer/)]);
    await d.destroy('u');
    ok(await d.cli(['volume', 'export', 'data', '-o', file('data.tar.zst')]), 'export');
    const head = Buffer.alloc(4);
    const fd = openSync(file('data.tar.zst'), 'r');
    readSync(fd, head, 0, 4, 0);
    closeSync(fd);
    expect(head.readUInt32LE(0)).toBe(0xfd2fb528);
    const list = execFileSync('tar', ['--use-compress-program=zstd', '-tvf', file('data.tar.zst')], { encoding: 'utf8' });
    expect(list).toMatch(/^lrwxrwxrwx 0\/0 .* \.\/abs -> \/etc\/shadow$/m);
    // The first of the two hard links is the file, the other a link to it (in directory order).
    expect(list).toMatch(/^-rw-r----- 1000\/1001 .* \.\/tree\/(notes|sub\/hard)$/m);
    expect(execFileSync('zstd', ['-dc', file('data.tar.zst')]).toString('latin1')).not.toContain(readFileSync('/etc/shadow', 'utf8').split('\n')[0]);
    ok(await d.cli(['volume', 'export', 'data', '-o', file('data.tar'), '--compression', 'none']), 'export plain');
    // Into a new volume, twice: from the zstd and from the plain tar.
    for (const [name, from] of [['copy', 'data.tar.zst'], ['copy2', 'data.tar']] as const) {
      const imp = ok(await d.cli(['volume', 'import', name, file(from), '--size', '32', '--json']), `import ${from}`);
      expect(volumeSchema.parse(JSON.parse(imp.stdout))).toMatchObject({ name, size_mb: 32, used_by: [] });
    }
    await d.create({ name: 'v', volumes: [{ name: 'copy', target: '/srv', readonly: true }, { name: 'copy2', target: '/opt' }] });
    expect(ok(await d.sh('v', TREE('/srv')), 'tree').stdout).toBe(want);
    expect(ok(await d.sh('v', TREE('/opt')), 'tree').stdout).toBe(want);
    // The helper sessions of the imports are gone.
    expect((await d.api('GET', '/v1/sessions')).body).toMatchObject({ sessions: [expect.objectContaining({ name: 'v' })] });
    await d.destroy('v');
  });

  it('import refuses what is not an archive before making anything, and removes the volume when the archive does not fit', async () => {
    const before = (await volumes(d)).map((v) => v.name);
    writeFileSync(file('junk'), 'not an archive at all');
    const junk = await d.cli(['volume', 'import', 'junk', file('junk')]);
    expect([junk.code, junk.stderr]).toEqual([2, expect.stringMatching(/import .*junk: not an archive \(neither zstd nor tar\)/)]);
    const missing = await d.cli(['volume', 'import', 'junk', file('nope')]);
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringMatching(/no such file/)]);
    execFileSync('sh', ['-c', `mkdir -p ${file('big')} && head -c 40000000 /dev/urandom > ${file('big')}/x && tar -C ${file('big')} -cf ${file('big.tar')} .`]);
    const tooBig = await d.cli(['volume', 'import', 'small', file('big.tar'), '--size', '16']);
    expect(tooBig.code).toBe(1);
    expect(tooBig.stderr).toMatch(/No space left on device/);
    expect(tooBig.stderr).toMatch(/unpacking .* into small failed .*--size/);
    expect((await volumes(d)).map((v) => v.name)).toEqual(before);
    const live = (await d.api('GET', '/v1/sessions')).body as { sessions: unknown[] };
    expect(live.sessions).toEqual([]);
  });

  it('a stopped session still uses its volumes: remove is refused, resize grows it (offline) and the started session sees the new size, export reads it', async () => {
    ok(await d.cli(['volume', 'create', 'sv', '--size', '32']), 'create sv');
    await d.create({ name: 'st', volumes: [{ name: 'sv', target: '/sv' }] });
    const dfSize = async () => Number(ok(await d.sh('st', 'df -B1M --output=size /sv | tail -1'), 'df').stdout.trim());
    const small = await dfSize();
    ok(await d.sh('st', 'echo before-stop > /sv/f'), 'write');
    ok(await d.cli(['session', 'stop', 'st']), 'stop');
    expect((await volumes(d)).find((v) => v.name === 'sv')!.used_by).toEqual([expect.objectContaining({ name: 'st', target: '/sv' })]);
    const rm = await d.cli(['volume', 'remove', 'sv']);
    expect([rm.code, rm.stderr]).toEqual([1, expect.stringMatching(/volume sv is mounted by st: destroy those sessions first/)]);
    // None of its processes runs: the grow is offline, and needs no CAP_SYS_RESOURCE.
    const grown = volumeSchema.parse(JSON.parse(ok(await d.cli(['volume', 'resize', 'sv', '--size', '48', '--json']), 'resize while stopped').stdout));
    expect(grown.size_mb).toBe(48);
    ok(await d.cli(['volume', 'export', 'sv', '-o', file('sv.tar'), '--compression', 'none']), 'export while stopped');
    expect(execFileSync('tar', ['-xOf', file('sv.tar'), './f'], { encoding: 'utf8' })).toBe('before-stop\n');
    ok(await d.cli(['session', 'start', 'st']), 'start');
    expect(ok(await d.sh('st', 'cat /sv/f'), 'read').stdout).toBe('before-stop\n');
    expect(await dfSize()).toBeGreaterThanOrEqual(small + 14);
    await d.destroy('st');
    ok(await d.cli(['volume', 'remove', 'sv']), 'remove once destroyed');
  });

  it('create --from takes the snapshot\'s settings: memory, ports, volumes, env, secrets by name; a flag wins; --no-settings takes none; a snapshot without settings restores files only', async () => {
    ok(await d.cli(['auth', 'set', 'github'], 'GH-TOKEN-VALUE-1'), 'auth set');
    const src = await d.create({
      auth: ['github'],
      name: 'src',
      memory_mb: 300,
      pids: 300,
      publish: [{ host_ip: '127.0.0.1', host_port: port, session_port: 80 }],
      volumes: [{ name: 'data', target: '/work' }, { name: 'copy', target: '/ref', readonly: true }],
      env: ['EDITOR=vi', 'GREETING=hello world'],
    });
    expect(src.limits.memory_mb).toBe(300);
    ok(await d.sh('src', 'echo kept > /home/kept'), 'write');
    ok(await d.cli(['session', 'snapshot', 'src', '-o', file('src.snap')]), 'snapshot');
    // The manifest says what create took, secrets by name only.
    const manifest = JSON.parse(execFileSync('sh', ['-c', `zstd -dc ${file('src.snap')} | tar -xOf - .enclave/manifest.json`], { encoding: 'utf8' })) as { settings: Record<string, unknown> };
    expect(manifest.settings).toMatchObject({ memory_mb: 300, pids: 300, profile: 'workspace', network: 'bridge', publish: [{ host_ip: '127.0.0.1', host_port: port, session_port: 80 }], env: ['EDITOR=vi', 'GREETING=hello world'], auth: ['github'] });
    // By name only: the value is nowhere in the file.
    expect(execFileSync('zstd', ['-dc', file('src.snap')]).toString('latin1')).not.toContain('GH-TOKEN-VALUE-1');
    await d.destroy('src');
    ok(await d.cli(['auth', 'set', 'github'], 'GH-TOKEN-VALUE-2'), 'auth rotate');

    const r = ok(await d.cli(['session', 'create', '--name', 'dst', '--from', file('src.snap'), '--memory', '200', '--json']), 'create --from');
    const dst = JSON.parse(r.stdout) as { id: string };
    const s = await d.show(dst.id);
    expect(s.limits.memory_mb).toBe(200); // the flag wins
    expect(s.limits.pids).toBe(300); // the snapshot's
    expect(s.network.published).toEqual([{ host_ip: '127.0.0.1', host_port: port, session_port: 80 }]);
    expect(s.volumes).toEqual([{ name: 'copy', target: '/ref', readonly: true }, { name: 'data', target: '/work', readonly: false }]);
    expect(s.secrets.auth).toEqual(['github']);
    // The secret as the store has it now.
    expect(ok(await d.sh('dst', 'cat /run/enclave/auth/github.token'), 'secret').stdout).toBe('GH-TOKEN-VALUE-2');
    expect(ok(await d.sh('dst', 'cat /home/kept; printenv GREETING; cat /work/tree/notes; touch /ref/x 2>&1 | grep -c Read-only'), 'dst').stdout).toBe('kept\nhello world\nsecret-notes\n1\n');
    await d.destroy('dst');

    // A list flag replaces the snapshot's list; --network none drops its ports with a note.
    const over = ok(await d.cli(['session', 'create', '--name', 'dst2', '--from', file('src.snap'), '--volume', 'copy:/other', '--network', 'none', '--json']), 'create --from with flags');
    expect(over.stderr).toMatch(/note: the snapshot's published ports are not taken: --network none/);
    const s2 = await d.show((JSON.parse(over.stdout) as { id: string }).id);
    expect([s2.volumes, s2.network.published, s2.limits.memory_mb]).toEqual([[{ name: 'copy', target: '/other', readonly: false }], [], 300]);
    await d.destroy('dst2');

    const none = ok(await d.cli(['session', 'create', '--name', 'dst3', '--from', file('src.snap'), '--no-settings', '--json']), 'create --from --no-settings');
    const s3 = await d.show((JSON.parse(none.stdout) as { id: string }).id);
    expect([s3.limits.memory_mb, s3.volumes, s3.network.published]).toEqual([1024, [], []]);
    expect(ok(await d.sh('dst3', 'cat /home/kept'), 'dst3').stdout).toBe('kept\n');
    await d.destroy('dst3');

    // A snapshot of an older Enclave: no manifest frame after the archive. Files only.
    const whole = readFileSync(file('src.snap'));
    const frameAt = whole.length - 8 - whole.readUInt32LE(whole.length - 12);
    expect(whole.readUInt32LE(frameAt)).toBe(0x184d2a50);
    writeFileSync(file('old.snap'), whole.subarray(0, frameAt));
    const old = ok(await d.cli(['session', 'create', '--name', 'dst4', '--from', file('old.snap'), '--json']), 'create --from an old snapshot');
    const s4 = await d.show((JSON.parse(old.stdout) as { id: string }).id);
    expect([s4.limits.memory_mb, s4.volumes]).toEqual([1024, []]);
    expect(ok(await d.sh('dst4', 'cat /home/kept'), 'dst4').stdout).toBe('kept\n');
    await d.destroy('dst4');
    // A plain tar snapshot carries its settings as its first file.
    await d.create({ name: 'src2', memory_mb: 333 });
    ok(await d.cli(['session', 'snapshot', 'src2', '-o', file('plain.snap'), '--compression', 'none']), 'snapshot plain');
    await d.destroy('src2');
    const plain = ok(await d.cli(['session', 'create', '--from', file('plain.snap'), '--json']), 'create --from plain');
    expect((await d.show((JSON.parse(plain.stdout) as { id: string }).id)).limits.memory_mb).toBe(333);
    await d.destroy((JSON.parse(plain.stdout) as { id: string }).id);
    ok(await d.cli(['auth', 'remove', 'github']), 'auth remove');
  });

  it('snapshot --with-volumes carries the volumes\' contents; create --from restores them as new volumes, named after the snapshot; a second restore clashes cleanly', async () => {
    ok(await d.cli(['volume', 'create', 'wv', '--size', '32']), 'create wv');
    await d.create({ name: 'w', volumes: [{ name: 'wv', target: '/wv' }, { name: 'copy', target: '/ro', readonly: true }] });
    ok(await d.sh('w', 'echo on-the-volume > /wv/f && chown 1000:1000 /wv/f && ln -s f /wv/link && echo in-layer > /etc/layer-file'), 'write');
    // Another session that may write wv: no consistent read.
    await d.create({ name: 'writer', volumes: [{ name: 'wv', target: '/x' }] });
    const refused = await d.cli(['session', 'snapshot', 'w', '-o', file('w.snap'), '--with-volumes']);
    expect([refused.code, refused.stderr]).toEqual([1, expect.stringMatching(/volume wv is mounted read-write by writer/)]);
    await d.destroy('writer');
    ok(await d.cli(['session', 'snapshot', 'w', '-o', file('w.snap'), '--with-volumes']), 'snapshot --with-volumes');
    const list = execFileSync('tar', ['--use-compress-program=zstd', '-tvf', file('w.snap')], { encoding: 'utf8' });
    expect(list).toMatch(/^-rw-r--r-- 1000\/1000 .* \.enclave\/volumes\/\d\/f$/m);
    expect(list).toMatch(/ \.enclave\/volumes\/\d\/tree\/(notes|sub\/hard)$/m);
    // The mount points are not the layer's: a restore mounts its own volumes there (one read-only).
    expect(list).not.toMatch(/^d.* (wv|ro)\/$/m);
    const id6 = (JSON.parse(execFileSync('sh', ['-c', `zstd -dc ${file('w.snap')} | tar -xOf - .enclave/manifest.json`], { encoding: 'utf8' })) as { snapshot_id: string }).snapshot_id.slice(0, 6);
    const before = (await volumes(d)).map((v) => v.name);

    const r = ok(await d.cli(['session', 'create', '--name', 'w2', '--from', file('w.snap'), '--json']), 'create --from with volumes');
    const w2 = await d.show((JSON.parse(r.stdout) as { id: string }).id);
    expect(w2.volumes).toEqual([{ name: `wv-${id6}`, target: '/wv', readonly: false }, { name: `copy-${id6}`, target: '/ro', readonly: true }].sort((a, b) => a.target.localeCompare(b.target)));
    expect(ok(await d.sh('w2', 'stat -c "%u:%g" /wv/f; cat /wv/f /etc/layer-file; readlink /wv/link; cat /ro/tree/notes; ls -a / | grep -c enclave || true'), 'w2').stdout).toBe('1000:1000\non-the-volume\nin-layer\nf\nsecret-notes\n0\n');
    // New volumes, the caller's own: a write there is not in the source.
    ok(await d.sh('w2', 'echo changed > /wv/f'), 'write w2');
    expect(ok(await d.sh('w', 'cat /wv/f'), 'w').stdout).toBe('on-the-volume\n');
    const after = await volumes(d);
    expect(after.filter((v) => !before.includes(v.name)).map((v) => [v.name, v.size_mb, v.owner_uid])).toEqual([[`copy-${id6}`, 32, 0], [`wv-${id6}`, 32, 0]]);

    const again = await d.cli(['session', 'create', '--name', 'w3', '--from', file('w.snap')]);
    expect([again.code, again.stderr]).toEqual([1, expect.stringMatching(new RegExp(`volume (wv|copy)-${id6} already exists: this snapshot was restored before`))]);
    expect((await volumes(d)).map((v) => v.name)).toEqual(after.map((v) => v.name));
    expect(((await d.api('GET', '/v1/sessions')).body as { sessions: { name: string }[] }).sessions.map((s) => s.name).sort()).toEqual(['w', 'w2']);
    await d.destroy('w2');
    await d.destroy('w');
  });

  it('refuses a hostile manifest before anything is made: bad types, huge numbers, unknown fields, escaping targets, someone else\'s secret', async () => {
    const sessionIds = async () => ((await d.api('GET', '/v1/sessions?all=1')).body as { sessions: { id: string }[] }).sessions.map((s) => s.id);
    const volumeNames = async () => (await volumes(d)).map((v) => [v.name, v.size_mb]);
    const sessionsBefore = await sessionIds();
    const volumesBefore = await volumeNames();
    const base = { format: 'enclave-snapshot', version: 1, session: 's-0000000000', created_at: '2026-01-01T00:00:00Z', parts: ['/', '/home'], entries: 0, deleted: 0, snapshot_id: 'abcdefabcdef' };
    /** A plain tar snapshot whose first file is this manifest. */
    const plainSnap = (name: string, manifest: unknown) => {
      const dir = file(`m-${name}`);
      mkdirSync(join(dir, '.enclave'), { recursive: true });
      writeFileSync(join(dir, '.enclave', 'manifest.json'), JSON.stringify(manifest));
      writeFileSync(join(dir, '.enclave', 'deleted'), '');
      execFileSync('tar', ['-cf', file(`${name}.snap`), '--no-recursion', '-C', dir, '.enclave', '.enclave/manifest.json', '.enclave/deleted']);
      return file(`${name}.snap`);
    };
    const cases: [string, unknown, RegExp][] = [
      ['types', { ...base, settings: { memory_mb: 'lots' } }, /'settings\.memory_mb': .*number/],
      ['huge', { ...base, settings: { memory_mb: 1e15 } }, /'settings\.memory_mb': .*(<=|too big)/i],
      ['unknown', { ...base, settings: { privileged: true } }, /unknown field 'settings\.privileged'/],
      ['escape', { ...base, settings: { volumes: [{ name: 'data', target: '/../etc' }] } }, /'settings\.volumes\.0\.target'/],
      ['forbidden', { ...base, settings: { volumes: [{ name: 'data', target: '/proc/x' }] } }, /must not be in \/proc/],
      ['volumes', { ...base, settings: {}, volumes: [{ index: 0, name: 'x', target: '/x', readonly: false, size_mb: 1e9 }] }, /'volumes\.0\.size_mb'/],
      ['format', { ...base, format: 'other' }, /'format'/],
    ];
    for (const [name, m, msg] of cases) {
      const r = await d.cli(['session', 'create', '--from', plainSnap(name, m)]);
      expect([name, r.code, r.stderr]).toEqual([name, 2, expect.stringMatching(msg)]);
      expect(r.stderr).toMatch(/^enclave: --from .*: its manifest is not valid: /);
    }
    // A zstd snapshot whose manifest frame claims 4 GiB.
    const foot = Buffer.alloc(12);
    foot.writeUInt32LE(0xffffffff, 0);
    foot.write('ENCLMANI', 4, 'latin1');
    writeFileSync(file('frame.snap'), Buffer.concat([execFileSync('zstd', ['-q', '-c'], { input: 'x' }), foot]));
    const big = await d.cli(['session', 'create', '--from', file('frame.snap')]);
    expect([big.code, big.stderr]).toEqual([2, expect.stringMatching(/its manifest frame says 4294967295 bytes, more than a manifest may be/)]);
    // Settings that fit the schema still pass the daemon's checks: a secret the caller does not have, or another's unshared one.
    for (const [name, auth, msg] of [
      ['own', ['github'], /secret 'github' is not in the store/],
      ['others', ['48301:github'], /secret '48301:github' is not in the store, or its owner has not shared it/],
    ] as const) {
      const r = await d.cli(['session', 'create', '--from', plainSnap(name, { ...base, settings: { auth } })]);
      expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(msg)]);
      expect(r.stderr).toMatch(/the snapshot's settings are in the request/);
    }
    expect(await sessionIds()).toEqual(sessionsBefore);
    expect(await volumeNames()).toEqual(volumesBefore);
  });
});

const GID = 48216;
const A = { uid: 48311, groups: [GID] };
const B = { uid: 48312, groups: [GID] };

describe.skipIf(!isRoot)('volume data between tenants (two real non-root users)', () => {
  const d = new TestDaemon({
    topConfig: `socket_gid = ${GID}\n`,
    extraConfig:
      `[access]\nrate_per_minute = 1000\n` +
      `[[access.rules]]\nname = "tenants"\ngids = [${GID}]\nactions = ["session.*", "volume.*", "events.list"]\nscope = "self"\n` +
      `[access.budget]\nvolume_mb = { volume = 64, total = 96 }\n`,
  });
  const as = (who: typeof A, args: string[]) => cliAs(d.socket, who, args);

  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('a tenant grows its own volume within its budget, and exports it into a file it owns', async () => {
    ok(await as(A, ['volume', 'create', 'mine', '--size', '32']), 'A create');
    ok(await as(A, ['volume', 'create', 'other', '--size', '32']), 'A create other');
    const grown = JSON.parse(ok(await as(A, ['volume', 'resize', 'mine', '--size', '64', '--json']), 'A resize').stdout) as Volume;
    expect([grown.size_mb, grown.owner_uid]).toEqual([64, A.uid]);
    const ceiling = await as(A, ['volume', 'resize', 'mine', '--size', '65']);
    expect([ceiling.code, ceiling.stderr]).toEqual([1, expect.stringMatching(/uid 48311 may not grow volume mine to 65 MiB: the largest is 64 MiB \(access\.budget\.volume_mb\.volume\)/)]);
    const total = await as(A, ['volume', 'resize', 'other', '--size', '40']);
    expect([total.code, total.stderr]).toEqual([1, expect.stringMatching(/uid 48311's volumes already hold 96 MiB; 8 MiB more would pass the total of 96 MiB \(access\.budget\.volume_mb\.total\)/)]);
    expect((await volumes(d)).map((v) => [v.name, v.size_mb])).toEqual([['mine', 64], ['other', 32]]);
    const dir = join(d.dir, 'a-home');
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, A.uid, A.uid);
    ok(await as(A, ['volume', 'export', 'mine', '-o', join(dir, 'mine.tar.zst')]), 'A export');
    expect(statSync(join(dir, 'mine.tar.zst')).uid).toBe(A.uid);
    // An import is a create: bounded by the budget before anything is made (no volume, no helper session).
    const over = await as(A, ['volume', 'import', 'more', join(dir, 'mine.tar.zst'), '--size', '16']);
    expect([over.code, over.stderr]).toEqual([1, expect.stringMatching(/uid 48311's volumes already hold 96 MiB; 16 MiB more would pass the total of 96 MiB/)]);
    const tooLarge = await as(A, ['volume', 'import', 'more', join(dir, 'mine.tar.zst'), '--size', '128']);
    expect([tooLarge.code, tooLarge.stderr]).toEqual([1, expect.stringMatching(/may not create a volume of 128 MiB: the largest is 64 MiB/)]);
    expect((await volumes(d)).map((v) => v.name)).toEqual(['mine', 'other']);
    expect(((await d.api('GET', '/v1/sessions')).body as { sessions: unknown[] }).sessions).toEqual([]);
  });

  it('another tenant can neither grow nor export it, by its name or qualified, and is told nothing of it', async () => {
    for (const args of [
      ['volume', 'resize', 'mine', '--size', '80'],
      ['volume', 'export', 'mine', '-o', `/tmp/enclave-it-b-${process.pid}`],
      ['volume', 'resize', `${A.uid}:mine`, '--size', '80'],
      ['volume', 'export', `${A.uid}:mine`, '-o', `/tmp/enclave-it-b-${process.pid}`],
    ]) {
      const r = await as(B, args);
      expect([args.join(' '), r.code]).toEqual([args.join(' '), 1]);
      expect(r.stderr).toMatch(/no volume .*mine/);
    }
    const raw = requestsAs(d.socket, B, [
      { method: 'POST', path: `/v1/volumes/${A.uid}:mine/resize`, body: { size_mb: 80 } },
      { method: 'GET', path: `/v1/volumes/${A.uid}:mine/export` },
    ]);
    for (const [status, body] of raw) {
      expect(status).toBe(404);
      expect(body).not.toContain('v-');
    }
    expect((await volumes(d)).find((v) => v.name === 'mine')!.size_mb).toBe(64);
    const events = (JSON.parse(ok(await d.cli(['events', '--json']), 'events').stdout) as { events: { caller_uid: number; action: string; decision: string }[] }).events;
    expect(events.filter((e) => e.caller_uid === B.uid && e.decision === 'deny').map((e) => e.action).sort()).toEqual(['volume.export', 'volume.export', 'volume.export', 'volume.resize', 'volume.resize', 'volume.resize']);
    expect(existsSync(`/tmp/enclave-it-b-${process.pid}`)).toBe(false);
    // The CLI reads an import's file as its caller: B cannot import A's private export, and nothing is made.
    const theirs = await as(B, ['volume', 'import', 'stolen', join(d.dir, 'a-home', 'mine.tar.zst')]);
    expect([theirs.code, theirs.stderr]).toEqual([2, expect.stringMatching(/EACCES|permission denied/i)]);
    expect((await volumes(d)).map((v) => v.name)).toEqual(['mine', 'other']);
  });
});
