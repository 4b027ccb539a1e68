import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCgroupLayout } from '../../src/isolation/cgroups.js';
import { JOIN_FAILED, sessionOfCgroup, snapshotCgroupsFor, snapshotCgroupsOf, spawnIn } from '../../src/snapshots/snapshotCgroups.js';

const line = (id: number, mp: string, fstype: string, opts: string) => `${id} 30 0:${id} / ${mp} rw,relatime - ${fstype} cgroup ${opts}`;
const hybrid = [
  line(31, '/sys/fs/cgroup/cpu', 'cgroup', 'rw,cpu'),
  line(32, '/sys/fs/cgroup/cpuacct', 'cgroup', 'rw,cpuacct'),
  line(34, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'),
  line(36, '/sys/fs/cgroup/freezer', 'cgroup', 'rw,freezer'),
  line(38, '/sys/fs/cgroup/pids', 'cgroup', 'rw,pids'),
  line(40, '/sys/fs/cgroup/unified', 'cgroup2', 'rw'),
].join('\n');
const unified = '30 22 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate';
const legacy = hybrid.split('\n').filter((l) => !l.includes('cgroup2')).join('\n');

describe('snapshot cgroups', () => {
  it('on a hybrid host: a child of the session in each v1 limit hierarchy, none in the frozen v2 tree', () => {
    expect(snapshotCgroupsFor(parseCgroupLayout(hybrid), 'enclave', 's-0000000001')).toEqual([
      { path: '/sys/fs/cgroup/cpu/enclave/s-0000000001/snapshot', version: 1 },
      { path: '/sys/fs/cgroup/memory/enclave/s-0000000001/snapshot', version: 1 },
      { path: '/sys/fs/cgroup/pids/enclave/s-0000000001/snapshot', version: 1 },
    ]);
    expect(snapshotCgroupsFor(parseCgroupLayout(legacy), 'enclave', 's-0000000001').map((c) => c.path)).toEqual([
      '/sys/fs/cgroup/cpu/enclave/s-0000000001/snapshot',
      '/sys/fs/cgroup/memory/enclave/s-0000000001/snapshot',
      '/sys/fs/cgroup/pids/enclave/s-0000000001/snapshot',
    ]);
  });

  it('on a unified host: a sibling of the session (its own directory is the frozen one) with its limits copied', () => {
    expect(snapshotCgroupsFor(parseCgroupLayout(unified), 'enclave', 's-0000000001')).toEqual([
      { path: '/sys/fs/cgroup/enclave/s-0000000001.snapshot', version: 2, limitsFrom: '/sys/fs/cgroup/enclave/s-0000000001' },
    ]);
  });

  it('derives every snapshot cgroup from a session directory, and the session from a directory name', () => {
    expect(snapshotCgroupsOf('/sys/fs/cgroup/memory/enclave/s-0000000001')).toEqual([
      '/sys/fs/cgroup/memory/enclave/s-0000000001/snapshot',
      '/sys/fs/cgroup/memory/enclave/s-0000000001.snapshot',
    ]);
    expect(sessionOfCgroup('s-0000000001')).toBe('s-0000000001');
    expect(sessionOfCgroup('s-0000000001.snapshot')).toBe('s-0000000001');
    expect(sessionOfCgroup('s-0000000001.other')).toBeUndefined();
    expect(sessionOfCgroup('x.snapshot')).toBeUndefined();
  });

  it('joins every cgroup.procs given before the command runs, as the same process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-join-'));
    try {
      const procs = [join(dir, 'a'), join(dir, 'b')];
      for (const f of procs) writeFileSync(f, '');
      const p = spawnIn(procs, 'sh', ['-c', 'echo $$'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      p.stdout!.on('data', (c: Buffer) => (out += c.toString()));
      const code = await new Promise((r) => p.on('close', r));
      expect(code).toBe(0);
      // The command ran as the process that joined (exec, no fork): no moment outside.
      for (const f of procs) expect(readFileSync(f, 'utf8')).toBe(`${p.pid}\n`);
      expect(out).toBe(`${p.pid}\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs nothing when a join fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-join-'));
    try {
      const ran = join(dir, 'ran');
      const p = spawnIn([join(dir, 'missing', 'cgroup.procs')], 'sh', ['-c', `touch ${ran}`], { stdio: 'ignore' });
      expect(await new Promise((r) => p.on('close', r))).toBe(JOIN_FAILED);
      expect(() => readFileSync(ran)).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
