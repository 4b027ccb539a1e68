// State on disk and the socket are not trusted blindly, and the daemon does
// not damage what it finds around it (issue 13's smaller defects).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { rmdirSync } from 'node:fs';
import Database from 'better-sqlite3';
import { chmodSync, chownSync, existsSync, mkdirSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CLI, isRoot, requestsAs, TestDaemon } from './harness.js';

const GID = 48213; // a group nobody on the machine has

/** GET /v1/health as uid 65534 with these supplementary groups; 0: the kernel refused the connect. */
const healthAsNobody = (socket: string, groups: number[]) => requestsAs(socket, { uid: 65534, groups }, [{ method: 'GET', path: '/v1/health' }])[0]![0];

describe.skipIf(!isRoot)('state and socket trust (root)', () => {
  const d = new TestDaemon({ topConfig: `socket_gid = ${GID}\n` });
  const db = () => join(d.stateDir, 'enclave.db');
  beforeAll(async () => {
    // A shared socket directory with the sticky bit, as /tmp has.
    mkdirSync(dirname(d.socket), { recursive: true });
    chmodSync(dirname(d.socket), 0o1777);
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('leaves an existing socket directory as it is (the sticky bit survives)', () => {
    expect(statSync(dirname(d.socket)).mode & 0o7777).toBe(0o1777);
  });

  it('admits a caller whose membership in socket_gid is supplementary (usermod -aG), and not one without it', () => {
    expect(statSync(d.socket).gid).toBe(GID);
    expect(healthAsNobody(d.socket, [GID])).toBe(200); // was 403: only a primary gid counted
    expect(healthAsNobody(d.socket, [])).toBe(0);
  });

  it('refuses a database owned by another user, or writable by others, naming the file, and never re-modes it', async () => {
    await d.stop('SIGTERM');
    chownSync(db(), 65534, 0);
    await expect(d.start()).rejects.toThrow(new RegExp(`${db()}: owned by uid 65534, not root`));
    expect(statSync(db()).uid).toBe(65534); // not "fixed" behind the operator's back
    chownSync(db(), 0, 0);
    chmodSync(db(), 0o666);
    await expect(d.start()).rejects.toThrow(/enclave\.db: writable by group or others \(mode 666\)/);
    expect(statSync(db()).mode & 0o777).toBe(0o666);
    chmodSync(db(), 0o600);
    chmodSync(d.stateDir, 0o777);
    await expect(d.start()).rejects.toThrow(/state: writable by group or others \(mode 777\)/);
    chmodSync(d.stateDir, 0o700);
    await d.start();
    expect((await d.api('GET', '/v1/health')).status).toBe(200);
  });

  it('refuses a corrupt database at start, naming the file and what SQLite said', async () => {
    await d.stop('SIGTERM');
    const backup = `${db()}.good`;
    copyFileSync(db(), backup);
    writeFileSync(db(), Buffer.alloc(8192, 0x5a), { mode: 0o600 });
    await expect(d.start()).rejects.toThrow(new RegExp(`${db()}: file is not a database\\. The daemon will not start on it`));
    // It points to what cleans up after a database that is moved aside.
    await expect(d.start()).rejects.toThrow(/`enclave doctor --repair` removes their cgroups and links/);
    copyFileSync(backup, db());
    await d.start();
    expect((await d.api('GET', '/v1/health')).status).toBe(200);
  });

  it('acts only on kernel objects it would have made for a session: crafted rows naming another cgroup or link are ignored', { timeout: 30_000 }, async () => {
    const s = await d.create({ name: 'crafted' });
    const victimDir = `/sys/fs/cgroup/pids/enclave-victim-${d.runId}`;
    const link = `ev${d.tag}`;
    mkdirSync(victimDir);
    const victim = spawn('sleep', ['1000'], { detached: true, stdio: 'ignore' });
    try {
      writeFileSync(join(victimDir, 'cgroup.procs'), String(victim.pid));
      expect(spawnSync('ip', ['link', 'add', link, 'type', 'bridge']).status).toBe(0);
      await d.stop('SIGTERM');
      const conn = new Database(db());
      try {
        // As if the daemon had died mid-create: at start it releases the row's objects.
        conn.prepare(`UPDATE sessions SET state = 'creating' WHERE id = ?`).run(s.id);
        conn.prepare(`INSERT INTO kernel_objects (session_id, kind, ref) VALUES (?, 'cgroup', ?), (?, 'veth', ?)`).run(s.id, victimDir, s.id, link);
      } finally {
        conn.close();
      }
      await d.start();
      expect((await d.show(s.id)).state).toBe('failed');
      expect(() => process.kill(victim.pid!, 0)).not.toThrow(); // alive
      expect(existsSync(victimDir)).toBe(true);
      expect(existsSync(`/sys/class/net/${link}`)).toBe(true);
      expect(d.cgroupDirs(s.id)).toEqual([]); // its own cgroups were released
      expect(d.log()).toMatch(/ignored a kernel object this daemon does not own/);
    } finally {
      victim.kill('SIGKILL');
      await new Promise((r) => victim.once('exit', r));
      rmdirSync(victimDir);
      spawnSync('ip', ['link', 'del', link]);
    }
  });

  it('daemon --cleanup also removes its empty parent cgroups', async () => {
    expect(d.cgroupDirs().length).toBeGreaterThan(0);
    await d.stop('SIGTERM');
    const r = spawnSync(process.execPath, [CLI, 'daemon', '--cleanup', '--config', d.configPath], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(d.cgroupDirs()).toEqual([]);
    await d.start(); // for the harness's own cleanup
    expect(existsSync(d.socket)).toBe(true);
  });
});

describe.skipIf(!isRoot)('history retention (root)', () => {
  const d = new TestDaemon({ extraConfig: 'keep_history = 2\n' });
  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('keeps the newest keep_history ended sessions; health counts live sessions only; metrics count by state', async () => {
    const live = await d.create({ name: 'stays' });
    const ended: string[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await d.create({ name: `gone-${i}` });
      await d.destroy(s.id);
      ended.push(s.id);
    }
    // An ended row is kept while its link is still going (its lease refers to it): pruned once the link is gone.
    const want = [live.id, ended[2]!, ended[3]!].sort();
    const listed = async () => ((await d.api('GET', '/v1/sessions?all=1')).body as { sessions: { id: string; state: string }[] }).sessions.map((s) => s.id).sort();
    let all = await listed();
    for (const deadline = Date.now() + 5000; JSON.stringify(all) !== JSON.stringify(want) && Date.now() < deadline; all = await listed()) await new Promise((r) => setTimeout(r, 50));
    expect(all).toEqual(want);
    expect((await d.api('GET', `/v1/sessions/${ended[0]}`)).status).toBe(404);
    expect((await d.api('GET', '/v1/health')).body).toMatchObject({ sessions: 1 });
    const text = String((await d.rawRequest('GET', '/metrics', '')).body);
    expect(text).toContain('enclave_sessions{state="running"} 1');
    expect(text).toContain('enclave_sessions{state="destroyed"} 2');
  });
});
