// What all sessions together may use: the host's size less a reserve, or a
// configured total that fits in it, written on the daemon's parent cgroup.
import { describe, expect, it } from 'vitest';
import { capacityFiles, capacityFor, CapacityError } from '../../src/isolation/capacity.js';
import { parseCgroupLayout } from '../../src/isolation/cgroups.js';

const host = { memoryMb: 24000, cpuPercent: 200, pids: 32768 };
const auto = { memory_mb: 0, reserve_memory_mb: 1024, cpu_percent: 0, reserve_cpu_percent: 50, pids: 0, reserve_pids: 4096 };

describe('capacity', () => {
  it('is the host less the reserve by default, or the configured total', () => {
    expect(capacityFor(auto, host)).toEqual({ memoryMb: 22976, cpuPercent: 150, pids: 28672 });
    expect(capacityFor({ ...auto, memory_mb: 4096, cpu_percent: 100, pids: 1000 }, host)).toEqual({ memoryMb: 4096, cpuPercent: 100, pids: 1000 });
  });

  it('refuses a total the host cannot give beside its reserve', () => {
    expect(() => capacityFor({ ...auto, memory_mb: 23977 }, host)).toThrow(CapacityError);
    expect(() => capacityFor({ ...auto, memory_mb: 23977 }, host)).toThrow(/capacity\.memory_mb = 23977 MiB is more than the host's 24000 less the reserve of 1024/);
    expect(() => capacityFor({ ...auto, reserve_cpu_percent: 200 }, host)).toThrow(/nothing is left for sessions/);
  });

  it('writes the totals into the parent cgroup of every hierarchy that enforces them', () => {
    const cap = { memoryMb: 1000, cpuPercent: 150, pids: 500 };
    const hybrid = parseCgroupLayout(
      [
        '30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw',
        '31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory',
        '32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct',
        '33 25 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids',
      ].join('\n'),
    );
    expect(capacityFiles(hybrid, 'enclave', cap).sort()).toEqual(
      [
        ['/sys/fs/cgroup/memory/enclave/memory.limit_in_bytes', String(1000 * 1024 * 1024)],
        ['/sys/fs/cgroup/cpu,cpuacct/enclave/cpu.cfs_period_us', '100000'],
        ['/sys/fs/cgroup/cpu,cpuacct/enclave/cpu.cfs_quota_us', '150000'],
        ['/sys/fs/cgroup/pids/enclave/pids.max', '500'],
      ].sort(),
    );
    const unified = parseCgroupLayout('30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw');
    expect(capacityFiles(unified, 'enclave', cap)).toEqual([
      ['/sys/fs/cgroup/enclave/memory.max', String(1000 * 1024 * 1024)],
      ['/sys/fs/cgroup/enclave/cpu.max', '150000 100000'],
      ['/sys/fs/cgroup/enclave/pids.max', '500'],
    ]);
  });
});
