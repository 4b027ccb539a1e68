// The session's limits hold for what runs nested inside a system session
// (issue 26): a container started by the session's own podman is charged to
// the session's cgroups (they are delegated, and v1 memory, pids and cpu are
// hierarchical here as v2 is), so it cannot use more memory, tasks or CPU
// than the session; and a user namespace nested in the session's cannot map
// an ID outside the session's range. The memory case for Docker is in
// dockerInside.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, TestDaemon } from './harness.js';

const installed = ['/usr/bin/podman', '/usr/bin/crun', '/usr/bin/fuse-overlayfs', '/bin/busybox'].every((p) => existsSync(p));
const PIDS = 128;
const CPU_PERCENT = 20;

/** The session's CPU time (ns) and throttled periods, from its cgroup: v1 cpuacct.usage and cpu.stat, or v2 cpu.stat. */
function cpuOf(parent: string, id: string): { usageNs: number; throttled: number } {
  const v1 = ['/sys/fs/cgroup/cpu,cpuacct', '/sys/fs/cgroup/cpu'].find((p) => existsSync(join(p, parent, id, 'cpu.cfs_quota_us')));
  const dir = join(v1 ?? '/sys/fs/cgroup', parent, id);
  const stat = readFileSync(join(dir, 'cpu.stat'), 'utf8');
  const field = (k: string) => Number(new RegExp(`^${k} (\\d+)$`, 'm').exec(stat)?.[1]);
  const usageNs = v1 ? Number(readFileSync(join('/sys/fs/cgroup/cpuacct', parent, id, 'cpuacct.usage'), 'utf8')) : field('usage_usec') * 1000;
  return { usageNs, throttled: field('nr_throttled') };
}
/** The session's pids cgroup directory, v1 or v2. */
const pidsDir = (parent: string, id: string) => [join('/sys/fs/cgroup/pids', parent, id), join('/sys/fs/cgroup', parent, id)].find((p) => existsSync(join(p, 'pids.max')))!;

const IMAGE = [
  'set -e',
  'mkdir -p /tmp/img/bin && cp /bin/busybox /tmp/img/bin/',
  'for a in sh echo sleep dd; do ln -s busybox /tmp/img/bin/$a; done',
  'tar -C /tmp/img -c . | podman import -q - localhost/bb > /dev/null',
].join('\n');

describe.skipIf(!isRoot)('limits hold for containers and namespaces nested in a system session (root)', () => {
  const d = new TestDaemon();
  let id = '';
  let hostBase = 0;

  beforeAll(async () => {
    expect(installed, 'podman, crun, fuse-overlayfs and busybox-static must be installed (npm run setup)').toBe(true);
    await d.start();
    const s = await d.create({ name: 'lim', profile: 'system', memory_mb: 256, pids: PIDS, cpu_percent: CPU_PERCENT, root_mb: 256 });
    id = s.id;
    hostBase = s.id_range!.host_base;
    expect((await d.sh('lim', IMAGE)).stderr).toBe('');
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('memory: a container touching more than the session\'s 256 MB is killed, the session runs on', async () => {
    const r = await d.sh('lim', 'podman run --rm localhost/bb dd if=/dev/zero of=/dev/null bs=400M count=1 2>&1; echo "exit=$?"');
    expect(r.stdout).toMatch(/exit=137\n$/);
    expect((await d.show('lim')).state).toBe('running');
  });

  it(`pids: a fork bomb in a container stops at the session's ${PIDS} tasks; the session answers again after`, async () => {
    // The bomb waits for /out/go, so that podman run -d has returned before the tasks run out.
    const run = await d.sh(
      'lim',
      'mkdir -p /tmp/bomb && podman run -d --name bomb -v /tmp/bomb:/out localhost/bb sh -c ' +
        '\'until [ -e /out/go ]; do sleep 0.1; done; n=0; while [ $n -lt 5000 ]; do sleep 1000 & n=$((n+1)); echo $n > /out/n; done; echo survived > /out/end\' > /dev/null && touch /tmp/bomb/go && echo started',
    );
    expect(run.stdout).toBe('started\n');
    // While the bomb holds every task, an exec may fail to fork: retry until the container is gone.
    let done = '';
    for (let i = 0; i < 300 && !done.includes('exited'); i++) {
      done = (await d.sh('lim', 'podman wait bomb > /dev/null 2>&1 && echo exited; cat /tmp/bomb/n; cat /tmp/bomb/end 2>/dev/null || true')).stdout;
      if (!done.includes('exited')) await new Promise((r) => setTimeout(r, 100));
    }
    expect(done).toMatch(/^exited\n\d+\n$/); // the shell died at a failed fork: no "survived"
    const forked = Number(done.split('\n')[1]);
    expect(forked).toBeGreaterThan(PIDS / 4); // it did fork, in the session's cgroup
    expect(forked).toBeLessThan(PIDS);
    const dir = pidsDir(d.cgroupParent, id);
    expect(readFileSync(join(dir, 'pids.max'), 'utf8').trim()).toBe(String(PIDS));
    if (existsSync(join(dir, 'pids.peak'))) expect(Number(readFileSync(join(dir, 'pids.peak'), 'utf8'))).toBeLessThanOrEqual(PIDS);
    expect((await d.sh('lim', 'podman rm bomb > /dev/null && echo removed')).stdout).toBe('removed\n');
    expect((await d.show('lim')).state).toBe('running');
  });

  it(`cpu: two busy loops in a container use no more than the session's ${CPU_PERCENT}% of a CPU (its cgroup's usage over the interval)`, async () => {
    expect((await d.sh('lim', 'podman run -d --name spin localhost/bb sh -c "while :; do :; done & while :; do :; done" > /dev/null && echo spinning')).stdout).toBe('spinning\n');
    // Usage and throttling of the session's own cgroup, the container's below it, over about 3 s of whatever the machine gives.
    const u0 = cpuOf(d.cgroupParent, id);
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, 3000));
    const u1 = cpuOf(d.cgroupParent, id);
    const wallNs = Number(process.hrtime.bigint() - t0);
    const share = (u1.usageNs - u0.usageNs) / wallNs;
    // Unconfined, two loops on this 2-CPU machine would take up to 2.0 CPUs; the quota is 0.2 (one 100 ms period of slack: generous margin).
    expect(share, `CPU share ${share.toFixed(3)}`).toBeLessThan((CPU_PERCENT / 100) * 2);
    expect(share, 'the container\'s CPU is charged to the session').toBeGreaterThan(0.01);
    expect(u1.throttled, 'the session\'s quota throttled it').toBeGreaterThan(u0.throttled);
    expect((await d.sh('lim', 'podman rm -f -t 0 spin > /dev/null && echo removed')).stdout).toBe('removed\n');
  });

  it('a user namespace nested in the session cannot map an ID outside the session\'s range (uid_map and gid_map writes refused)', async () => {
    const r = await d.sh(
      'lim',
      [
        'unshare -U sleep 100 & p=$!',
        'i=0; until [ "$(readlink /proc/$p/ns/user)" != "$(readlink /proc/self/ns/user)" ]; do i=$((i+1)); [ $i -lt 200 ] || exit 1; sleep 0.05; done',
        'try() { echo "$2" > /proc/$p/$1 2>/dev/null && echo "$1 $2: mapped" || echo "$1 $2: refused"; }',
        // Past the session's last ID, the session range's own host base as if it were an ID, a host root: all outside its 0..65535.
        'try uid_map "0 65536 1"; try uid_map "0 ' + hostBase + ' 1"; try uid_map "0 0 65537"',
        'try gid_map "0 65536 1"',
        // Inside it: allowed (once).
        'try uid_map "0 1000 1"; try gid_map "0 1000 1"',
        'kill $p',
      ].join('\n'),
    );
    expect(r.stdout).toBe(
      ['uid_map 0 65536 1: refused', `uid_map 0 ${hostBase} 1: refused`, 'uid_map 0 0 65537: refused', 'gid_map 0 65536 1: refused', 'uid_map 0 1000 1: mapped', 'gid_map 0 1000 1: mapped', ''].join('\n'),
    );
  });
});
