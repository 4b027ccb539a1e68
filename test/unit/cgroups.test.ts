import { describe, expect, it } from 'vitest';
import { holdsLimits, limitFiles, parseCgroupLayout, sessionCgroupDirs, sessionCgroupView, v1MemoryDir } from '../../src/isolation/cgroups.js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuCount, formatCpuList, parseCpuList, pickCpus, placeSession } from '../../src/isolation/cpuPlacement.js';

const line = (id: number, mp: string, fstype: string, opts: string) => `${id} 30 0:${id} / ${mp} rw,relatime - ${fstype} cgroup ${opts}`;

const hybrid = [
  '26 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
  '30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  line(31, '/sys/fs/cgroup/cpu,cpuacct', 'cgroup', 'rw,cpu,cpuacct'),
  line(33, '/sys/fs/cgroup/cpuset', 'cgroup', 'rw,cpuset,clone_children'),
  line(34, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'),
  line(35, '/sys/fs/cgroup/net_cls,net_prio', 'cgroup', 'rw,net_cls,net_prio'),
  line(38, '/sys/fs/cgroup/pids', 'cgroup', 'rw,pids'),
  line(39, '/sys/fs/cgroup/systemd', 'cgroup', 'rw,xattr,name=systemd'),
  line(40, '/sys/fs/cgroup/unified', 'cgroup2', 'rw'),
].join('\n');

const unified = ['26 1 254:0 / / rw - ext4 /dev/vda rw', '30 22 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate'].join('\n');
const legacy = hybrid.split('\n').filter((l) => !l.includes('cgroup2')).join('\n');

describe('cgroup layout', () => {
  it('detects hybrid, unified and legacy hosts', () => {
    expect(parseCgroupLayout(hybrid).mode).toBe('hybrid');
    expect(parseCgroupLayout(unified).mode).toBe('unified');
    expect(parseCgroupLayout(legacy).mode).toBe('legacy');
  });

  it('places a hybrid session in each v1 limit hierarchy, cpuset and cpuacct, and the v2 tracking tree; no other hierarchy', () => {
    const dirs = sessionCgroupDirs(parseCgroupLayout(hybrid), 'enclave', 's-0000000001');
    expect(dirs).toEqual([
      { path: '/sys/fs/cgroup/cpu,cpuacct/enclave/s-0000000001', controllers: ['cpu', 'cpuacct'], version: 1 },
      { path: '/sys/fs/cgroup/cpuset/enclave/s-0000000001', controllers: ['cpuset'], version: 1 },
      { path: '/sys/fs/cgroup/memory/enclave/s-0000000001', controllers: ['memory'], version: 1 },
      { path: '/sys/fs/cgroup/pids/enclave/s-0000000001', controllers: ['pids'], version: 1 },
      { path: '/sys/fs/cgroup/unified/enclave/s-0000000001', controllers: [], version: 2 },
    ]);
    // cpuset holds what the session is shown (its CPUs), not a limit: no snapshot child there.
    expect(dirs.map(holdsLimits)).toEqual([true, false, true, true, false]);
  });

  it('places a unified session in one v2 directory with all controllers, cpuset among them', () => {
    expect(sessionCgroupDirs(parseCgroupLayout(unified), 'enclave', 's-0000000001')).toEqual([
      { path: '/sys/fs/cgroup/enclave/s-0000000001', controllers: ['memory', 'pids', 'cpu', 'cpuset'], version: 2 },
    ]);
  });

  it('shows a session exactly the hierarchies it is in, each with every controller mount(2) needs for it', () => {
    const h = parseCgroupLayout(hybrid);
    expect(sessionCgroupView(h, sessionCgroupDirs(h, 'enclave', 's-0000000001'))).toEqual([
      { at: 'cpu,cpuacct', version: 1, controllers: 'cpu,cpuacct' },
      { at: 'cpuset', version: 1, controllers: 'cpuset' },
      { at: 'memory', version: 1, controllers: 'memory' },
      { at: 'pids', version: 1, controllers: 'pids' },
      { at: 'unified', version: 2 },
    ]);
    const u = parseCgroupLayout(unified);
    expect(sessionCgroupView(u, sessionCgroupDirs(u, 'enclave', 's-0000000001'))).toEqual([{ at: '', version: 2 }]);
    // net_cls,net_prio and name=systemd: the session is not in them, so they are not shown (they would be rooted at the daemon's cgroup).
    expect(h.v1Controllers.has('/sys/fs/cgroup/net_cls,net_prio')).toBe(false);
  });

  it('writes limits in each backend\'s own files', () => {
    const limits = { memory_mb: 256, pids: 100, cpu_percent: 50 };
    expect(limitFiles({ path: '/x', controllers: ['memory', 'pids', 'cpu'], version: 1 }, limits)).toEqual([
      ['memory.limit_in_bytes', String(256 * 1024 * 1024)],
      ['memory.kmem.tcp.limit_in_bytes', String(256 * 1024 * 1024)],
      ['pids.max', '100'],
      ['cpu.cfs_period_us', '100000'],
      ['cpu.cfs_quota_us', '50000'],
    ]);
    expect(limitFiles({ path: '/x', controllers: ['memory', 'pids', 'cpu'], version: 2 }, limits)).toEqual([
      ['memory.max', String(256 * 1024 * 1024)],
      ['pids.max', '100'],
      ['cpu.max', '50000 100000'],
    ]);
    expect(limitFiles({ path: '/x', controllers: [], version: 2 }, limits)).toEqual([]);
  });

  it('asks v2 to kill the whole cgroup on OOM when the policy is "session", and v1 for nothing', () => {
    const limits = { memory_mb: 64, pids: 10, cpu_percent: 100 };
    expect(limitFiles({ path: '/x', controllers: ['memory'], version: 2 }, limits, 'session')).toContainEqual(['memory.oom.group', '1']);
    expect(limitFiles({ path: '/x', controllers: ['memory'], version: 2 }, limits, 'process')).not.toContainEqual(['memory.oom.group', '1']);
    expect(limitFiles({ path: '/x', controllers: ['memory'], version: 1 }, limits, 'session').map(([f]) => f)).toEqual(['memory.limit_in_bytes', 'memory.kmem.tcp.limit_in_bytes']);
  });

  it('names the v1 memory directory to watch for OOM events', () => {
    expect(v1MemoryDir(sessionCgroupDirs(parseCgroupLayout(hybrid), 'enclave', 's-0000000001'))).toBe('/sys/fs/cgroup/memory/enclave/s-0000000001');
    expect(v1MemoryDir(sessionCgroupDirs(parseCgroupLayout(unified), 'enclave', 's-0000000001'))).toBeUndefined();
  });
});

describe('a CPU limit is a CPU count', () => {
  it('reads and writes kernel CPU lists', () => {
    expect(parseCpuList('0-2,5\n')).toEqual([0, 1, 2, 5]);
    expect(parseCpuList('3')).toEqual([3]);
    expect(parseCpuList('')).toEqual([]);
    expect(() => parseCpuList('0-a')).toThrow(/not a CPU list/);
    expect(formatCpuList([5, 0, 2, 1])).toBe('0-2,5');
    expect(formatCpuList([7])).toBe('7');
  });

  it('rounds the limit up to whole CPUs, at least one, at most what there is', () => {
    expect([cpuCount(1, 8), cpuCount(100, 8), cpuCount(101, 8), cpuCount(250, 8), cpuCount(2000, 8)]).toEqual([1, 1, 2, 3, 8]);
  });

  it('takes the CPUs the fewest sessions are on, lowest first on a tie', () => {
    const load = new Map([[0, 2], [1, 1], [2, 0], [3, 1]]);
    expect(pickCpus([0, 1, 2, 3], load, 1)).toEqual([2]);
    expect(pickCpus([0, 1, 2, 3], load, 2)).toEqual([1, 2]);
    expect(pickCpus([0, 1, 2, 3], load, 3)).toEqual([1, 2, 3]);
    expect(pickCpus([0, 1], new Map(), 1)).toEqual([0]);
    // Only CPUs the parent allows.
    expect(pickCpus([2, 3], load, 1)).toEqual([2]);
  });

  it('places a session from the cgroups themselves (a unified tree), and not at all without the cpuset controller', () => {
    const v2 = mkdtempSync(join(tmpdir(), 'enclave-cpuset-'));
    try {
      const layout = { mode: 'unified' as const, v1: new Map<string, string>(), v1Controllers: new Map<string, string>(), v2 };
      mkdirSync(join(v2, 'enclave'));
      expect(placeSession(layout, 'enclave', 100)).toBeUndefined(); // no cpuset.cpus.effective: not enabled
      writeFileSync(join(v2, 'enclave', 'cpuset.cpus.effective'), '0-3\n');
      for (const [id, cpus] of [['s-0000000001', '0'], ['s-0000000002', '0-1'], ['not-a-session', '2']] as const) {
        mkdirSync(join(v2, 'enclave', id));
        writeFileSync(join(v2, 'enclave', id, 'cpuset.cpus'), `${cpus}\n`);
      }
      expect(placeSession(layout, 'enclave', 100)).toBe('2');
      expect(placeSession(layout, 'enclave', 150)).toBe('2-3');
      expect(placeSession(layout, 'enclave', 400)).toBe('0-3');
    } finally {
      rmSync(v2, { recursive: true, force: true });
    }
  });
});
