// Docker inside a system session (issue 26, slice C). The session's /usr is
// the host's, where .ci/setup installs docker.io (never started on the
// host). dockerd runs as the session's root: its bridge and iptables rules
// are in the session's network namespace, its containers' cgroups below the
// session's delegated ones (cgroupDelegation.test.ts), its data in the
// session's writable root (storage driver vfs: see docs/guide.md, "Docker inside").
// Destroying the session ends dockerd and leaves nothing behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, TestDaemon } from './harness.js';

const DOCKERD = '/usr/sbin/dockerd';
const BUSYBOX = '/bin/busybox';
const installed = existsSync(DOCKERD) && existsSync('/usr/bin/docker') && existsSync(BUSYBOX);
if (isRoot && !installed) console.warn(`dockerInside.test.ts skipped: ${DOCKERD}, /usr/bin/docker or ${BUSYBOX} missing (install docker.io and busybox-static: npm run setup)`);

const host = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });
/** What of the host dockerd would change if it reached it: links named docker*, Docker's chains in any table. */
const hostDocker = () => ({
  links: host('ip', ['-o', 'link', 'show']).split('\n').filter((l) => /^\d+: (docker|br-|veth)[^:]*:/.test(l) && !/veth.*@if/.test(l)),
  nft: host('nft', ['list', 'ruleset']).split('\n').filter((l) => /DOCKER|docker0/.test(l)),
});

describe.skipIf(!isRoot)('Docker inside a system session (root)', () => {
  const d = new TestDaemon();
  let before: ReturnType<typeof hostDocker>;
  let id = '';

  beforeAll(async () => {
    // The root suite needs it (npm run setup installs it): a missing package fails, it does not skip.
    expect(installed, `${DOCKERD}, /usr/bin/docker and ${BUSYBOX} must be installed (apt-get install docker.io busybox-static)`).toBe(true);
    await d.start();
    before = hostDocker();
    // A read-only volume with a file in it (imported from a tar): it comes in with its flags locked.
    const src = join(d.dir, 'ref-tree');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'hello'), 'from the volume\n');
    host('tar', ['-C', src, '-cf', join(d.dir, 'ref.tar'), '.']);
    expect((await d.cli(['volume', 'import', 'ref', join(d.dir, 'ref.tar'), '--size', '16'])).code).toBe(0);
    id = (await d.create({ name: 'dock', profile: 'system', memory_mb: 512, root_mb: 512, volumes: [{ name: 'ref', target: '/ref', readonly: true }] })).id;
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('starts dockerd with its own bridge and iptables rules in the session\'s network namespace', async () => {
    const out = await d.script('dock', [
      'mkdir -p /var/lib/docker',
      '(dockerd --data-root /var/lib/docker --storage-driver vfs > /var/log/dockerd.log 2>&1 &)',
      'i=0; until docker info > /dev/null 2>&1; do i=$((i+1)); [ $i -lt 600 ] || { tail -20 /var/log/dockerd.log; exit 1; }; sleep 0.1; done',
      'docker info --format "{{.Driver}} {{.CgroupDriver}} {{.CgroupVersion}} {{.DockerRootDir}}"',
      'ip -o link show docker0 | grep -c docker0',
      'iptables -t nat -S | grep -c -- "-N DOCKER"',
    ]);
    expect(out).toBe('vfs cgroupfs 1 /var/lib/docker\n1\n1\n');
    expect(hostDocker()).toEqual(before);
  });

  it('imports an image from a busybox tar and runs it: docker run --rm prints', async () => {
    const out = await d.script('dock', [
      'set -e',
      'mkdir -p /tmp/img/bin /tmp/img/www && cp /bin/busybox /tmp/img/bin/',
      'for a in sh echo httpd dd cat sleep; do ln -s busybox /tmp/img/bin/$a; done',
      'echo "hello from a container" > /tmp/img/www/index.html',
      'tar -C /tmp/img -c . | docker import - enclave-bb > /dev/null',
      'docker run --rm enclave-bb echo hi',
    ]);
    expect(out).toBe('hi\n');
  });

  it('binds the session\'s read-only volume into a container (docker run -v): runc\'s remount keeps the locked flags, the bind stays read-only', async () => {
    // runc remounts a bind with the flags its options name (ro) where the kernel locked nosuid and nodev too
    // (the volume was staged: docs/security.md). Both mounts are read-only, with or without :ro.
    const out = await d.script('dock', [
      'docker run --rm -v /ref:/x:ro enclave-bb sh -c "cat /x/hello; grep \\" /x \\" /proc/self/mountinfo | cut -d\\" \\" -f5,6"',
      'docker run --rm -v /ref:/x enclave-bb sh -c "echo z >> /x/hello" 2>&1; echo "rc=$?"',
    ]);
    expect(out).toBe('from the volume\n/x ro,nosuid,nodev,relatime,idmapped\nsh: can\'t create /x/hello: Read-only file system\nrc=1\n');
  });

  it('publishes a container\'s port on the session\'s 127.0.0.1 (docker run -d -p 8080:80), its cgroups below the session\'s', async () => {
    const run = await d.sh('dock', 'docker run -d --name web -p 8080:80 enclave-bb httpd -f -p 80 -h /www');
    expect(run.stderr).toBe('');
    const cid = run.stdout.trim();
    expect(cid).toMatch(/^[0-9a-f]{64}$/);
    const r = await d.sh('dock', 'i=0; until busybox wget -qO- http://127.0.0.1:8080/ 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done');
    expect(r.stdout).toBe('hello from a container\n');
    // Docker's cgroups for the container, made by the session's root, inside the session's (the host's view).
    for (const h of ['memory', 'pids', 'devices']) expect(existsSync(join('/sys/fs/cgroup', h, d.cgroupParent, id, 'docker', cid)), h).toBe(true);
    expect((await d.sh('dock', 'docker rm -f web > /dev/null && echo removed')).stdout).toBe('removed\n');
  });

  it('a container cannot use more than the session\'s memory: killed, reported as the session\'s OOM kill, the session runs on', async () => {
    // dd's buffer is bs bytes, filled from /dev/zero: 700 MB touched in a 512 MB session, no docker -m.
    const r = await d.sh('dock', 'docker run --rm enclave-bb dd if=/dev/zero of=/dev/null bs=700M count=1; echo "exit=$?"');
    expect(r.stdout).toMatch(/exit=137\n$/);
    let kills = 0;
    for (let i = 0; i < 500 && kills === 0; i++) {
      kills = (JSON.parse((await d.cli(['session', 'show', 'dock', '--json'])).stdout) as { oom: { kills: number } }).oom.kills;
      if (kills === 0) await new Promise((res) => setTimeout(res, 10));
    }
    expect(kills).toBeGreaterThanOrEqual(1);
    expect((await d.show('dock')).state).toBe('running');
    expect((await d.sh('dock', 'docker run --rm enclave-bb echo still')).stdout).toBe('still\n');
  });

  it('destroy ends dockerd and its containers: no process, cgroup, mount, link or rule left on the host', async () => {
    await d.sh('dock', 'docker run -d enclave-bb sleep 1000 > /dev/null');
    const pids = host('sh', ['-c', `cat /sys/fs/cgroup/unified/${d.cgroupParent}/${id}/cgroup.procs /sys/fs/cgroup/unified/${d.cgroupParent}/${id}/*/cgroup.procs /sys/fs/cgroup/unified/${d.cgroupParent}/${id}/*/*/cgroup.procs 2>/dev/null || true`]).split('\n').filter(Boolean).map(Number);
    expect(pids.length).toBeGreaterThan(3); // init, dockerd, containerd, a shim, sleep
    await d.destroy('dock');
    expect(d.cgroupDirs(id)).toEqual([]);
    for (const pid of pids) expect(existsSync(`/proc/${pid}`), `PID ${pid}`).toBe(false);
    // Nothing of the session is mounted on the host (dockerd's mounts were in its mount namespace) once its volume,
    // which no session uses now, is removed; the daemon's own lxcfs mount stays.
    expect((await d.cli(['volume', 'remove', 'ref'])).code).toBe(0);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(d.stateDir));
    expect(mounts.filter((l) => !l.includes(` ${join(d.stateDir, 'lxcfs', 'mnt')} `))).toEqual([]);
    expect(hostDocker()).toEqual(before);
  });
});
