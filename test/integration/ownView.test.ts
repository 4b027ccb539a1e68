// A session sees its own limits: lxcfs's /proc files (memory, CPUs, CPU
// time, uptime, load) and its own cgroups at /sys/fs/cgroup, read-only; the
// daemon's lxcfs outlives the daemon, a dead one is replaced (a stop and a
// start give a session made before the new one's files), a started session
// has the same view, one that cannot serve degrades ("on") or refuses
// ("required"), and a run leaves no lxcfs or mount.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableParallelism } from 'node:os';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectCgroupLayout } from '../../src/isolation/cgroups.js';
import { findLxcfs, lxcfsMounted, lxcfsPaths, removeLxcfs } from '../../src/isolation/lxcfs.js';
import { isRoot, lxcfsUnder, mountsUnder, TestDaemon } from './harness.js';

const MIB = 1024 * 1024;
const HOST_CPUS = availableParallelism();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!isRoot)('a session sees its own limits (root)', () => {
  const d = new TestDaemon();
  const paths = () => lxcfsPaths(d.stateDir);
  let created = 0;

  beforeAll(async () => {
    await d.start();
    await d.create({ name: 'five', memory_mb: 512, cpu_percent: 100, pids: 200 });
    created = Date.now();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('free -m says 512 total in a 512 MiB session, and top agrees', async () => {
    const r = await d.sh('five', 'free -m; grep MemTotal /proc/meminfo; top -bn1 | grep "MiB Mem"');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Mem:\s+512\s/m);
    expect(r.stdout).toMatch(/^MemTotal:\s+524288 kB$/m);
    expect(r.stdout).toMatch(/MiB Mem :\s+512\.0 total/);
    // The host has more: these are the session's numbers, not the kernel's.
    expect(Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))![1])).toBeGreaterThan(1024 * 1024);
  });

  it('nproc, getconf, /proc/cpuinfo and /proc/stat say the CPU limit\'s count of CPUs', async () => {
    expect(HOST_CPUS).toBeGreaterThanOrEqual(2); // else a 100% session has every CPU and this proves nothing
    await d.create({ name: 'wide', cpu_percent: 150 });
    const script = 'nproc; getconf _NPROCESSORS_ONLN; grep -c ^processor /proc/cpuinfo; grep -c "^cpu[0-9]" /proc/stat; cat /sys/devices/system/cpu/online';
    const one = (await d.sh('five', script)).stdout.trim().split('\n');
    expect(one.slice(0, 4)).toEqual(['1', '1', '1', '1']);
    const two = (await d.sh('wide', script)).stdout.trim().split('\n');
    expect(two.slice(0, 4)).toEqual(['2', '2', '2', '2']);
    expect(two[4]).toMatch(/^\d+-\d+$|^\d+,\d+$/);
    await d.destroy('wide');
  });

  it('spreads 1-CPU sessions over the CPUs the fewest sessions are on', async () => {
    const a = await d.create({ name: 'pin-a', cpu_percent: 50 });
    const b = await d.create({ name: 'pin-b', cpu_percent: 50 });
    const cpus = (id: string) => readFileSync(join('/sys/fs/cgroup/cpuset', d.cgroupParent, id, 'cpuset.cpus'), 'utf8').trim();
    const five = (await d.show('five')).id;
    // Three one-CPU sessions on two CPUs: never all three on one.
    expect(new Set([cpus(five), cpus(a.id), cpus(b.id)]).size).toBe(2);
    expect((await d.sh('pin-a', 'grep Cpus_allowed_list /proc/self/status')).stdout).toMatch(new RegExp(`:\\s*${cpus(a.id)}$`, 'm'));
    await d.destroy(a.id);
    await d.destroy(b.id);
  });

  it('has its own uptime, CPU time and load', async () => {
    const r = await d.sh('five', 'cat /proc/uptime; cat /proc/loadavg; head -1 /proc/stat');
    const [uptime, loadavg, cpu] = r.stdout.trim().split('\n');
    const inside = Number(uptime!.split(' ')[0]);
    const since = (Date.now() - created) / 1000;
    expect(inside).toBeGreaterThanOrEqual(0);
    expect(Math.abs(inside - since)).toBeLessThan(10);
    const host = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
    expect(host - inside).toBeGreaterThan(20); // the host has been up since long before
    // loadavg's runnable/total counts the session's tasks (a handful), not the host's hundreds.
    const total = Number(/ \d+\/(\d+) /.exec(loadavg!)![1]);
    const hostTotal = Number(/ \d+\/(\d+) /.exec(readFileSync('/proc/loadavg', 'utf8'))![1]);
    expect(total).toBeLessThan(20);
    expect(hostTotal).toBeGreaterThan(total);
    // CPU time since the session began, in USER_HZ: at most uptime * CPUs * 100.
    const ticks = cpu!.split(/\s+/).slice(1, 8).map(Number).reduce((x, y) => x + y, 0);
    expect(ticks).toBeLessThanOrEqual((inside + 1) * 100);
  });

  it('reads its own limits at /sys/fs/cgroup, rooted at its own cgroup', async () => {
    // This host's layout, as the session is shown it: v1 hierarchies (hybrid) or the v2 tree (unified).
    const unified = detectCgroupLayout().mode === 'unified';
    const files = unified ? ['memory.max', 'pids.max', 'cpu.max', 'cpuset.cpus'] : ['memory/memory.limit_in_bytes', 'pids/pids.max', 'cpu/cpu.cfs_quota_us', 'cpuset/cpuset.cpus'];
    const r = await d.sh('five', `cd /sys/fs/cgroup && cat ${files.join(' ')}; sort /proc/self/cgroup`);
    const lines = r.stdout.trim().split('\n');
    expect(lines.slice(0, 3)).toEqual(unified ? [String(512 * MIB), '200', '100000 100000'] : [String(512 * MIB), '200', '100000']);
    expect(lines[3]).toMatch(/^\d+$/); // one CPU
    // Its cgroup namespace: every hierarchy shows it at its root.
    expect(lines.slice(4).length).toBeGreaterThan(0);
    for (const l of lines.slice(4)) expect(l).toMatch(/:\/$/);
  });

  it('keeps serving running sessions through a daemon restart (SIGTERM and SIGKILL), with the same lxcfs', async () => {
    const before = findLxcfs(paths());
    expect(before).toBeDefined();
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      await d.stop(signal);
      expect(findLxcfs(paths())?.pid).toBe(before!.pid); // not the daemon's child in its fate
      await d.start();
      expect((await d.sh('five', 'free -m')).stdout).toMatch(/^Mem:\s+512\s/m);
      expect(findLxcfs(paths())?.pid).toBe(before!.pid);
    }
    expect(d.log()).toMatch(/adopted the running lxcfs/);
    await d.create({ name: 'after', memory_mb: 256 });
    expect((await d.sh('after', 'free -m')).stdout).toMatch(/^Mem:\s+256\s/m);
  });

  it('starts another lxcfs if it dies; sessions made before read ENOTCONN there until stopped and started (the documented limit)', async () => {
    const old = findLxcfs(paths())!;
    process.kill(old.pid, 'SIGKILL');
    let now = findLxcfs(paths());
    for (let i = 0; i < 500 && (!now || now.pid === old.pid); i++) {
      await sleep(10);
      now = findLxcfs(paths());
    }
    expect(now).toBeDefined();
    expect(now!.pid).not.toBe(old.pid);
    const fresh = await d.create({ name: 'fresh', memory_mb: 128 });
    expect((await d.sh('fresh', 'free -m')).stdout).toMatch(/^Mem:\s+128\s/m);
    const stale = await d.sh('five', 'cat /proc/meminfo');
    expect(stale.code).not.toBe(0);
    expect(stale.stderr).toMatch(/Transport endpoint is not connected/);
    expect(d.log()).toMatch(/lxcfs \(pid \d+\) exited/);
    await d.destroy(fresh.id);
    // The session runs on (exec, its files), only those files fail; a stop and a start bind the new lxcfs's.
    expect((await d.sh('five', 'echo alive')).stdout).toBe('alive\n');
    expect((await d.cli(['session', 'stop', 'five'])).code).toBe(0);
    expect((await d.cli(['session', 'start', 'five'])).code).toBe(0);
    const r = await d.sh('five', 'free -m; nproc; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null');
    expect(r.stdout).toMatch(/^Mem:\s+512\s/m);
    expect(r.stdout).toMatch(new RegExp(`^1\n${512 * MIB}\n`, 'm'));
  });

  it('leaves no lxcfs process and no mount once the daemon is cleaned up', async () => {
    const pids = lxcfsUnder(d.dir);
    expect(pids).toHaveLength(1);
    expect(lxcfsMounted(paths().mount)).toBe(true);
    await d.cleanup();
    for (const pid of pids) expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(lxcfsUnder(d.dir)).toEqual([]);
    expect(lxcfsMounted(paths().mount)).toBe(false);
    expect(mountsUnder(d.dir)).toEqual([]);
  });
});

describe.skipIf(!isRoot)('lxcfs that cannot serve (root)', () => {
  const d = new TestDaemon();
  const hostMemTotal = () => readFileSync('/proc/meminfo', 'utf8').split('\n').find((l) => l.startsWith('MemTotal'))! + '\n';
  afterAll(async () => {
    await d.cleanup();
  });

  it('"on" (the default): the session is made with the kernel\'s files and the log says why, as LXD does; "required" refuses, naming lxcfs', async () => {
    await d.start();
    await d.stop();
    const p = lxcfsPaths(d.stateDir);
    await removeLxcfs(p);
    writeFileSync(p.dir, 'not a directory\n'); // where its mount point must go: no lxcfs can be started there
    await d.start();
    const s = await d.create({ name: 'plain', memory_mb: 512 });
    expect((await d.sh('plain', 'grep MemTotal /proc/meminfo')).stdout).toBe(hostMemTotal());
    // Its own cgroups are still shown: that view is the kernel's, not lxcfs's.
    expect((await d.sh('plain', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max')).stdout.trim()).toBe(String(512 * MIB));
    expect(d.log()).toMatch(/lxcfs is not serving/);
    expect(d.log()).toMatch(new RegExp(`"session":"${s.id}".*lxcfs does not serve: this session reads the kernel's /proc`));
    expect(lxcfsUnder(d.dir)).toEqual([]);
    await d.destroy(s.id);

    await d.stop();
    d.reconfigure({ extraConfig: 'lxcfs = "required"\n' });
    await d.start();
    const r = await d.api('POST', '/v1/sessions', { name: 'nope' });
    expect(r.status).toBe(500);
    const body = JSON.stringify(r.body);
    expect(body).toMatch(/confinement_failed/);
    expect(body).toMatch(/sessions.lxcfs is \\"required\\" and lxcfs does not serve/);
    expect(d.cgroupDirs().flatMap((c) => readdirSync(c).filter((n) => n.startsWith('s-')))).toEqual([]);
    expect(lxcfsUnder(d.dir)).toEqual([]);
  });
});

describe.skipIf(!isRoot)('sessions.lxcfs = "off" (root)', () => {
  const d = new TestDaemon({ extraConfig: 'lxcfs = "off"\n' });
  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('gives the kernel\'s /proc and starts no lxcfs', async () => {
    await d.create({ name: 'plain', memory_mb: 512 });
    const inside = (await d.sh('plain', 'grep MemTotal /proc/meminfo')).stdout;
    expect(inside).toBe(readFileSync('/proc/meminfo', 'utf8').split('\n').find((l) => l.startsWith('MemTotal'))! + '\n');
    expect(lxcfsUnder(d.dir)).toEqual([]);
    // Its own cgroups are still there to read: that view is the kernel's, not lxcfs's.
    expect((await d.sh('plain', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max')).stdout.trim()).toBe(String(512 * MIB));
  });
});
