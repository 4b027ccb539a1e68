// Snapshots that go wrong must leave nothing wrong behind: a client that goes
// away (killed CLI, dropped socket) or stalls past sessions.snapshot_timeout_ms
// never leaves the session frozen or the daemon dead; a session left frozen
// while the daemon was down is thawed at start; tar and zstd run charged to
// the session's cgroups, not the daemon's; and `-o FILE` never follows a
// planted symlink.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { addon } from '../../src/native/addon.js';
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

/** Children of the daemon running `comm` (tar, zstd). */
function daemonChildren(daemon: number, comm: string): number[] {
  const found: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const m = /^\d+ \((.*)\) \S (\d+)/.exec(stat);
      if (m && m[1] === comm && Number(m[2]) === daemon) found.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return found;
}

/** controller -> cgroup path, from /proc/PID/cgroup ("" for the v2 line). */
function cgroupsOf(pid: number): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n')) {
    const [, ctrls, path] = /^\d+:([^:]*):(.*)$/.exec(line)!;
    for (const c of ctrls!.split(',')) map.set(c, path!);
  }
  return map;
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
/** The snapshot child directories under the session's cgroups that exist now. */
const snapshotChildren = (d: TestDaemon, id: string) => d.cgroupDirs(id).map((p) => join(p, 'snapshot')).filter((p) => existsSync(p));

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
      await until('the snapshot cgroups to go', () => snapshotChildren(d, id).length === 0, 2000);
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
      await until('the snapshot cgroups to go', () => snapshotChildren(d, id).length === 0, 2000);
    }
    expect(await daemonPid(d)).toBe(pid);
    // A snapshot after all that is whole, and leaves no child cgroup behind.
    const whole = await cliTimed(d, ['session', 'snapshot', 'big2', '-o', join(d.dir, 'whole.snap'), '--compression', 'zstd'], 60_000);
    expect([whole.code, whole.stderr]).toEqual([0, '']);
    expect(statSync(join(d.dir, 'whole.snap')).size).toBeGreaterThan(300 * 1024 * 1024);
    expect(snapshotChildren(d, id)).toEqual([]);
    expect(d.log()).not.toMatch(/EPIPE|Unhandled 'error' event/);
    rmSync(join(d.dir, 'whole.snap'));
  }, 120_000);

  it('runs tar and zstd (one thread) in a snapshot child of the session\'s v1 cgroups, outside the frozen v2 one, and removes it after', async () => {
    const id = await holding('cg', 32);
    const daemon = await daemonPid(d);
    const { req, res } = await rawSnapshot(d, id);
    res.pause(); // the stream stalls: tar and zstd wait on it
    try {
      await until('tar and zstd', () => daemonChildren(daemon, 'tar').length === 1 && daemonChildren(daemon, 'zstd').length === 1);
      const mine = cgroupsOf(daemon);
      const want = `/${d.cgroupParent}/${id}/snapshot`;
      for (const comm of ['tar', 'zstd']) {
        const pid = daemonChildren(daemon, comm)[0]!;
        const cg = cgroupsOf(pid);
        for (const ctrl of ['memory', 'cpu', 'pids']) {
          expect({ comm, ctrl, path: cg.get(ctrl) }).toEqual({ comm, ctrl, path: want });
          expect(cg.get(ctrl)).not.toBe(mine.get(ctrl));
        }
        // Not under the frozen v2 directory (it would freeze them too).
        expect(cg.get('')!.startsWith(`/${d.cgroupParent}/${id}`)).toBe(false);
      }
      const zstd = readFileSync(`/proc/${daemonChildren(daemon, 'zstd')[0]}/cmdline`, 'utf8').split('\0');
      expect(zstd).toContain('--single-thread');
      expect(snapshotChildren(d, id).length).toBe(3); // memory, cpu, pids
    } finally {
      req.destroy();
      res.destroy();
    }
    await until('the snapshot cgroups to go', () => snapshotChildren(d, id).length === 0, 2000);
    expect((await execTrue(d, 'cg')).code).toBe(0);
  });

  it('snapshots, stops and starts a session of the smallest memory (16 MiB): tar and zstd fit in it beside its files', async () => {
    // With a zstd worker thread (-T1), zstd alone took ~50 MB and was OOM-killed in the session's cgroup: both failed.
    const s = await d.create({ name: 'small16', memory_mb: 16 });
    const r = await d.sh('small16', 'head -c 3M /dev/urandom > /data && sha256sum /data');
    expect(r.stderr).toBe('');
    const out = join(d.dir, 'small16.snap');
    const snap = await d.cli(['session', 'snapshot', 'small16', '-o', out, '--compression', 'zstd']);
    expect(snap.code, snap.stderr).toBe(0);
    expect(sizeOf(out)).toBeGreaterThan(3 * 1024 * 1024);
    const stop = await d.cli(['session', 'stop', 'small16']);
    expect(stop.code, stop.stderr).toBe(0);
    expect((await d.show(s.id)).state).toBe('stopped');
    const start = await d.cli(['session', 'start', 'small16']);
    expect(start.code, start.stderr).toBe(0);
    expect((await d.sh('small16', 'sha256sum /data')).stdout).toBe(r.stdout);
    expect((await d.show(s.id)).oom.kills).toBe(0);
    await d.destroy(s.id);
  });

  it('a destroy during a snapshot removes every cgroup of the session, the snapshot child included', async () => {
    const s = { id: await holding('gone', 32) };
    const { req, res } = await rawSnapshot(d, s.id);
    res.pause();
    try {
      await until('the snapshot to start', () => frozen(d, s.id));
      await d.destroy(s.id);
      expect(d.cgroupDirs(s.id)).toEqual([]);
      expect((await d.show(s.id)).state).toBe('destroyed');
    } finally {
      req.destroy();
      res.destroy();
    }
  });

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

  it('a daemon killed mid-snapshot: the next start thaws the session and removes the snapshot cgroups', async () => {
    const id = await holding('crash', 32);
    const daemon = await daemonPid(d);
    const { req, res } = await rawSnapshot(d, id);
    res.pause();
    let helpers: number[] = [];
    try {
      await until('tar and zstd', () => (helpers = [...daemonChildren(daemon, 'tar'), ...daemonChildren(daemon, 'zstd')]).length === 2);
      await d.stop('SIGKILL');
      expect(frozen(d, id)).toBe(true);
    } finally {
      req.destroy();
      res.destroy();
      // tar and zstd re-parent to this process (the harness is a subreaper).
      for (const pid of helpers) for (let i = 0; i < 100 && existsSync(`/proc/${pid}`) && !addon().reapChild(pid); i++) await sleep(10);
    }
    await d.start();
    expect((await execTrue(d, 'crash')).code).toBe(0);
    expect(frozen(d, id)).toBe(false);
    expect(snapshotChildren(d, id)).toEqual([]);
    expect(d.log()).toMatch(/removed the cgroups of a snapshot the last daemon did not finish/);
  });

  /** Cgroup directories of a session in each hierarchy the daemon uses, each v1 one with a snapshot child, as a crash would leave them. */
  function leftovers(id: string): string[] {
    const made = d
      .cgroupDirs()
      .filter((p) => existsSync(join(p, 'cgroup.procs')))
      .map((p) => join(p, id));
    for (const dir of made) {
      mkdirSync(dir);
      if (!existsSync(join(dir, 'cgroup.controllers'))) mkdirSync(join(dir, 'snapshot')); // v1 only
    }
    return made;
  }
  const removeLeftovers = (dirs: string[]) => {
    for (const dir of dirs) {
      if (existsSync(join(dir, 'snapshot'))) rmdirSync(join(dir, 'snapshot'));
      if (existsSync(dir)) rmdirSync(dir);
    }
  };

  it('the start-up sweep removes an ended session\'s cgroups that hold a snapshot child', async () => {
    const s = await d.create({ name: 'swept' });
    await d.destroy(s.id);
    const made = leftovers(s.id);
    try {
      await d.stop('SIGTERM');
      await d.start();
      for (const dir of made) expect({ dir, left: existsSync(dir) }).toEqual({ dir, left: false });
    } finally {
      removeLeftovers(made);
    }
  });

  it('doctor --repair removes an orphan session cgroup that holds a snapshot child', async () => {
    const made = leftovers('s-00000abcd1'); // no row names it: the daemon leaves it alone, doctor does not
    try {
      const repaired = await d.cli(['doctor', '--config', d.configPath, '--repair']);
      for (const dir of made) expect({ dir, left: existsSync(dir) }, repaired.stdout).toEqual({ dir, left: false });
    } finally {
      removeLeftovers(made);
    }
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
      await until('the snapshot cgroups to go', () => snapshotChildren(d, id).length === 0, 2000);
    } finally {
      req.destroy();
      res.destroy();
    }
    // The next one, read at once, is whole.
    const whole = await rawSnapshot(d, id);
    expect(await outcome(whole.res)).toBe('complete');
  });
});
