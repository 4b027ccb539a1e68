// The client library (enclave/client) against a real daemon: every call,
// over the Unix socket and over the TCP listener with its token, and the
// typed errors the daemon's error replies become.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  ConnectionError,
  Enclave,
  EnclaveError,
  InvalidRequestError,
  NotFoundError,
  UnauthorizedError,
  type AttachEvent,
  type AttachStream,
  type Session,
} from '../../src/client/index.js';
import { repoRoot } from '../../src/native/addon.js';
import { isRoot, listenPort, TestDaemon } from './harness.js';

const port = listenPort(1);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Output of a console stream until `re` matches it (or 10 s). */
function until(s: AttachStream, re: RegExp, from: { text: string }): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = re.exec(from.text);
      if (!m) return false;
      clearTimeout(timer);
      s.off('data', onData);
      resolve(m);
      return true;
    };
    const onData = (c: Buffer) => {
      from.text += c.toString('utf8');
      check();
    };
    const timer = setTimeout(() => {
      s.off('data', onData);
      reject(new Error(`no ${re} in ${JSON.stringify(from.text.slice(-300))}`));
    }, 10_000);
    if (!check()) s.on('data', onData);
  });
}

describe.skipIf(!isRoot)('client library (root)', () => {
  const d = new TestDaemon({ topConfig: `listen = "127.0.0.1:${port}"\n` });
  let c: Enclave;
  let s: Session;

  beforeAll(async () => {
    await d.start();
    c = new Enclave({ socket: d.socket });
  });
  afterAll(async () => {
    c?.close();
    await d.cleanup();
  });

  it('creates with options, lists and shows', async () => {
    s = await c.create({ name: 'lib', memory_mb: 256, pids: 128, env: ['FOO=bar'], idle_timeout_s: 0, console: true });
    expect(s).toMatchObject({ name: 'lib', state: 'running', profile: 'workspace', idle_timeout_s: null });
    expect(s.limits.memory_mb).toBe(256);
    expect(s.limits.pids).toBe(128);
    expect(s.console.keep).toBe(true);
    expect((await c.list()).map((x) => x.id)).toContain(s.id);
    expect((await c.show('lib')).id).toBe(s.id);
    expect((await c.show(`0:lib`)).id).toBe(s.id);
    expect((await c.health()).status).toBe('ok');
    expect(await c.metrics()).toMatch(/^# (HELP|TYPE) enclave_/m);
    expect(await c.reload()).toEqual({ applied: [], restart_needed: [] });
  });

  it('runs a command: stdout, stderr and the exit code apart; stdin, env and cwd', async () => {
    expect(await c.run('lib', ['sh', '-c', 'echo out; echo err >&2; exit 3'])).toEqual({ stdout: 'out\n', stderr: 'err\n', exitCode: 3 });
    expect(await c.run('lib', ['true'])).toEqual({ stdout: '', stderr: '', exitCode: 0 });
    expect(await c.run('lib', ['cat'], { stdin: 'line one\nline two\n' })).toMatchObject({ stdout: 'line one\nline two\n', exitCode: 0 });
    expect((await c.run('lib', ['sh', '-c', 'echo $FOO $BAR; pwd'], { env: ['BAR=baz'], cwd: '/tmp' })).stdout).toBe('bar baz\n/tmp\n');
    // Bytes, not text; larger than a frame and than the daemon's 1 MiB message limit.
    const blob = randomBytes(3 * 1024 * 1024 + 7);
    const r = await c.run('lib', ['cat'], { stdin: blob, encoding: 'buffer' });
    expect(r.stdout.length).toBe(blob.length);
    expect(sha(r.stdout)).toBe(sha(blob));
    const missing = await c.run('lib', ['no-such-command-here']);
    expect(missing.exitCode).toBe(127);
    expect(missing.stderr).toContain('no-such-command-here');
    expect((await c.run('lib', ['sh', '-c', 'kill -9 $$'])).exitCode).toBe(137);
  });

  it('streams an exec: stdin written while stdout is read, EOF, exit code', async () => {
    const p = c.exec('lib', ['sh', '-c', 'while read l; do echo "got $l"; done; echo bye >&2; exit 4']);
    const first = await new Promise<string>((resolve) => {
      p.stdout.once('data', (b: Buffer) => resolve(b.toString()));
      p.stdin!.write('one\n');
    });
    expect(first).toBe('got one\n');
    p.stdin!.end('two\n');
    const [rest, err, code] = await Promise.all([readAll(p.stdout), readAll(p.stderr), p.exit]);
    expect(rest.toString()).toBe('got two\n');
    expect(err.toString()).toBe('bye\n');
    expect(code).toBe(4);
    expect((await p.outcome).status.status).toBe('Failure');
    // Without stdin the command reads /dev/null.
    const q = c.exec('lib', ['cat'], { stdin: false });
    expect(q.stdin).toBeNull();
    expect((await readAll(q.stdout)).length).toBe(0);
    expect(await q.exit).toBe(0);
  });

  it('attaches to the console: sends, receives, resizes, detaches and resumes', async () => {
    const a = await c.attach('lib', { cols: 80, rows: 24 });
    const events: AttachEvent[] = [];
    a.on('event', (e: AttachEvent) => events.push(e));
    const out = { text: '' };
    a.write('stty size; echo MARK$((40+2))\n');
    expect((await until(a, /(\d+) (\d+)\r?\nMARK42/, out)).slice(1)).toEqual(['24', '80']);
    a.resize(100, 30);
    await new Promise<void>((resolve) => {
      const check = () => (events.some((e) => e.type === 'resize' && e.cols === 100 && e.rows === 30) ? resolve() : setTimeout(check, 20));
      check();
    });
    out.text = '';
    a.write('stty size; echo MARK$((40+3))\n');
    expect((await until(a, /(\d+) (\d+)\r?\nMARK43/, out)).slice(1)).toEqual(['30', '100']);
    const offset = a.offset;
    a.close();
    expect(await a.exit).toBeUndefined();
    // A read-only viewer resuming at the offset: the shell lived on.
    await c.run('lib', ['true']);
    const ro = await c.attach('lib', { role: 'ro', resume: offset });
    expect((await ro.ready).role).toBe('ro');
    const refused = new Promise((r) => ro.once('error', r));
    ro.write('x');
    expect(await refused).toMatchObject({ message: expect.stringContaining('read-only') });
    ro.destroy();
  });

  it('reads stats and the console log', async () => {
    const st = await c.stats('lib');
    expect(st).toMatchObject({ id: s.id, name: 'lib' });
    const log = (await readAll(await c.logs('lib'))).toString();
    expect(log).toContain('MARK42');
    expect(log).not.toContain('\x1b[');
    const follow = await c.logs('lib', { follow: true });
    const seen = new Promise<void>((resolve) => {
      let text = '';
      follow.on('data', (b: Buffer) => (text += b.toString()).includes('MARK44') && resolve());
    });
    const a = await c.attach('lib');
    a.write('echo MARK$((40+4))\n');
    await seen;
    follow.destroy();
    a.close();
  });

  it('runs a command in a terminal of its own (execTty): size, output and exit code', async () => {
    const t = await c.execTty('lib', ['sh', '-c', 'stty size; exit 5'], { cols: 90, rows: 20 });
    const out = await readAll(t);
    expect(out.toString()).toContain('20 90');
    expect(await t.exit).toBe(5);
  });

  it('stops and starts, keeping /home', async () => {
    expect((await c.run('lib', ['sh', '-c', 'echo kept > /home/file'])).exitCode).toBe(0);
    expect((await c.stop('lib')).state).toBe('stopped');
    expect((await c.show('lib')).state).toBe('stopped');
    expect((await c.start('lib')).state).toBe('running');
    expect((await c.run('lib', ['cat', '/home/file'])).stdout).toBe('kept\n');
  });

  it('copies a tar out of the session and back in (cp)', async () => {
    const out = c.cp('lib', { direction: 'out', path: '/home/file' });
    const [tar, code] = await Promise.all([readAll(out.stdout), out.exit]);
    expect(code).toBe(0);
    expect(tar.toString('latin1', 257, 262)).toBe('ustar');
    expect(tar.includes('kept\n')).toBe(true);
    const back = c.cp('lib', { direction: 'in', path: '/tmp/' });
    back.stdin!.end(tar);
    expect(await back.exit).toBe(0);
    expect((await c.run('lib', ['cat', '/tmp/file'])).stdout).toBe('kept\n');
  });

  it('streams a snapshot: a whole tar with the session files', async () => {
    expect((await c.run('lib', ['sh', '-c', 'echo snapshot-marker-7 > /home/snap.txt'])).exitCode).toBe(0);
    const tar = await readAll(await c.snapshot('lib', { compression: 'none' }));
    expect(tar.length % 512).toBe(0);
    expect(tar.toString('latin1', 257, 262)).toBe('ustar');
    expect(tar.includes('snapshot-marker-7')).toBe(true);
    const zstd = await readAll(await c.snapshot('lib'));
    expect(zstd.readUInt32LE(0)).toBe(0xfd2fb528);
  });

  it('publishes and unpublishes a port', async () => {
    const hostPort = listenPort(57);
    const on = await c.publish('lib', { host_ip: '127.0.0.1', host_port: hostPort, session_port: 80 });
    expect(on.network.published).toEqual([{ host_ip: '127.0.0.1', host_port: hostPort, session_port: 80 }]);
    await c.unpublish('lib', '127.0.0.1', hostPort);
    expect((await c.show('lib')).network.published).toEqual([]);
    await expect(c.unpublish('lib', '127.0.0.1', hostPort)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('creates, lists, shows and removes volumes', async () => {
    const v = await c.volumes.create({ name: 'libvol', size_mb: 32 });
    expect(v).toMatchObject({ name: 'libvol', size_mb: 32, owner_uid: 0, used_by: [] });
    expect((await c.volumes.list()).map((x) => x.name)).toContain('libvol');
    expect((await c.volumes.show('libvol')).id).toBe(v.id);
    expect((await c.volumes.resize('libvol', 48)).size_mb).toBe(48);
    const tar = await readAll(await c.volumes.export('libvol', { compression: 'none' }));
    expect(tar.length % 512).toBe(0);
    await c.volumes.remove('libvol');
    await expect(c.volumes.show('libvol')).rejects.toBeInstanceOf(NotFoundError);
  });

  it('sets, rotates, lists and removes secrets', async () => {
    const set = await c.secrets.set('github', 'tok-1');
    expect(set).toMatchObject({ name: 'github', kind: 'provider', created: true, version: 1 });
    expect((await c.secrets.set('github', Buffer.from('tok-2'))).created).toBe(false);
    expect((await c.secrets.list()).find((x) => x.name === 'github')).toMatchObject({ version: 2, shared: false });
    expect(await c.secrets.remove('github')).toEqual({ name: 'github', still_held_by: [] });
    expect((await c.secrets.list()).map((x) => x.name)).not.toContain('github');
    // A session that declared one gets it; refresh-auth delivers the rotated value.
    await c.secrets.set('gitlab', 'v1');
    const w = await c.create({ name: 'withauth', auth: ['gitlab'] });
    await c.secrets.set('gitlab', 'v2');
    expect(await c.refreshAuth('withauth')).toEqual({ id: w.id, refreshed: ['gitlab'], missing: [] });
    await c.destroy(w.id, { force: true });
    expect((await c.list({ all: true })).find((x) => x.id === w.id)?.state).toBe('destroyed');
  });

  it('reads the audit trail', async () => {
    const events = await c.events({ session: s.id, limit: 1000 });
    const actions = new Set(events.map((e) => e.action));
    for (const a of ['session.exec', 'session.attach', 'session.stop', 'session.start', 'session.snapshot']) expect(actions, a).toContain(a);
    expect(events.every((e) => e.session_id === s.id && e.via === 'socket')).toBe(true);
    const all = await c.events({ limit: 10_000 });
    expect(all.find((e) => e.action === 'session.create' && e.detail === 'lib')).toMatchObject({ caller_uid: 0, decision: 'allow' });
  });

  it('raises typed errors with the status and the server message', async () => {
    const nf = await c.show('nope').catch((e: unknown) => e);
    expect(nf).toBeInstanceOf(NotFoundError);
    expect(nf).toBeInstanceOf(EnclaveError);
    const raw = await d.api('GET', '/v1/sessions/nope');
    expect(nf).toMatchObject({ status: 404, code: 'not_found', message: (raw.body as { error: { message: string } }).error.message });
    await expect(c.run('nope', ['true'])).rejects.toBeInstanceOf(NotFoundError);
    await expect(c.attach('nope')).rejects.toMatchObject({ status: 404 });
    await expect(c.snapshot('nope')).rejects.toBeInstanceOf(NotFoundError);

    const bad = await c.create({ name: 'Bad Name!' }).catch((e: unknown) => e);
    const rawBad = await d.api('POST', '/v1/sessions', { name: 'Bad Name!' });
    expect(bad).toBeInstanceOf(InvalidRequestError);
    expect(bad).toMatchObject({ status: 400, code: 'invalid_request', field: 'name', message: (rawBad.body as { error: { message: string } }).error.message });
    const badCwd = await c.run('lib', ['true'], { cwd: 'relative' }).catch((e: unknown) => e);
    expect(badCwd).toMatchObject({ status: 400, message: expect.stringContaining('cwd') });

    const gone = new Enclave({ socket: join(d.dir, 'no-such.sock') });
    await expect(gone.list()).rejects.toBeInstanceOf(ConnectionError);
    await expect(gone.run('lib', ['true'])).rejects.toBeInstanceOf(ConnectionError);
  });

  it('talks to the TCP listener with its token', async () => {
    const token = readFileSync(join(d.stateDir, 'listen-token'), 'utf8').trim();
    const t = new Enclave({ url: `http://127.0.0.1:${port}`, token });
    try {
      expect((await t.show('lib')).id).toBe(s.id);
      expect(await t.run('lib', ['sh', '-c', 'cat; echo tcp'], { stdin: 'over ' })).toEqual({ stdout: 'over tcp\n', stderr: '', exitCode: 0 });
      expect((await t.ticket()).expires_in_ms).toBeGreaterThan(0);
      const a = await t.attach('lib', { role: 'ro' });
      expect((await a.ready).session).toBe(s.id);
      a.close();
    } finally {
      t.close();
    }
    const wrong = new Enclave({ url: `http://127.0.0.1:${port}`, token: 'wrong' });
    await expect(wrong.list()).rejects.toMatchObject({ status: 401, constructor: UnauthorizedError });
    await expect(wrong.run('lib', ['true'])).rejects.toBeInstanceOf(UnauthorizedError);
    wrong.close();
  });

  it('is what `import ... from "enclave/client"` loads (package.json exports)', () => {
    const script = `import { Enclave, NotFoundError } from 'enclave/client';
const c = new Enclave({ socket: process.argv[1] });
const l = await c.list();
const e = await c.show('nope').catch((x) => x);
console.log(JSON.stringify({ n: l.length, nf: e instanceof NotFoundError }));
c.close();`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, d.socket], { cwd: repoRoot, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ n: 1, nf: true });
  });

  it('destroys', async () => {
    await c.destroy('lib');
    expect((await c.list()).map((x) => x.id)).not.toContain(s.id);
    expect((await c.list({ all: true })).find((x) => x.id === s.id)?.state).toBe('destroyed');
    await expect(c.destroy('never-was')).rejects.toBeInstanceOf(NotFoundError);
  });
});
