// One owner per resource (issue 13, defect 1): a second daemon that overlaps
// any resource the first one owns (its state dir, cgroup parent, bridge,
// nftables table or host ID range) refuses to start and names the holder,
// and the first daemon's session keeps running with its process and link.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Session } from '../../src/api/schemas.js';
import { CLI, isRoot, LOCKS_DIR, TestDaemon } from './harness.js';

describe.skipIf(!isRoot)('one owner per resource (root)', () => {
  const a = new TestDaemon();
  const other = join(a.dir, 'second');
  let s: Session;
  let sleeper: Promise<unknown>;

  beforeAll(async () => {
    await a.start();
    s = await a.create({ name: 'owned' });
    sleeper = a.sh('owned', 'sleep 300');
    mkdirSync(other, { recursive: true });
  });
  afterAll(async () => {
    await a.cleanup();
    await sleeper;
  });

  /** A second daemon's config: everything its own, but what `shared` overrides. */
  function secondConfig(shared: { state_dir?: string; parent?: string; bridge?: string; table?: string; base?: number }): string {
    const t = a.tag;
    return (
      `state_dir = "${shared.state_dir ?? join(other, 'state')}"\nsocket = "${join(other, 'enclave.sock')}"\nlocks_dir = "${LOCKS_DIR}"\n` +
      `[ids]\nbase = ${shared.base ?? a.idBase + 32 * 65536 * 64}\nslots = 16\n[cgroups]\nparent = "${shared.parent ?? `${a.cgroupParent}-2nd`}"\n` +
      `[network]\nbridge = "${shared.bridge ?? `eu${t}`}"\nsubnet = "172.30.${parseInt(t.slice(0, 2), 16)}.0/24"\ntable = "${shared.table ?? `enclave_u_${t}`}"\n`
    );
  }

  const cases: [string, Parameters<typeof secondConfig>[0], string][] = [
    ['the state dir', { state_dir: a.stateDir }, `state dir ${a.stateDir}`],
    ['the cgroup parent', { parent: a.cgroupParent }, `cgroup parent ${a.cgroupParent}`],
    ['the bridge', { bridge: a.bridge }, `bridge ${a.bridge}`],
    ['the nftables table', { table: a.nftTable }, `nftables table inet ${a.nftTable}`],
    // Not the same base: a range that starts inside the first one's.
    ['an overlapping ID range', { base: a.idBase + 3 * 65536 }, `overlap IDs ${a.idBase}-${a.idBase + 16 * 65536 - 1}`],
  ];

  it.each(cases)('refuses a second daemon on %s, naming the first one', (_, shared, what) => {
    const config = join(other, 'config.toml');
    writeFileSync(config, secondConfig(shared));
    const r = spawnSync(process.execPath, [CLI, 'daemon', '--config', config], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(what);
    expect(r.stderr).toContain(`in use by the daemon with PID ${a.pid} (state dir ${a.stateDir})`);
    // It stopped before it made anything of its own.
    expect(existsSync(join(other, 'state'))).toBe(false);
    expect(existsSync(`/sys/class/net/eu${a.tag}`)).toBe(false);
    expect(spawnSync('nft', ['list', 'table', 'inet', `enclave_u_${a.tag}`]).status).not.toBe(0);
  });

  it('leaves the first daemon and its session untouched', async () => {
    const shown = await a.show('owned');
    expect(shown.state).toBe('running');
    expect(existsSync(`/proc/${s.init_pid}`)).toBe(true);
    expect(existsSync(`/sys/class/net/ve-${s.id.slice(2)}`)).toBe(true);
    expect((await a.sh('owned', 'pgrep -x sleep >/dev/null && echo sleeping')).stdout).toBe('sleeping\n');
    expect(a.cgroupDirs(s.id).length).toBeGreaterThan(0);
  });

  it('starts a second daemon that overlaps nothing, and both serve', async () => {
    rmSync(join(other, 'state'), { recursive: true, force: true });
    const b = new TestDaemon();
    try {
      await b.start();
      expect((await b.api('GET', '/v1/health')).status).toBe(200);
      expect((await a.api('GET', '/v1/health')).status).toBe(200);
      // Each holds its own lock files; a clean stop removes them.
      const mine = readdirSync(LOCKS_DIR).filter((f) => f.includes(b.cgroupParent) || f.includes(b.bridge));
      expect(mine.sort()).toEqual([`bridge-${b.bridge}.lock`, `cgroup-${b.cgroupParent}.lock`]);
    } finally {
      await b.cleanup();
    }
    expect(readdirSync(LOCKS_DIR).filter((f) => f.includes(b.cgroupParent) || f.includes(b.bridge))).toEqual([]);
  });

  it('restarts on its own resources after a SIGKILL (a dead holder\'s locks are free), and its sweep leaves alone what no row of its records', async () => {
    // A session-like cgroup under its parent that this daemon never made.
    const foreign = join(a.cgroupDirs()[0]!, 's-00000f0e1d');
    mkdirSync(foreign);
    // And what a daemon killed mid-work leaves in the state dir's tmp/: a drain's upload half-written.
    const upload = join(a.stateDir, 'tmp', 'moved-in-s-00000f0e1d.0123456789abcdef');
    try {
      await a.stop('SIGKILL');
      mkdirSync(join(a.stateDir, 'tmp'), { recursive: true, mode: 0o700 });
      writeFileSync(upload, 'half of it');
      await a.start();
      expect((await a.show('owned')).state).toBe('running');
      expect(existsSync(upload)).toBe(false);
      expect(existsSync(foreign)).toBe(true);
      expect(a.log()).toContain('a session cgroup no row of this daemon records: left alone');
    } finally {
      rmdirSync(foreign);
    }
  });

  it('doctor reports database integrity, orphans and lock holders; --repair removes the orphans and nothing else', async () => {
    const orphanDirs = a.cgroupDirs().map((p) => join(p, 's-00000abcde'));
    for (const dir of orphanDirs) mkdirSync(dir);
    try {
      const doctor = await a.cli(['doctor', '--config', a.configPath, '--json']);
      const report = JSON.parse(doctor.stdout) as { checks: { name: string; ok: boolean; detail: string }[] };
      const check = (name: string) => report.checks.find((c) => c.name === name)!;
      expect(check('database')).toMatchObject({ ok: true });
      expect(check('database').detail).toMatch(/integrity ok, schema \d+, 1 running, 0 stopped of \d+ sessions/);
      expect(check('orphans').ok).toBe(false);
      for (const dir of orphanDirs) expect(check('orphans').detail).toContain(`cgroup ${dir}`);
      expect(check('locks').detail).toContain(`cgroup parent ${a.cgroupParent}: PID ${a.pid} (state dir ${a.stateDir})`);
      expect(check('sessions')).toMatchObject({ ok: true });

      const repaired = await a.cli(['doctor', '--config', a.configPath, '--repair']);
      expect(repaired.code).toBe(0);
      for (const dir of orphanDirs) {
        expect(repaired.stdout).toContain(`removed orphan cgroup ${dir}`);
        expect(existsSync(dir)).toBe(false);
      }
      // The live session is untouched.
      expect(a.cgroupDirs(s.id).length).toBeGreaterThan(0);
      expect((await a.sh('owned', 'echo still')).stdout).toBe('still\n');
    } finally {
      for (const dir of orphanDirs) if (existsSync(dir)) rmdirSync(dir);
    }
  });
  it("doctor under another installation's config judges nothing of this daemon's: its parent and bridge are held by it, so --repair removes nothing", async () => {
    // A second installation that names the same cgroup parent and bridge, with a database in which no session is live.
    const dir = join(other, 'doctor');
    mkdirSync(join(dir, 'state'), { recursive: true, mode: 0o700 });
    const src = new Database(join(a.stateDir, 'enclave.db'), { readonly: true });
    await src.backup(join(dir, 'state', 'enclave.db'));
    src.close();
    const copy = new Database(join(dir, 'state', 'enclave.db'));
    copy.prepare("UPDATE sessions SET state = 'destroyed'").run();
    copy.close();
    const config = join(dir, 'config.toml');
    writeFileSync(config, secondConfig({ state_dir: join(dir, 'state'), parent: a.cgroupParent, bridge: a.bridge }));
    const doctor = await a.cli(['doctor', '--config', config, '--json']);
    const report = JSON.parse(doctor.stdout) as { checks: { name: string; ok: boolean; detail: string }[] };
    const orphans = report.checks.find((c) => c.name === 'orphans')!;
    expect(orphans.ok).toBe(true);
    expect(orphans.detail).toContain(`cgroup parent ${a.cgroupParent} belongs to another installation (PID ${a.pid}`);
    expect(orphans.detail).toContain(`bridge ${a.bridge} belongs to another installation`);
    expect(orphans.detail).not.toContain(s.id.slice(2));
    const repaired = await a.cli(['doctor', '--config', config, '--repair']);
    expect(repaired.stdout).toContain('nothing to repair');
    expect(a.cgroupDirs(s.id).length).toBeGreaterThan(0);
    expect((await a.sh('owned', 'echo still')).stdout).toBe('still\n');
    // Without a database of its own, nothing is judged either.
    writeFileSync(config, secondConfig({ state_dir: join(dir, 'none'), parent: a.cgroupParent, bridge: a.bridge }));
    const bare = JSON.parse((await a.cli(['doctor', '--config', config, '--json'])).stdout) as { checks: { name: string; ok: boolean; detail: string }[] };
    const bareOrphans = bare.checks.find((c) => c.name === 'orphans')!;
    expect(bareOrphans.ok).toBe(true);
    expect(bareOrphans.detail).toContain('no database at');
    expect(bareOrphans.detail).not.toContain(s.id.slice(2));
    rmSync(dir, { recursive: true, force: true });
  });

  it('doctor finds the daemon through ENCLAVE_SOCKET when no --socket or --config names one', async () => {
    const r = await a.cli(['doctor', '--json']);
    const daemon = (JSON.parse(r.stdout) as { checks: { name: string; ok: boolean; detail: string }[] }).checks.find((c) => c.name === 'daemon')!;
    expect(daemon).toMatchObject({ ok: true });
    expect(daemon.detail).toContain(`reachable at ${a.socket} (pid ${a.pid}`);
  });
});
