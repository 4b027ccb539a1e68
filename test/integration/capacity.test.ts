// What all sessions together may use (issue 22): the daemon's parent cgroup
// holds a total with a host reserve, so the sum of sessions can never take
// the host, whatever each session's own limit says.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { isRoot, TestDaemon, SESSION_PROBE } from './harness.js';

const MIB = 1024 * 1024;
const V1 = '/sys/fs/cgroup';

describe.skipIf(!isRoot)('capacity: the parent cgroup bounds every session together (root)', () => {
  const d = new TestDaemon({ extraConfig: '[capacity]\nmemory_mb = 160\ncpu_percent = 120\npids = 3000\n' });
  const parentFile = (controller: string, file: string) => readFileSync(join(V1, controller, d.cgroupParent, file), 'utf8').trim();

  beforeAll(async () => {
    await d.start();
    d.buildProbe();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('writes the configured totals into the parent cgroup', () => {
    // This host's layout: v1 memory, cpu and pids hierarchies (and a controller-less v2).
    expect(existsSync(join(V1, 'memory', d.cgroupParent))).toBe(true);
    expect(parentFile('memory', 'memory.limit_in_bytes')).toBe(String(160 * MIB));
    expect(parentFile('cpu', 'cpu.cfs_quota_us')).toBe('120000');
    expect(parentFile('cpu', 'cpu.cfs_period_us')).toBe('100000');
    expect(parentFile('pids', 'pids.max')).toBe('3000');
  });

  it('OOM-kills inside a session whose own limit is higher than what all sessions may use', async () => {
    const s = await d.create({ name: 'big', memory_mb: 1024 });
    const r = await d.cli(['session', 'exec', 'big', '--', SESSION_PROBE, 'hog']);
    expect(r.code).toBe(137);
    expect(Number(parentFile('memory', 'memory.max_usage_in_bytes'))).toBeLessThanOrEqual(160 * MIB);
    // Its own limit was never reached: the parent's was.
    expect(readFileSync(join(V1, 'memory', d.cgroupParent, s.id, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(1024 * MIB));
    expect((await d.sh('big', 'echo alive')).stdout).toBe('alive\n');
  });

  it('refuses a session asking for more CPU than all sessions may use, before anything exists', async () => {
    const before = (await d.api('GET', '/v1/sessions?all=1')).body;
    const r = await d.api('POST', '/v1/sessions', { name: 'hungry', cpu_percent: 121 });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).toContain('capacity.cpu_percent');
    expect((await d.api('GET', '/v1/sessions?all=1')).body).toEqual(before);
  });

  it('by default leaves the host its reserve: the host\'s memory less 1 GiB', async () => {
    const plain = new TestDaemon();
    try {
      await plain.start();
      const limit = Number(readFileSync(join(V1, 'memory', plain.cgroupParent, 'memory.limit_in_bytes'), 'utf8'));
      expect(limit).toBe((Math.floor(totalmem() / MIB) - 1024) * MIB);
    } finally {
      await plain.cleanup();
    }
  });

  it('refuses to start with a total the host cannot give beside its reserve, naming the key', async () => {
    const greedy = new TestDaemon({ extraConfig: `[capacity]\nmemory_mb = ${Math.floor(totalmem() / MIB)}\n` });
    try {
      await expect(greedy.start()).rejects.toThrow(/capacity\.memory_mb = \d+ MiB is more than the host's \d+ less the reserve of 1024/);
    } finally {
      await greedy.cleanup();
    }
  });

  it('counts what existing volumes may still grow by against the disk\'s reserve: sparse images cannot promise more disk than there is', async () => {
    const small = new TestDaemon({ extraConfig: '[volumes]\nreserve_mb = 64\n' });
    try {
      // The state dir on a 400 MiB tmpfs of the test's own.
      mkdirSync(small.stateDir, { recursive: true, mode: 0o700 });
      const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=400m,mode=0700', 'tmpfs', small.stateDir], { encoding: 'utf8' });
      if (m.status !== 0) throw new Error(`mount: ${m.stderr}`);
      await small.start();
      expect((await small.api('POST', '/v1/volumes', { name: 'first', size_mb: 200 })).status).toBe(201);
      // Free space alone would take a second 200 MiB volume: the first may still grow by ~200.
      const second = await small.api('POST', '/v1/volumes', { name: 'second', size_mb: 200 });
      expect(second.status).toBe(507);
      expect(JSON.stringify(second.body)).toMatch(/existing volumes may still grow by \d+ MiB/);
      expect((await small.api('POST', '/v1/volumes', { name: 'third', size_mb: 64 })).status).toBe(201);
    } finally {
      await small.cleanup(); // unmounts the tmpfs too
    }
  });
});
