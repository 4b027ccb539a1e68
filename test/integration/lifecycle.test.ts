// Destroy leaves nothing behind, hangs up terminals, and can be forced or
// timed; sessions survive a daemon restart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { spawn as spawnPty } from 'node-pty';
import type { Session } from '../../src/api/schemas.js';
import { CLI, isRoot, TEST_POOL, TestDaemon } from './harness.js';

/** Host PIDs whose real uid lies in [base, base+size). */
function processesInRange(base: number, size: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${e}/status`, 'utf8'));
      const uid = Number(m?.[1]);
      if (uid >= base && uid < base + size) out.push(Number(e));
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

describe.skipIf(!isRoot)('session lifecycle (root)', () => {
  const d = new TestDaemon({ extraConfig: 'shutdown_deadline_ms = 2000\n' });
  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  const db = () => new Database(join(d.stateDir, 'enclave.db'), { readonly: true, fileMustExist: true });

  /** The session as shown once it is no longer running (or after 10 s). */
  async function afterRunning(id: string): Promise<Session> {
    let shown = await d.show(id);
    for (const deadline = Date.now() + 10_000; shown.state === 'running' && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 10));
      shown = await d.show(id);
    }
    return shown;
  }

  it('destroy leaves no process, mount, cgroup, ID slot or live row', async () => {
    const s = await d.create({ name: 'doomed' });
    const range = s.id_range!;
    // Leave work running in the session: a background process and a busy exec.
    await d.sh('doomed', 'sleep 1000 > /dev/null 2>&1 &');
    const busy = d.sh('doomed', 'sleep 1000');
    // init + background sleep + exec'd sleep (+ its enter helper), once the CLI is up.
    await waitFor(() => processesInRange(range.host_base, range.size).length >= 4);
    expect(processesInRange(range.host_base, range.size).length).toBeGreaterThanOrEqual(4);
    expect(d.cgroupDirs(s.id).length).toBeGreaterThan(0);

    await d.destroy(s.id);
    const ended = await busy;
    expect(ended.code).not.toBe(0);

    expect(processesInRange(range.host_base, range.size)).toEqual([]);
    expect(existsSync(`/proc/${s.init_pid}`)).toBe(false);
    expect(d.cgroupDirs(s.id)).toEqual([]);
    // Nothing of the session is mounted on the host; the daemon's own lxcfs mount (not the session's) stays.
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(d.stateDir));
    expect(mounts.filter((l) => !l.includes(` ${join(d.stateDir, 'lxcfs', 'mnt')} `))).toEqual([]);
    const conn = db();
    try {
      expect(conn.prepare('SELECT count(*) AS n FROM id_slots WHERE session_id = ?').get(s.id)).toEqual({ n: 0 });
      // The cgroups' records go with the destroy; the veth's once the kernel's netns cleanup has removed the link (linkReaper.ts).
      expect(conn.prepare(`SELECT count(*) AS n FROM kernel_objects WHERE session_id = ? AND kind = 'cgroup'`).get(s.id)).toEqual({ n: 0 });
      const objects = conn.prepare('SELECT count(*) AS n FROM kernel_objects WHERE session_id = ?');
      for (const deadline = Date.now() + 3000; (objects.get(s.id) as { n: number }).n > 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 25));
      expect(objects.get(s.id)).toEqual({ n: 0 });
      expect(existsSync(`/sys/class/net/ve-${s.id.slice(2)}`)).toBe(false);
      expect(conn.prepare('SELECT state FROM sessions WHERE id = ?').get(s.id)).toEqual({ state: 'destroyed' });
    } finally {
      conn.close();
    }
    const shown = await d.show(s.id);
    expect(shown.state).toBe('destroyed');
    expect(shown.init_pid).toBeNull();
  });

  it('destroying twice is harmless', async () => {
    const s = await d.create();
    await d.destroy(s.id);
    await d.destroy(s.id);
    expect((await d.show(s.id)).state).toBe('destroyed');
  });

  /** Sessions made ahead (the integration-pool project): the host's, not a test's; a refill may make one at any time. */
  const poolMembers = () => {
    if (!TEST_POOL) return new Set<string>();
    const conn = db();
    try {
      return new Set((conn.prepare('SELECT id FROM sessions WHERE pool IS NOT NULL').all() as { id: string }[]).map((r) => r.id));
    } finally {
      conn.close();
    }
  };

  it('destroying during create is safe and leaves nothing', async () => {
    const sessionDirs = () => {
      const members = poolMembers();
      return readdirSync(d.cgroupDirs()[0]!).filter((n) => n.startsWith('s-') && !members.has(n));
    };
    const before = sessionDirs();
    const creating = d.api('POST', '/v1/sessions', { name: 'racer' });
    // Destroy by name as soon as the row exists.
    let destroyed = false;
    for (let i = 0; i < 200 && !destroyed; i++) {
      const r = await d.api('DELETE', '/v1/sessions/racer');
      destroyed = r.status === 204;
      if (!destroyed) await new Promise((res) => setTimeout(res, 1));
    }
    const created = await creating;
    expect(created.status).toBe(201);
    expect(destroyed).toBe(true);
    const id = (created.body as { id: string }).id;
    expect((await d.show(id)).state).toBe('destroyed');
    expect(d.cgroupDirs(id)).toEqual([]);
    expect(sessionDirs()).toEqual(before);
  });

  it('frees the name and the ID slot for the next session', async () => {
    const s1 = await d.create({ name: 'reuse' });
    await d.destroy('reuse');
    const s2 = await d.create({ name: 'reuse' });
    expect(s2.id).not.toBe(s1.id);
    if (!TEST_POOL) expect(s2.id_range!.host_base).toBe(s1.id_range!.host_base);
    else {
      // s2 may be a member made before s1 was destroyed; the slot s1 freed went to it or to the member made next.
      const conn = db();
      try {
        expect(conn.prepare('SELECT count(*) AS n FROM id_slots WHERE session_id = ?').get(s1.id)).toEqual({ n: 0 });
        const holder = conn.prepare('SELECT s.id, s.pool FROM id_slots i JOIN sessions s ON s.id = i.session_id WHERE i.slot = (SELECT id_slot FROM sessions WHERE id = ?)').get(s1.id) as { id: string; pool: string | null } | undefined;
        expect(holder === undefined || holder.id === s2.id || holder.pool !== null, JSON.stringify(holder)).toBe(true);
      } finally {
        conn.close();
      }
    }
    await d.destroy(s2.id);
  });

  it('keeps sessions running across a daemon SIGTERM and re-adopts them', async () => {
    const s = await d.create({ name: 'survivor' });
    await d.sh('survivor', 'echo kept > /home/state.txt');
    const code = await d.stop('SIGTERM');
    expect(code).toBe(0);
    expect(existsSync(d.socket)).toBe(false);
    // Still alive with no daemon at all.
    expect(readFileSync(`/proc/${s.init_pid}/status`, 'utf8')).toMatch(/^State:\s+S/m);
    await d.start();
    const shown = await d.show('survivor');
    expect(shown.state).toBe('running');
    expect(shown.init_pid).toBe(s.init_pid);
    const r = await d.sh('survivor', 'cat /home/state.txt; hostname');
    expect(r.stdout).toBe('kept\nsurvivor\n');
    await d.destroy('survivor');
    await d.reapAdopted();
    expect(existsSync(`/proc/${s.init_pid}`)).toBe(false);
    expect(d.cgroupDirs(s.id)).toEqual([]);
  });

  it('marks a session failed when its init dies behind the daemon, and cleans up', async () => {
    const s = await d.create({ name: 'victim' });
    process.kill(s.init_pid!, 'SIGKILL');
    const shown = await afterRunning(s.id);
    expect(shown.state).toBe('failed');
    expect(shown.last_error).toMatch(/killed by signal 9/);
    expect(d.cgroupDirs(s.id)).toEqual([]);
  });

  // Destroy intent and exit reasons.
  it('a destroy interrupted by a daemon crash ends "destroyed", as asked, not "failed"', { timeout: 30_000 }, async () => {
    const s = await d.create({ name: 'interrupted-destroy' });
    // The daemon dies right after recording the intent; the init dies with it.
    await d.stop('SIGKILL');
    const conn = new Database(join(d.stateDir, 'enclave.db'));
    try {
      conn.prepare(`UPDATE sessions SET state = 'destroying' WHERE id = ?`).run(s.id);
    } finally {
      conn.close();
    }
    process.kill(s.init_pid!, 'SIGKILL');
    await d.reapAdopted();
    await d.start();
    const shown = await d.show(s.id);
    expect(shown.state).toBe('destroyed');
    expect(shown.last_error).toBeNull();
    expect(d.cgroupDirs(s.id)).toEqual([]);
  });

  it('records how the init ended: a signal from outside is "failed" with the signal; a destroy is "destroyed" with the init\'s exit', { timeout: 30_000 }, async () => {
    const killed = await d.create({ name: 'killed' });
    process.kill(killed.init_pid!, 'SIGKILL');
    const shown = await afterRunning(killed.id);
    expect(shown.state).toBe('failed');
    expect(shown.exit).toEqual({ code: null, signal: 9 });
    expect((await d.cli(['session', 'show', 'killed'])).stdout).toMatch(/init exit\s+signal 9/);
    const asked = await d.create({ name: 'asked' });
    await d.destroy(asked.id);
    const done = await d.show(asked.id);
    expect(done.state).toBe('destroyed');
    expect(done.exit).toEqual({ code: 143, signal: null }); // the init passed SIGTERM on and ended with 128 + 15
    // SIGTERM from outside the daemon: the session stops, not asked for through Enclave, and says so.
    const told = await d.create({ name: 'told' });
    process.kill(told.init_pid!, 'SIGTERM');
    const t = await afterRunning(told.id);
    expect(t.state).toBe('failed');
    expect(t.exit).toEqual({ code: 143, signal: null });
    expect(t.last_error).toBe('the session init was told to stop by signal 15 from outside the daemon');
  });

  it('keeps an adopted session\'s exit reason: the daemon is not its parent, the init tells it', { timeout: 30_000 }, async () => {
    const s = await d.create({ name: 'adopted-told' });
    await d.stop();
    await d.start(); // re-adopted: its init is no child of this daemon
    process.kill(s.init_pid!, 'SIGTERM');
    const t = await afterRunning(s.id);
    expect(t.state).toBe('failed');
    expect(t.exit).toEqual({ code: 143, signal: null });
    expect(t.last_error).toBe('the session init was told to stop by signal 15 from outside the daemon');
    await d.reapAdopted();
  });

  it('ends on SIGTERM by its shutdown deadline while a destroy is stuck; the session keeps running and the next start finishes the destroy', { timeout: 40_000 }, async () => {
    const s = await d.create({ name: 'stuck' });
    // A v1 freezer cgroup of the test's own: frozen tasks cannot die, not even of SIGKILL, until thawed.
    const frz = join('/sys/fs/cgroup/freezer', d.cgroupParent, 'test-freeze');
    mkdirSync(frz, { recursive: true });
    try {
      for (const pid of processesInRange(s.id_range!.host_base, s.id_range!.size)) writeFileSync(join(frz, 'cgroup.procs'), String(pid));
      writeFileSync(join(frz, 'freezer.state'), 'FROZEN');
      await waitFor(() => readFileSync(join(frz, 'freezer.state'), 'utf8').trim() === 'FROZEN');
      const destroy = d.api('DELETE', `/v1/sessions/${s.id}`).catch(() => undefined);
      await waitFor(() => d.log().includes('"msg":"session did not stop in time; killing it"'));
      const t0 = Date.now();
      expect(await d.stop('SIGTERM')).toBe(0);
      // shutdown_deadline_ms = 2000 here: it exits by then, not when the destroy ends.
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(d.log()).toContain('shutdown deadline passed with work under way');
      await destroy;
      expect(existsSync(`/proc/${s.init_pid}`)).toBe(true);
    } finally {
      writeFileSync(join(frz, 'freezer.state'), 'THAWED');
    }
    await d.start();
    const done = await d.show(s.id);
    expect(done.state).toBe('destroyed');
    await d.reapAdopted(); // it re-parented to this test process when the first daemon exited
    expect(existsSync(`/proc/${s.init_pid}`)).toBe(false);
    expect(d.cgroupDirs(s.id)).toEqual([]);
    rmdirSync(frz);
  });
});

describe.skipIf(!isRoot)('destroy: terminals hang up, --force, --timeout (root, a 10 s grace)', () => {
  const GRACE_MS = 10_000;
  const d = new TestDaemon({ extraConfig: `stop_grace_ms = ${GRACE_MS}\n` });
  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  /** `enclave session destroy ...` through the CLI, timed. */
  async function timedDestroy(args: string[]): Promise<{ ms: number; code: number | null; stderr: string }> {
    const t0 = Date.now();
    const r = await d.cli(['session', 'destroy', ...args]);
    return { ms: Date.now() - t0, code: r.code, stderr: r.stderr };
  }

  /** A process that ignores SIGTERM (and SIGHUP), detached from the exec's pipes. */
  const stubborn = `sh -c 'trap "" TERM HUP; while :; do sleep 1; done' > /dev/null 2>&1 &`;

  it('hangs up the console shell (bash, which ignores SIGTERM): a session whose console was attached once ends well within the grace', async () => {
    const s = await d.create({ name: 'with-console' });
    // Attach once from the CLI in a real terminal, run something, detach (ctrl-p ctrl-q): the shell keeps running.
    const p = spawnPty(process.execPath, [CLI, 'session', 'attach', 'with-console'], { name: 'xterm-256color', cols: 80, rows: 24, env: { ...process.env, ENCLAVE_SOCKET: d.socket } });
    let out = '';
    p.onData((x) => (out += x));
    const exited = new Promise<number>((r) => p.onExit(({ exitCode }) => r(exitCode)));
    p.write("printf '\\101%s\\101\\n' ready\r");
    await waitFor(() => out.includes('AreadyA'));
    expect(out).toContain('AreadyA');
    p.write('\x10\x11');
    expect(await exited).toBe(0);
    const shells = (await d.sh('with-console', 'ps -eo args')).stdout.split('\n').filter((l) => /^(\/usr)?\/bin\/bash -l$/.test(l));
    expect(shells).toHaveLength(1);
    expect((await d.show(s.id)).console.running).toBe(true);

    const r = await timedDestroy(['with-console']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.ms).toBeLessThan(3000);
    expect(d.log()).not.toContain('"msg":"session did not stop in time; killing it"');
    const shown = await d.show(s.id);
    expect(shown.state).toBe('destroyed');
    expect(d.cgroupDirs(s.id)).toEqual([]);
  });

  it('--force kills at once, whatever ignores SIGTERM', async () => {
    const s = await d.create({ name: 'stubborn' });
    expect((await d.sh('stubborn', stubborn)).code).toBe(0);
    const r = await timedDestroy(['stubborn', '--force']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.ms).toBeLessThan(3000);
    const shown = await d.show(s.id);
    expect(shown.state).toBe('destroyed');
    expect(shown.exit).toEqual({ code: null, signal: 9 });
    expect(d.cgroupDirs(s.id)).toEqual([]);
  });

  it('--timeout SECONDS waits that long instead of sessions.stop_grace_ms', async () => {
    const s = await d.create({ name: 'stubborn-2' });
    expect((await d.sh('stubborn-2', stubborn)).code).toBe(0);
    const r = await timedDestroy(['stubborn-2', '--timeout', '1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.ms).toBeGreaterThanOrEqual(900);
    expect(r.ms).toBeLessThan(4000);
    expect((await d.show(s.id)).exit).toEqual({ code: null, signal: 9 });
    // The two together make no sense: a usage error, and nothing is destroyed.
    await d.create({ name: 'bystander' });
    const both = await d.cli(['session', 'destroy', 'bystander', '--force', '--timeout', '3']);
    expect(both.code).toBe(2);
    expect((await d.show('bystander')).state).toBe('running');
    const bad = await d.api('DELETE', '/v1/sessions/bystander?timeout=-1');
    expect(bad.status).toBe(400);
    expect((await d.show('bystander')).state).toBe('running');
  });
});
