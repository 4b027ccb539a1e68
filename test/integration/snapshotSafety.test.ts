// Snapshots that go wrong must leave nothing wrong behind: a client that goes
// away (killed CLI, dropped socket) or stalls past sessions.snapshot_timeout_ms
// never leaves the session frozen or the daemon dead; a session left frozen
// while the daemon was down is thawed at start; and `-o FILE` never follows a
// planted symlink.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CLI, isRoot, TestDaemon } from './harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The CLI with a deadline: killed (code null) if it takes longer; how long it took. */
function cliTimed(d: TestDaemon, args: string[], deadlineMs: number): Promise<{ code: number | null; ms: number; stderr: string }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ENCLAVE_SOCKET: d.socket }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), deadlineMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, ms: Date.now() - t0, stderr });
    });
  });
}

const execTrue = (d: TestDaemon, session: string, deadlineMs = 5000) => cliTimed(d, ['session', 'exec', session, '--', 'true'], deadlineMs);

async function daemonPid(d: TestDaemon): Promise<number> {
  return ((await d.api('GET', '/v1/health')).body as { pid: number }).pid;
}

/** A raw snapshot request: the response once its head is in (or the error). */
function rawSnapshot(d: TestDaemon, id: string): Promise<{ req: ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: d.socket, method: 'GET', path: `/v1/sessions/${id}/snapshot?compression=zstd` }, (res) => resolve({ req, res }));
    req.on('error', reject);
    req.end();
  });
}

/** Whether a response ends whole (with the daemon's trailer) or cut. */
function outcome(res: IncomingMessage): Promise<'complete' | 'cut'> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (v: 'complete' | 'cut') => {
      if (!settled) resolve(v);
      settled = true;
    };
    res.on('data', () => undefined);
    res.on('end', () => done(String(res.trailers['x-enclave-snapshot'] ?? '').startsWith('complete') ? 'complete' : 'cut'));
    res.on('aborted', () => done('cut'));
    res.on('error', () => done('cut'));
    res.on('close', () => done('cut'));
  });
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0; // renamed or removed meanwhile
  }
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** The end of the daemon's log, for a failure's message (a crash's stack is there). */
const logTail = (d: TestDaemon) => d.log().split('\n').slice(-15).join('\n');

/** The session's v2 directory (the one with cgroup.freeze). */
const v2Dir = (d: TestDaemon, id: string) => d.cgroupDirs(id).find((p) => existsSync(join(p, 'cgroup.freeze')))!;
const frozen = (d: TestDaemon, id: string) => readFileSync(join(v2Dir(d, id), 'cgroup.freeze'), 'utf8').trim() === '1';

/** Thaw whatever a failed test left frozen, so that cleanup can end it. */
function thawAll(d: TestDaemon): void {
  for (const top of d.cgroupDirs()) {
    for (const e of existsSync(top) ? readdirSync(top) : []) {
      const f = join(top, e, 'cgroup.freeze');
      if (existsSync(f)) writeFileSync(f, '0');
    }
  }
}

describe.skipIf(!isRoot)('snapshots that go wrong (root)', () => {
  const d = new TestDaemon();

  /** A session of its own per test (a failure leaves no frozen session to the next), holding mb MiB of incompressible data. */
  async function holding(name: string, mb: number): Promise<string> {
    const s = await d.create({ name });
    const r = await d.sh(name, `head -c ${mb}M /dev/urandom > /data`);
    expect([r.code, r.stderr]).toEqual([0, '']);
    return s.id;
  }

  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    thawAll(d);
    await d.cleanup();
  });

  it('a CLI killed mid-stream leaves the session running, unfrozen, and the daemon up', async () => {
    const id = await holding('big', 300);
    const pid = await daemonPid(d);
    const out = join(d.dir, 'cut.snap');
    for (let i = 0; i < 5; i++) {
      const cli = spawn(process.execPath, [CLI, 'session', 'snapshot', 'big', '-o', out, '--compression', 'zstd'], { env: { ...process.env, ENCLAVE_SOCKET: d.socket }, stdio: 'ignore' });
      const gone = new Promise((r) => cli.on('close', r));
      const started = () => readdirSync(d.dir).some((f) => f.startsWith('cut.snap') && sizeOf(join(d.dir, f)) > 256 * 1024);
      await until('the snapshot to stream', started);
      cli.kill('SIGKILL');
      await gone;
      const t0 = Date.now();
      const r = await execTrue(d, 'big');
      expect({ cut: i, code: r.code, fast: Date.now() - t0 < 1000 }, logTail(d)).toEqual({ cut: i, code: 0, fast: true });
      expect(frozen(d, id)).toBe(false);
      for (const f of readdirSync(d.dir)) if (f.startsWith('cut.snap')) rmSync(join(d.dir, f));
    }
    expect(await daemonPid(d)).toBe(pid);
   }, 120_000);

  it('a client that drops its socket mid-stream leaves the session running, unfrozen, and the daemon up', async () => {
    const id = await holding('big2', 300);
    const pid = await daemonPid(d);
    for (let i = 0; i < 6; i++) {
      const { req, res } = await rawSnapshot(d, id);
      expect(res.statusCode).toBe(200);
      let got = 0;
      await new Promise<void>((resolve) =>
        res.on('data', (c: Buffer) => {
          got += c.length;
          if (got > 256 * 1024) resolve();
        }),
      );
      req.destroy();
      res.destroy();
      const t0 = Date.now();
      const r = await execTrue(d, 'big2');
      expect({ cut: i, code: r.code, fast: Date.now() - t0 < 1000 }, logTail(d)).toEqual({ cut: i, code: 0, fast: true });
      expect(frozen(d, id)).toBe(false);
    }
    expect(await daemonPid(d)).toBe(pid);
    // A snapshot after all that is whole.
    const whole = await cliTimed(d, ['session', 'snapshot', 'big2', '-o', join(d.dir, 'whole.snap'), '--compression', 'zstd'], 60_000);
    expect([whole.code, whole.stderr]).toEqual([0, '']);
    expect(statSync(join(d.dir, 'whole.snap')).size).toBeGreaterThan(300 * 1024 * 1024);
    expect(d.log()).not.toMatch(/EPIPE|Unhandled 'error' event/);
    rmSync(join(d.dir, 'whole.snap'));
  }, 120_000);

  it('-o FILE never follows a planted FILE.partial (or FILE) symlink: it writes a new file and renames it', async () => {
    const sub = join(d.dir, 'out');
    rmSync(sub, { recursive: true, force: true });
    mkdirSync(sub, { mode: 0o755 });
    const victim = join(d.dir, 'victim');
    const victim2 = join(d.dir, 'victim2');
    writeFileSync(victim, 'root-owned, precious\n', { mode: 0o644 });
    writeFileSync(victim2, 'also precious\n', { mode: 0o644 });
    const file = join(sub, 'p.snap');
    symlinkSync(victim, `${file}.partial`);
    symlinkSync(victim2, file);
    const small = await d.create({ name: 'small' });
    expect(small.state).toBe('running');
    const r = await cliTimed(d, ['session', 'snapshot', 'small', '-o', file, '--compression', 'zstd'], 30_000);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(readFileSync(victim, 'utf8')).toBe('root-owned, precious\n');
    expect(readFileSync(victim2, 'utf8')).toBe('also precious\n');
    expect(readlinkSync(`${file}.partial`)).toBe(victim); // untouched
    const st = lstatSync(file);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(readFileSync(file).readUInt32LE(0)).toBe(0xfd2fb528);
    // Nothing else left in the directory.
    expect(readdirSync(dirname(file)).sort()).toEqual([basename(file), `${basename(file)}.partial`]);
    // A failed snapshot leaves no partial file either.
    const bad = await cliTimed(d, ['session', 'snapshot', 'no-such-session', '-o', join(sub, 'q.snap')], 30_000);
    expect(bad.code).toBe(1);
    expect(readdirSync(sub).filter((f) => f.startsWith('q.snap'))).toEqual([]);
  });

  it('thaws at start a running session that was left frozen while the daemon was down', async () => {
    const s = await d.create({ name: 'fz' });
    await d.stop('SIGTERM');
    const dir = v2Dir(d, s.id);
    writeFileSync(join(dir, 'cgroup.freeze'), '1');
    await until('the freeze', () => /^frozen 1$/m.test(readFileSync(join(dir, 'cgroup.events'), 'utf8')));
    await d.start();
    const r = await execTrue(d, 'fz');
    expect(r.code).toBe(0);
    expect(frozen(d, s.id)).toBe(false);
    expect(d.log()).toMatch(/thawed a session left frozen/);
  });
});

describe.skipIf(!isRoot)('a snapshot that outlasts sessions.snapshot_timeout_ms (root)', () => {
  const d = new TestDaemon({ extraConfig: 'snapshot_timeout_ms = 1500\n' });
  let id = '';

  beforeAll(async () => {
    await d.start();
    id = (await d.create({ name: 'slow' })).id;
    expect((await d.sh('slow', 'head -c 8M /dev/urandom > /data')).code).toBe(0); // more than every buffer on the way holds
  });
  afterAll(async () => {
    thawAll(d);
    await d.cleanup();
  });

  it('is cut when the client reads nothing, and the session runs again', async () => {
    const t0 = Date.now(); // the freeze comes after this, and the thaw at least 1500 ms after it
    const { req, res } = await rawSnapshot(d, id);
    res.pause();
    try {
      expect(res.statusCode).toBe(200);
      // Frozen meanwhile: this exec waits for the timeout's thaw.
      const r = await execTrue(d, 'slow', 8000);
      expect([r.code, r.stderr]).toEqual([0, '']);
      // It waited for the thaw at the timeout, and not much longer.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
      expect(Date.now() - t0).toBeLessThan(1500 + 3000);
      expect(frozen(d, id)).toBe(false);
      const end = outcome(res);
      res.resume();
      expect(await end).toBe('cut');
    } finally {
      req.destroy();
      res.destroy();
    }
    // The next one, read at once, is whole.
    const whole = await rawSnapshot(d, id);
    expect(await outcome(whole.res)).toBe('complete');
  });
});
