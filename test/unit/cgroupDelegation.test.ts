import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DELEGATED_FILES, delegationRefused, removeDescendants } from '../../src/isolation/cgroupDelegation.js';
import { descendants, parseCgroupLayout, type CgroupLayout } from '../../src/isolation/cgroups.js';
import { oomKillCount } from '../../src/isolation/cgroupCounters.js';

describe('cgroup delegation helpers', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'enclave-deleg-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('hands over what the kernel\'s delegation doc names, never a limit file', () => {
    expect(DELEGATED_FILES[1]).toEqual(['cgroup.procs', 'tasks']);
    expect(DELEGATED_FILES[2]).toEqual(['cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads']);
    for (const f of [...DELEGATED_FILES[1], ...DELEGATED_FILES[2]]) expect(f).not.toMatch(/^(memory|pids|cpu|cpuset)\./);
  });

  it('lists sub-cgroups parents first and removes them deepest first, keeping the session\'s own', () => {
    const root = tmp();
    for (const d of ['a/b/c', 'a/d', 'e']) mkdirSync(join(root, d), { recursive: true });
    const order = descendants(root).map((d) => d.slice(root.length + 1));
    expect(order.sort()).toEqual(['a', 'a/b', 'a/b/c', 'a/d', 'e']);
    for (const d of order) for (const parent of order.filter((p) => d.startsWith(`${p}/`))) expect(order.indexOf(parent)).toBeLessThan(order.indexOf(d));
    expect(removeDescendants(root, 1)).toBe(true);
    expect(descendants(root)).toEqual([]);
    expect(existsSync(root)).toBe(true);
  });

  it('counts v1 OOM kills of sub-cgroups as the session\'s', () => {
    const root = tmp();
    const session = join(root, 'memory', 'p', 's-1');
    mkdirSync(join(session, 'docker', 'c1'), { recursive: true });
    const oomControl = (dir: string, kills: number) => writeFileSync(join(dir, 'memory.oom_control'), `oom_kill_disable 0\nunder_oom 0\noom_kill ${kills}\n`);
    oomControl(session, 0);
    oomControl(join(session, 'docker'), 0);
    oomControl(join(session, 'docker', 'c1'), 2);
    expect(oomKillCount([{ path: session, controllers: ['memory'], version: 1 }])).toBe(2);
    // v2's memory.events is hierarchical already: the session's own count alone.
    writeFileSync(join(session, 'memory.events'), 'oom 1\noom_kill 1\n');
    writeFileSync(join(session, 'docker', 'memory.events'), 'oom 1\noom_kill 1\n');
    expect(oomKillCount([{ path: session, controllers: ['memory'], version: 2 }])).toBe(1);
  });

  it('refuses delegation where a v1 hierarchy has a release agent', () => {
    const root = tmp();
    mkdirSync(join(root, 'memory'));
    const layout: CgroupLayout = { ...parseCgroupLayout(''), mode: 'hybrid', v1: new Map([['memory', join(root, 'memory')]]), v1Controllers: new Map(), v2: null };
    const d = [{ path: join(root, 'memory', 'p', 's-1'), controllers: ['memory'], version: 1 as const }];
    expect(delegationRefused(layout, d)).toBeUndefined();
    writeFileSync(join(root, 'memory', 'release_agent'), '\n');
    expect(delegationRefused(layout, d)).toBeUndefined();
    writeFileSync(join(root, 'memory', 'release_agent'), '/sbin/agent\n');
    expect(delegationRefused(layout, d)).toMatch(/release agent \(\/sbin\/agent\)/);
  });
});
