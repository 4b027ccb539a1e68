// Podman inside a system session (issue 26). The session's /usr is the
// host's, where .ci/setup installs podman, crun, uidmap and slirp4netns (no
// service started on the host). Rootful podman runs as the session's root;
// rootless podman runs as a user of the session, in a user namespace nested
// in the session's, mapped by newuidmap/newgidmap from /etc/subuid and
// /etc/subgid ranges that lie inside the session's own 65536 IDs. Rootful
// storage is podman's overlay driver through fuse-overlayfs on the session's
// /dev/fuse (the session's root is an overlay, which a kernel overlay cannot
// take as its upper layer). An image
// imported from a busybox tar made in the test: no registry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, TestDaemon } from './harness.js';

const NEEDED = ['/usr/bin/podman', '/usr/bin/crun', '/usr/bin/fuse-overlayfs', '/usr/bin/newuidmap', '/usr/bin/newgidmap', '/usr/bin/slirp4netns', '/bin/busybox'];
const missing = NEEDED.filter((p) => !existsSync(p));

const host = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });
/** What of the host podman would change if it reached it: links it makes (cni-podman*, veth without a peer in our netns), its chains. */
const hostPodman = () => ({
  links: host('ip', ['-o', 'link', 'show']).split('\n').filter((l) => /^\d+: (cni-podman|podman|veth)[^:]*:/.test(l) && !/veth.*@if/.test(l)),
  nft: host('nft', ['list', 'ruleset']).split('\n').filter((l) => /CNI-|podman|NETAVARK/i.test(l)),
});

/** An image of one static busybox, tarred inside the session at /tmp/bb.tar (readable by every user of it). */
const MAKE_TAR = [
  'set -e',
  'mkdir -p /tmp/img/bin /tmp/img/tmp && cp /bin/busybox /tmp/img/bin/',
  'for a in sh echo cat id sleep dd; do ln -s busybox /tmp/img/bin/$a; done',
  'tar -C /tmp/img -c . > /tmp/bb.tar && chmod 0644 /tmp/bb.tar',
].join('\n');

describe.skipIf(!isRoot)('Podman inside a system session (root)', () => {
  const d = new TestDaemon();
  let before: ReturnType<typeof hostPodman>;
  let id = '';
  let hostBase = 0;

  beforeAll(async () => {
    // The root suite needs them (npm run setup installs them): a missing package fails, it does not skip.
    expect(missing, 'install podman crun fuse-overlayfs uidmap slirp4netns busybox-static (npm run setup)').toEqual([]);
    await d.start();
    before = hostPodman();
    // A read-only volume with a file in it (imported from a tar): it comes in with its flags locked.
    const src = join(d.dir, 'ref-tree');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'hello'), 'from the volume\n');
    host('tar', ['-C', src, '-cf', join(d.dir, 'ref.tar'), '.']);
    expect((await d.cli(['volume', 'import', 'ref', join(d.dir, 'ref.tar'), '--size', '16'])).code).toBe(0);
    const s = await d.create({ name: 'pod', profile: 'system', memory_mb: 512, root_mb: 512, volumes: [{ name: 'ref', target: '/ref', readonly: true }] });
    id = s.id;
    hostBase = s.id_range!.host_base;
    const r = await d.sh('pod', MAKE_TAR);
    expect(r.stderr).toBe('');
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('rootful: podman imports a local tar and podman run --rm prints; the container\'s cgroups are below the session\'s', async () => {
    const r = await d.sh(
      'pod',
      [
        'set -e',
        'podman import /tmp/bb.tar localhost/bb > /dev/null',
        'podman info --format "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.GraphDriverName}}"',
        'podman run --rm localhost/bb sh -c "echo hi from podman; id -u"',
      ].join('\n'),
    );
    expect(r.stdout).toBe('crun cgroupfs overlay\nhi from podman\n0\n');
    // A detached container: its cgroup is made by the session's root inside the session's (the host's view).
    const run = await d.sh('pod', 'podman run -d --name napper localhost/bb sleep 1000');
    const cid = run.stdout.trim();
    expect(cid).toMatch(/^[0-9a-f]{64}$/);
    const under = host('sh', ['-c', `find /sys/fs/cgroup/memory/${d.cgroupParent}/${id} -type d -name '*${cid}*'`]).trim();
    expect(under, 'the container\'s memory cgroup below the session\'s').not.toBe('');
    // Its root filesystem: fuse-overlayfs, a FUSE mount in the session's mount namespace only.
    expect((await d.sh('pod', 'grep -c " fuse.fuse-overlayfs " /proc/self/mountinfo')).stdout).toBe('1\n');
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain('fuse-overlayfs');
    expect((await d.sh('pod', 'podman rm -f -t 0 napper > /dev/null && echo removed')).stdout).toBe('removed\n');
    expect(hostPodman()).toEqual(before);
  });

  it('rootful: binds the session\'s read-only volume into a container (podman run -v): crun\'s remount keeps the locked flags, the bind stays read-only', async () => {
    // conmon's warning that it cannot make a blkio cgroup (podman's first test) goes to stderr: stdout is what is checked.
    const ro = await d.sh('pod', 'podman run --rm -v /ref:/x:ro localhost/bb sh -c "cat /x/hello; cat /proc/self/mountinfo" | grep -E "^from| /x "');
    expect(ro.stdout).toMatch(/^from the volume\n\d+ \d+ \d+:\d+ \/ \/x ro,nosuid,nodev,relatime,idmapped /);
    const rw = await d.sh('pod', 'podman run --rm -v /ref:/x localhost/bb sh -c "echo z >> /x/hello" 2>&1; echo "rc=$?"');
    expect(rw.stdout).toMatch(/sh: can't create \/x\/hello: Read-only file system\nrc=1\n$/);
  });

  it('rootless: a user of the session runs podman in a nested user namespace mapped from /etc/subuid inside the session\'s range', async () => {
    const r = await d.sh(
      'pod',
      [
        'set -e',
        'useradd -m -u 1000 -s /bin/sh builder',
        // Subordinate IDs the session has: 10000..59999 of its 0..65535.
        'echo builder:10000:50000 > /etc/subuid && echo builder:10000:50000 > /etc/subgid',
        'su - builder -c "podman import /tmp/bb.tar localhost/bb > /dev/null && podman run --rm localhost/bb sh -c \'id -u; cat /proc/self/uid_map\'"',
        'su - builder -c "podman run --rm --network=none localhost/bb echo no network"',
      ].join('\n'),
    );
    expect(r.stdout.split('\n').map((l) => l.trim().replace(/\s+/g, ' '))).toEqual(['0', '0 1000 1', '1 10000 50000', 'no network', '']);
    // The container's IDs, seen from the host: the session's own range, shifted (builder's 1000 and its 10000.. subordinates).
    const maps = host('sh', ['-c', `for p in $(cat /sys/fs/cgroup/pids/${d.cgroupParent}/${id}/cgroup.procs); do cat /proc/$p/uid_map; done`]);
    for (const line of maps.split('\n').filter(Boolean)) {
      const [, outer, count] = line.trim().split(/\s+/).map(Number);
      expect(outer! >= hostBase && outer! + count! <= hostBase + 65536, line).toBe(true);
    }
  });

  it('rootless: subordinate IDs outside the session\'s range are refused (newuidmap fails, no container runs)', async () => {
    const r = await d.sh(
      'pod',
      [
        'useradd -m -u 1001 -s /bin/sh outsider',
        // 65536.. is beyond the session's 0..65535: the kernel refuses the mapping newuidmap writes.
        'echo outsider:65536:65536 >> /etc/subuid && echo outsider:65536:65536 >> /etc/subgid',
        'su - outsider -c "podman import /tmp/bb.tar localhost/bb > /dev/null 2>&1; podman run --rm localhost/bb echo ran" 2>&1; echo "exit=$?"',
      ].join('\n'),
    );
    expect(r.stdout).not.toMatch(/^ran$/m);
    expect(r.stdout).toMatch(/newuidmap|uid_map|Operation not permitted/);
    expect(r.stdout).toMatch(/exit=[1-9]\d*\n$/);
  });

  it('destroy ends every podman process: no process, cgroup, mount, link or rule left on the host', async () => {
    await d.sh('pod', 'podman run -d localhost/bb sleep 1000 > /dev/null');
    const procs = `/sys/fs/cgroup/pids/${d.cgroupParent}/${id}`;
    const pids = host('sh', ['-c', `find ${procs} -name cgroup.procs -exec cat {} +`]).split('\n').filter(Boolean).map(Number);
    expect(pids.length).toBeGreaterThan(2); // init, conmon, the container's sleep
    await d.destroy('pod');
    expect(d.cgroupDirs(id)).toEqual([]);
    for (const pid of pids) expect(existsSync(`/proc/${pid}`), `PID ${pid}`).toBe(false);
    // Its volume, which no session uses now, removed: nothing of the session is left mounted; the daemon's lxcfs stays.
    expect((await d.cli(['volume', 'remove', 'ref'])).code).toBe(0);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(d.stateDir));
    expect(mounts.filter((l) => !l.includes(` ${join(d.stateDir, 'lxcfs', 'mnt')} `))).toEqual([]);
    expect(hostPodman()).toEqual(before);
  });
});
