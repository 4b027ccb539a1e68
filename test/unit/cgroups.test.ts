import { describe, expect, it } from 'vitest';
import { limitFiles, parseCgroupLayout, sessionCgroupDirs, v1MemoryDir } from '../../src/isolation/cgroups.js';

const line = (id: number, mp: string, fstype: string, opts: string) => `${id} 30 0:${id} / ${mp} rw,relatime - ${fstype} cgroup ${opts}`;

const hybrid = [
  '26 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
  '30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  line(31, '/sys/fs/cgroup/cpu,cpuacct', 'cgroup', 'rw,cpu,cpuacct'),
  line(34, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'),
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

  it('places a hybrid session in each v1 limit hierarchy and the v2 tracking tree', () => {
    const dirs = sessionCgroupDirs(parseCgroupLayout(hybrid), 'enclave', 's-0000000001');
    expect(dirs).toEqual([
      { path: '/sys/fs/cgroup/cpu,cpuacct/enclave/s-0000000001', controllers: ['cpu'], version: 1 },
      { path: '/sys/fs/cgroup/memory/enclave/s-0000000001', controllers: ['memory'], version: 1 },
      { path: '/sys/fs/cgroup/pids/enclave/s-0000000001', controllers: ['pids'], version: 1 },
      { path: '/sys/fs/cgroup/unified/enclave/s-0000000001', controllers: [], version: 2 },
    ]);
  });

  it('places a unified session in one v2 directory with all controllers', () => {
    expect(sessionCgroupDirs(parseCgroupLayout(unified), 'enclave', 's-0000000001')).toEqual([
      { path: '/sys/fs/cgroup/enclave/s-0000000001', controllers: ['memory', 'pids', 'cpu'], version: 2 },
    ]);
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
