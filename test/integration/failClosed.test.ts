// Fail closed: when a confinement step cannot be done, nothing runs, the
// error names the step, and nothing is left behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { isRoot, TestDaemon } from './harness.js';

describe.skipIf(!isRoot)('fail closed (root)', () => {
  // A rootfs without /home: the tmpfs step must fail.
  const bad = new TestDaemon();
  const good = new TestDaemon();

  beforeAll(async () => {
    bad.sessionsConfig = `rootfs = "${join(bad.dir, 'rootfs')}"\n`;
    mkdirSync(join(bad.dir, 'rootfs', 'tmp'), { recursive: true });
    await bad.start();
    await good.start();
  });
  afterAll(async () => {
    await bad.cleanup();
    await good.cleanup();
  });

  it('refuses a session whose mounts cannot be built, naming the step, and leaves nothing', async () => {
    const r = await bad.api('POST', '/v1/sessions', { name: 'nohome' });
    expect(r.status).toBe(500);
    const message = (r.body as { error: { code: string; message: string; step?: string; errno?: number } }).error;
    expect(message.code).toBe('confinement_failed');
    expect(message).toMatchObject({ step: 'tmpfs', errno: 2 });
    expect(message.message).toMatch(/could not be confined: step tmpfs failed: ENOENT \(open mount target home\)/);
    const list = (await bad.api('GET', '/v1/sessions?all=1')).body as { sessions: { state: string; last_error: string }[] };
    expect(list.sessions).toHaveLength(1);
    expect(list.sessions[0]!.state).toBe('failed');
    expect(list.sessions[0]!.last_error).toMatch(/step tmpfs failed/);
    expect(bad.cgroupDirs().flatMap((d) => d.split('/').filter((c) => c.startsWith('s-')))).toEqual([]);
    const db = new Database(join(bad.stateDir, 'enclave.db'), { readonly: true });
    try {
      expect(db.prepare('SELECT count(*) AS n FROM id_slots').get()).toEqual({ n: 0 });
      expect(db.prepare('SELECT count(*) AS n FROM kernel_objects').get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });


  it('leaves a running session with a kept console running when a start of it cannot start that console again', async () => {
    const s = await good.create({ name: 'kept', console: true });
    const consoleRuns = async () => ((await good.api('GET', `/v1/sessions/${s.id}`)).body as { console: { running: boolean } }).console.running;
    expect(await consoleRuns()).toBe(true);
    // Its console's shell ends, and the session may start no process more.
    await good.sh('kept', 'pkill -KILL -x bash; true'); // an interactive shell ignores SIGTERM
    for (let i = 0; i < 100 && (await consoleRuns()); i++) await new Promise((r) => setTimeout(r, 50));
    expect(await consoleRuns()).toBe(false);
    const pids = good.cgroupDirs(s.id).find((d) => existsSync(join(d, 'pids.max')))!;
    writeFileSync(join(pids, 'pids.max'), readFileSync(join(pids, 'pids.current'), 'utf8').trim());
    try {
      const r = await good.api('POST', `/v1/sessions/${s.id}/start`);
      // The console's own error: this call did not start the session, so it tries no undo (no stop) and it runs on.
      expect([r.status, (r.body as { error: { message: string } }).error.message]).toEqual([503, expect.stringMatching(/^the session cannot start a command: step fork failed: EAGAIN/)]);
      expect((await good.show(s.id)).state).toBe('running');
    } finally {
      writeFileSync(join(pids, 'pids.max'), 'max');
    }
    await good.destroy(s.id);
  });

  // The filter used to be a file in the state dir that enclave-enter re-read
  // on every exec (a tamper point). Now it is part of the stored plan, loaded
  // once by the session init, and every command inherits it from there.
  it('keeps the seccomp program only in the stored plan, and every exec runs under it', async () => {
    const s = await good.create({ name: 'filtered' });
    expect(existsSync(join(good.stateDir, 'seccomp.bpf'))).toBe(false);
    const db = new Database(join(good.stateDir, 'enclave.db'), { readonly: true });
    try {
      const row = db.prepare('SELECT plan FROM session_plans WHERE session_id = ?').get(s.id) as { plan: string };
      const ops = (JSON.parse(row.plan) as { ops: { op: string; args: string[] }[] }).ops;
      expect(ops[ops.length - 1]!.op).toBe('seccomp');
      expect(ops[ops.length - 1]!.args[0]).toMatch(/^([0-9a-f]{16})+$/);
    } finally {
      db.close();
    }
    expect((await good.sh('filtered', 'grep ^Seccomp: /proc/self/status')).stdout).toBe('Seccomp:\t2\n');
    await good.destroy(s.id);
  });
});

// The minimal root is made only with the list of what it hides of the host's
// /usr: a daemon whose scan fails creates nothing, says why, and a later
// create scans again. The daemon finds `find` on its PATH; this one's first
// PATH entry is a find that fails while a flag file exists.
describe.skipIf(!isRoot)('fail closed: no minimal root without the scan of /usr (root)', () => {
  const d = new TestDaemon();
  const bin = join(d.dir, 'bin');
  const flag = join(d.dir, 'find-fails');

  beforeAll(async () => {
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'find'), `#!/bin/sh\nif [ -e ${flag} ]; then echo "find: simulated failure" >&2; exit 1; fi\nexec /usr/bin/find "$@"\n`, { mode: 0o755 });
    writeFileSync(flag, '');
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? '/usr/bin:/bin'}`;
    try {
      await d.start(); // the daemon takes this environment
    } finally {
      process.env.PATH = path;
    }
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('refuses creates while the scan fails, naming it, with nothing made; the next create after a fix proceeds, masked', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await d.api('POST', '/v1/sessions', { name: `try${i}` });
      expect(r.status).toBe(500);
      const error = (r.body as { error: { code: string; message: string } }).error;
      expect(error.code).toBe('confinement_failed');
      expect(error.message).toMatch(/session not created: the daemon could not list what sessions must not see of the host's \/usr \(find over \/usr exited with 1: find: simulated failure\)/);
    }
    expect(((await d.api('GET', '/v1/sessions?all=1')).body as { sessions: unknown[] }).sessions).toEqual([]);
    expect(d.cgroupDirs().flatMap((c) => readdirSync(c).filter((n) => n.startsWith('s-')))).toEqual([]);
    rmSync(flag);
    await d.create({ name: 'after' });
    const r = await d.sh('after', 'ls -A /usr/share/polkit-1/rules.d 2>/dev/null | wc -l; head -c 10 /usr/lib/os-release');
    expect(r.stdout).toBe(`0\n${readFileSync('/usr/lib/os-release', 'utf8').slice(0, 10)}`);
  });
});

// A session made or started with a kept console whose shell cannot start:
// the caller is told it failed, and nothing it was told failed runs on.
describe.skipIf(!isRoot)('a kept console that cannot start (root)', () => {
  // A root with the directories a session mounts on, and no shell at all.
  const d = new TestDaemon();
  beforeAll(async () => {
    d.sessionsConfig = `rootfs = "${join(d.dir, 'rootfs')}"\n`;
    for (const dir of ['home', 'tmp', 'run', 'proc', 'dev', 'sys', 'etc', 'root']) mkdirSync(join(d.dir, 'rootfs', dir), { recursive: true });
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('ends a create with --console failed, saying why, with nothing left running', async () => {
    const r = await d.api('POST', '/v1/sessions', { name: 'noshell', console: true });
    expect(r.status).toBe(500);
    const error = (r.body as { error: { code: string; message: string } }).error;
    expect(error.code).toBe('internal');
    expect(error.message).toMatch(/^session s-[0-9a-f]+: its console could not start: .*\/bin\/sh.*; it was ended \(failed\)$/);
    const list = (await d.api('GET', '/v1/sessions?all=1')).body as { sessions: { name: string; state: string; last_error: string }[] };
    expect(list.sessions.map((s) => [s.name, s.state])).toEqual([['noshell', 'failed']]);
    expect(list.sessions[0]!.last_error).toMatch(/its console could not start/);
    expect(d.cgroupDirs().flatMap((c) => c.split('/').filter((p) => p.startsWith('s-')))).toEqual([]);
  });
});
