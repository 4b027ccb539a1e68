// cgroup delegation (issue 26, slice B): a system session's cgroups are its
// root's to divide. It makes sub-cgroups in every hierarchy it is in and
// moves its processes there; they stay inside the session's limits, an OOM
// kill in one is reported as the session's, and destroy removes them all.
// Its limit files stay host root's; a workspace session's view stays
// read-only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, SESSION_PROBE, TestDaemon } from './harness.js';

interface Oom {
  kills: number;
  last_victim: { command: string | null; pid: number | null } | null;
}

describe.skipIf(!isRoot)('cgroup delegation to system sessions (root)', () => {
  const d = new TestDaemon();
  beforeAll(async () => {
    await d.start();
    d.buildProbe();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('a system session makes sub-cgroups; a process in one is killed past the session\'s 128 MB and the kill is reported; destroy leaves no cgroup', async () => {
    const s = await d.create({ name: 'deleg', profile: 'system', memory_mb: 128 });
    const hostMemory = join('/sys/fs/cgroup/memory', d.cgroupParent, s.id);
    // The session's directories and what it may write are its root's (the range's base); its limits host root's.
    expect(statSync(hostMemory).uid).toBe(s.id_range!.host_base);
    expect(statSync(join(hostMemory, 'cgroup.procs')).uid).toBe(s.id_range!.host_base);
    expect(statSync(join(hostMemory, 'memory.limit_in_bytes')).uid).toBe(0);

    // Its view is writable; sub-cgroups in a v1 hierarchy and in the v2 tree; its own limit is not its to raise.
    const mk = await d.sh(
      'deleg',
      [
        'grep " /sys/fs/cgroup/memory " /proc/self/mountinfo | grep -q " rw," && echo rw',
        'mkdir /sys/fs/cgroup/memory/child /sys/fs/cgroup/memory/child/deeper /sys/fs/cgroup/pids/child /sys/fs/cgroup/unified/child && echo made',
        'echo 1073741824 > /sys/fs/cgroup/memory/memory.limit_in_bytes && echo raised',
        'cat /sys/fs/cgroup/memory/memory.limit_in_bytes',
      ].join('\n'),
    );
    expect(mk.stdout).toBe('rw\nmade\n134217728\n');
    expect(mk.stderr).toMatch(/memory\.limit_in_bytes: Permission denied/);
    expect(existsSync(join(hostMemory, 'child', 'deeper'))).toBe(true);

    // A process there allocating past the session's limit: killed (the limit holds for sub-cgroups) and reported.
    const hog = await d.cli(['session', 'exec', 'deleg', '--', 'sh', '-c', `echo $$ > /sys/fs/cgroup/memory/child/deeper/cgroup.procs && echo $$ > /sys/fs/cgroup/unified/child/cgroup.procs && exec ${SESSION_PROBE} hog`]);
    expect(hog.code).toBe(137);
    expect(Number(/^oom_kill (\d+)/m.exec(readFileSync(join(hostMemory, 'child', 'deeper', 'memory.oom_control'), 'utf8'))?.[1])).toBeGreaterThanOrEqual(1);
    let oom: Oom = { kills: 0, last_victim: null };
    for (let i = 0; i < 500 && oom.kills === 0; i++) {
      oom = (JSON.parse((await d.cli(['session', 'show', 'deleg', '--json'])).stdout) as { oom: Oom }).oom;
      if (oom.kills === 0) await new Promise((r) => setTimeout(r, 10));
    }
    expect(oom.kills).toBeGreaterThanOrEqual(1);
    expect(oom.last_victim?.command).toBe('probe');
    expect((await d.show('deleg')).state).toBe('running');

    // Destroy with a process still in a sub-cgroup: every sub-cgroup goes, deepest first, in every hierarchy.
    await d.sh('deleg', 'sh -c "echo \\$\\$ > /sys/fs/cgroup/memory/child/cgroup.procs; echo \\$\\$ > /sys/fs/cgroup/pids/child/cgroup.procs; exec sleep 1000" > /dev/null 2>&1 &');
    await d.destroy('deleg');
    expect(d.cgroupDirs(s.id)).toEqual([]);
  });

  it('a workspace session still cannot write its cgroups: not a sub-cgroup, not a limit', async () => {
    const s = await d.create({ name: 'plain', memory_mb: 128 });
    const r = await d.sh(
      'plain',
      [
        'mkdir /sys/fs/cgroup/memory/child 2>&1 && echo made',
        'mkdir /sys/fs/cgroup/unified/child 2>&1 && echo made',
        'echo 1073741824 > /sys/fs/cgroup/memory/memory.limit_in_bytes 2>&1 && echo raised',
        'echo $$ > /sys/fs/cgroup/memory/cgroup.procs 2>&1 && echo moved',
        'cat /sys/fs/cgroup/memory/memory.limit_in_bytes',
      ].join('\n'),
    );
    expect(r.stdout).not.toMatch(/made|raised|moved/);
    expect(r.stdout).toMatch(/Read-only file system/);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('134217728');
    const hostMemory = join('/sys/fs/cgroup/memory', d.cgroupParent, s.id);
    expect(statSync(hostMemory).uid).toBe(0);
    expect(existsSync(join(hostMemory, 'child'))).toBe(false);
    await d.destroy('plain');
    expect(d.cgroupDirs(s.id)).toEqual([]);
  });
});
