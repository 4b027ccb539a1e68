// The escape suite: inside a real session, every hardening claim with the
// exact errno or outcome. A probe (probe.c) is compiled per run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { helperPaths } from '../../src/native/addon.js';
import { MASKED_PATHS } from '../../src/isolation/plan.js';
import type { Session } from '../../src/api/schemas.js';
import { isRoot, TestDaemon, SESSION_PROBE } from './harness.js';
import { capabilityMask, PROFILES } from '../../src/isolation/profiles.js';

const MIB = 1024 * 1024;

/** Raw-syscall cases and the exact result each must give inside a session. */
const SYSCALL_CASES: [string, string][] = [
  ['mount-tmpfs', 'EPERM'],
  ['umount-proc', 'EPERM'],
  ['unshare-user', 'EPERM'],
  ['unshare-mnt', 'EPERM'],
  ['unshare-cgroup', 'EPERM'],
  ['chroot', 'EPERM'], // workspace: ok (sshd's privilege separation), see below
  ['chroot-escape', 'EPERM'], // workspace: own-root, never past the session's root
  ['pivot-root', 'EPERM'],
  ['clone-newuser', 'EPERM'],
  ['clone3', 'ENOSYS'],
  ['tiocsti', 'EPERM'],
  ['tiocsti-high', 'EPERM'],
  ['tioclinux', 'EPERM'],
  ['keyctl', 'EPERM'],
  ['add-key', 'EPERM'],
  ['bpf', 'EPERM'],
  ['perf-event-open', 'EPERM'],
  ['userfaultfd', 'EPERM'],
  ['io-uring-setup', 'EPERM'],
  ['io-setup', 'ENOSYS'], // fs.aio-max-nr is host-wide
  ['kexec-load', 'EPERM'],
  ['init-module', 'EPERM'],
  ['personality', 'EPERM'],
  ['socket-packet', 'EAFNOSUPPORT'],
  ['socket-vsock', 'EAFNOSUPPORT'],
  ['socket-alg', 'EAFNOSUPPORT'],
  ['socket-inet', 'ok'], // control: ordinary sockets still work
  ['mknod', 'EPERM'],
  ['socket-raw', 'EPERM'], // no NET_RAW in either profile: no spoofing from raw sockets
  ['open-by-handle', 'EPERM'],
  ['setns', 'EPERM'],
  ['hostname', 'EPERM'], // the hostname is the plan's
];

// The same attacks under both profiles: what fails under strict fails under
// workspace too; where the outcome differs, the test says why it is harmless.
describe.skipIf(!isRoot).each(PROFILES)('escape suite, profile %s (root)', (profile) => {
  const d = new TestDaemon({ extraConfig: `profile = "${profile}"\n[tmpfs]\ntmp_inodes = 200\n` });
  let probe: string;
  let jail: Session;
  const results = new Map<string, string>();

  const cgroupFile = (s: Session, controller: string, file: string) =>
    readFileSync(join('/sys/fs/cgroup', controller, d.cgroupParent, s.id, file), 'utf8').trim();

  beforeAll(async () => {
    await d.start();
    d.buildProbe();
    probe = SESSION_PROBE;
    jail = await d.create({ name: 'jail' });
    // One exec runs every syscall case; each prints "<case> <result>".
    // Under system the cases that now succeed (a mount, an unmount of /proc, pivot_root, sethostname) would change
    // the session the rest of the suite runs in: each runs in a mount and UTS namespace of its own, nested in it.
    const nest = profile === 'system' ? 'unshare -mu ' : '';
    const script = SYSCALL_CASES.map(([c]) => `printf '%s ' ${c}; ${nest}${probe} ${c}`).join('; ');
    const r = await d.sh('jail', script);
    for (const line of r.stdout.trim().split('\n')) {
      const [c, res] = line.split(' ');
      results.set(c!, res ?? '');
    }
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('runs every process with its profile\'s capabilities (none under strict), NoNewPrivs under strict, and a seccomp filter', async () => {
    const r = await d.sh('jail', 'grep -E "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):" /proc/self/status /proc/1/status');
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(14); // 7 fields, for the command and for the init
    const kept = capabilityMask(profile).padStart(16, '0');
    for (const l of lines) {
      if (/Cap(Inh|Amb)/.test(l)) expect(l).toMatch(/:\s*0000000000000000$/);
      if (/Cap(Prm|Eff|Bnd)/.test(l)) expect(l).toMatch(new RegExp(`:\\s*${kept}$`));
      if (/NoNewPrivs/.test(l)) expect(l).toMatch(profile === 'strict' ? /:\s*1$/ : /:\s*0$/);
      if (/Seccomp:/.test(l)) expect(l).toMatch(/:\s*2$/);
    }
  });

  it.runIf(profile === 'system')('changes its own network only: addresses, routes, links and firewall of its network namespace (NET_ADMIN there)', async () => {
    const hostBefore = execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' }) + execFileSync('ip', ['route', 'show', 'table', 'all'], { encoding: 'utf8' });
    const r = await d.sh(
      'jail',
      'set -e; ip addr add 10.9.9.9/32 dev lo; ip route add 10.8.0.0/16 dev lo; ip link add br9 type bridge; nft add table inet jail9; ip -4 -o addr show lo | grep -c 10.9.9.9; ip route show 10.8.0.0/16 | wc -l; nft list tables | grep -c jail9; ip addr del 10.9.9.9/32 dev lo; ip route del 10.8.0.0/16; ip link del br9; nft delete table inet jail9',
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('1\n1\n1\n');
    const hostAfter = execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' }) + execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' }) + execFileSync('ip', ['route', 'show', 'table', 'all'], { encoding: 'utf8' }) + execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });
    expect(hostBefore + hostAfter).not.toMatch(/10\.9\.9\.9|10\.8\.0\.0|br9|jail9/);
  });

  it.skipIf(profile === 'system')('cannot change its network: addresses, routes, links and firewall need NET_ADMIN, which no profile but system has', async () => {
    const r = await d.sh(
      'jail',
      'ip addr add 10.9.9.9/32 dev lo 2>&1; ip route add 10.8.0.0/16 dev lo 2>&1; ip link set lo down 2>&1; ip link add dummy0 type dummy 2>&1; nft list ruleset >/dev/null 2>&1 || echo nft-refused; ip -4 -o addr show lo | wc -l',
    );
    expect(r.stdout.match(/Operation not permitted/g)?.length).toBe(4);
    expect(r.stdout).toContain('nft-refused');
    expect(r.stdout.trim().split('\n').pop()).toBe('1'); // lo keeps its one IPv4 address
  });

  it('cannot hard-link a host file out of its layer; a link inside the writable root is a copy, the host file untouched', async () => {
    const su = statSync('/usr/bin/su');
    const r = await d.sh('jail', 'ln /usr/bin/su /tmp/su-link 2>&1; ln /usr/bin/su /usr/bin/su-link 2>&1 && echo linked; echo end');
    expect(r.stdout).toMatch(/Invalid cross-device link/); // /tmp is another filesystem
    if (profile === 'strict') expect(r.stdout).toMatch(/Read-only file system/);
    else expect(r.stdout).toContain('linked'); // overlay copies su up into the session's layer
    const after = statSync('/usr/bin/su');
    expect([after.ino, after.nlink, after.mtimeMs]).toEqual([su.ino, su.nlink, su.mtimeMs]);
    expect(existsSync('/usr/bin/su-link')).toBe(false);
  });

  it('gains nothing from a setuid-root copy of a shell', async () => {
    if (profile === 'strict') {
      const r = await d.sh('jail', 'cp /bin/sh /tmp/sush && chmod 4755 /tmp/sush && /tmp/sush -c \'grep -E "^Cap(Prm|Eff):" /proc/self/status; id -u\'');
      expect(r.stdout).toBe('CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n0\n');
      return;
    }
    // Under workspace root has its set already; the attack is from nobody, and /tmp is nosuid.
    const r = await d.sh('jail', 'cp /bin/sh /tmp/sush && chmod 4755 /tmp/sush && su -s /tmp/sush nobody -c \'grep -E "^Cap(Prm|Eff):" /proc/self/status; id -u\'');
    expect(r.stdout).toBe('CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n65534\n');
  });

  // Workspace keeps SYS_CHROOT and seccomp lets chroot through (sshd); a chroot only narrows the view, and climbing out of one ends at the session's root.
  const WORKSPACE: Record<string, string> = { chroot: 'ok', 'chroot-escape': 'own-root' };
  /**
   * What system allows, and why each stays inside: its root has every
   * capability over its own namespaces, and these are namespaced. Each ran
   * in a mount and UTS namespace nested in the session's (above); the tests
   * below show the host's and the session's views unchanged.
   */
  const SYSTEM: Record<string, string> = {
    ...WORKSPACE,
    'mount-tmpfs': 'ok', // over /tmp of its own mount namespace
    'umount-proc': 'ok', // its own /proc mount, in its own mount namespace; mounts copied from the host are locked
    'unshare-user': 'ok', // a user namespace nested in the session's: it maps only IDs the session has
    'unshare-mnt': 'ok',
    'unshare-cgroup': 'ok', // rooted at the session's own cgroup
    'pivot-root': 'EINVAL', // seccomp lets it through; the kernel's own rule refuses it here (its cwd is no mount point), and any pivot is of its own mount namespace
    'clone-newuser': 'ok',
    'socket-packet': 'ok', // its own network namespace; the host drops frames not from its MAC and address
    'socket-raw': 'ok', // NET_RAW over its own network namespace, the same anti-spoofing
    setns: 'ok', // into its own network namespace (the one it is in)
    hostname: 'ok', // its own UTS namespace (a nested one here): the host's and the session's hostnames stay
    keyctl: 'ENOSYS', // still refused; ENOSYS so that runc runs containers without a session keyring
    'add-key': 'ENOSYS',
  };
  it.each(SYSCALL_CASES)('%s gives %s (or the workspace or system outcome)', (c, want) => {
    expect(results.get(c)).toBe(profile === 'workspace' ? (WORKSPACE[c] ?? want) : profile === 'system' ? (SYSTEM[c] ?? want) : want);
  });

  it.runIf(profile === 'system')('keeps the session\'s own mounts and hostname after the cases that changed them in a nested namespace', async () => {
    const r = await d.sh('jail', 'hostname; test -e /proc/self/status && echo proc; findmnt -n -o FSTYPE /tmp');
    expect(r.stdout).toBe(`${(await d.show('jail')).hostname}\nproc\ntmpfs\n`);
    expect(execFileSync('hostname', { encoding: 'utf8' }).trim()).not.toBe('changed');
  });

  it('kills the caller of an x32 syscall', async () => {
    const r = await d.cli(['session', 'exec', 'jail', '--', probe, 'x32']);
    expect(r.stdout).toBe('');
    expect(r.code).toBe(128 + 31); // SIGSYS
  });

  it('refuses writes to /proc/sys and /proc/sysrq-trigger', async () => {
    const r = await d.sh('jail', 'echo x > /proc/sys/kernel/core_pattern && echo WROTE; echo h > /proc/sysrq-trigger && echo WROTE; cat /proc/sys/kernel/core_pattern');
    expect(r.stdout).not.toContain('WROTE');
    // Under system /proc is the kernel's own, not a read-only bind: the file is host root's, which is no ID of the session's.
    expect(r.stderr).toMatch(profile === 'system' ? /core_pattern: Permission denied/ : /core_pattern: Read-only file system/);
    expect(r.stdout.trim()).toBe(readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim());
  });

  it.runIf(profile === 'system')('shows the kernel\'s /proc and /sys unmasked (a nested procfs needs a fully visible one), whose host-only files stay unreadable', async () => {
    const r = await d.sh('jail', 'grep -c . /proc/interrupts; for f in /proc/kcore /proc/kmsg /sys/firmware/dmi/tables/DMI; do test -e $f || continue; cat $f >/dev/null 2>&1 && echo READ $f; done; echo end');
    expect(Number(r.stdout.split('\n')[0])).toBeGreaterThan(0);
    expect(r.stdout).not.toContain('READ');
    expect(r.stdout.trim().endsWith('end')).toBe(true);
  });

  it.skipIf(profile === 'system')('shows the masked /proc and /sys paths empty', async () => {
    const present = MASKED_PATHS.filter((p) => existsSync(p));
    expect(present.length).toBeGreaterThan(2);
    const script = present.map((p) => `if [ -d ${p} ]; then printf '%s %s\\n' ${p} $(ls -A ${p} | wc -l); else printf '%s %s\\n' ${p} $(wc -c < ${p}); fi`).join('; ');
    const r = await d.sh('jail', script);
    expect(r.stdout.trim().split('\n').sort()).toEqual(present.map((p) => `${p} 0`).sort());
    // ... while the host's are not empty.
    expect(readFileSync('/proc/interrupts', 'utf8').length).toBeGreaterThan(0);
  });

  it('has a minimal /dev and no way to make device nodes', async () => {
    const r = await d.sh('jail', 'ls -A /dev | tr "\\n" " "');
    // System adds TUN and FUSE (plan.ts SYSTEM_DEVICES), each usable only in its own namespaces.
    expect(r.stdout.trim().split(' ').sort()).toEqual(
      ['fd', 'full', 'mqueue', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero', ...(profile === 'system' ? ['net', 'fuse'] : [])].sort(),
    );
    expect(results.get('mknod')).toBe('EPERM');
  });

  it('starts a command with only fds 0-2 open', async () => {
    const r = await d.cli(['session', 'exec', 'jail', '--', probe, 'fds']);
    expect(r.stdout.trim()).toBe('0 1 2');
  });

  it('shows a session only its own cgroups, read-only (system: delegated, its limits still not its own to write), rooted at itself', async () => {
    // Every cgroup mount is under /sys/fs/cgroup and read-only; its root is the session's own cgroup (its cgroup namespace).
    // Under system the hierarchies are writable mounts (the session makes sub-cgroups: cgroupDelegation.test.ts), the tmpfs holding them is not.
    const mounts = (await d.sh('jail', 'grep cgroup /proc/self/mounts')).stdout.trim().split('\n');
    expect(mounts.length).toBeGreaterThan(0);
    for (const m of mounts) expect(m).toMatch(profile === 'system' && !/ tmpfs /.test(m) ? /^\S+ \/sys\/fs\/cgroup(\/\S+)? cgroup2? rw,/ : /^\S+ \/sys\/fs\/cgroup(\/\S+)? (cgroup2?|tmpfs) ro,/);
    const roots = (await d.sh('jail', "awk '$9 ~ /^cgroup/ {print $4}' /proc/self/mountinfo | sort -u")).stdout.trim();
    expect(roots).toBe('/');
    const w = await d.sh('jail', 'for f in /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max; do (echo max > $f) 2>/dev/null && echo WROTE $f; done; mkdir /sys/fs/cgroup/escape 2>/dev/null && echo MADE; echo end');
    expect(w.stdout).toBe('end\n');
  });

  it('cannot see, signal or ptrace host processes or the daemon', async () => {
    const r = await d.sh('jail', `${probe} kill ${d.pid}; ${probe} ptrace ${d.pid}; ${probe} kill ${process.pid}; test -e /proc/${d.pid} && echo VISIBLE; echo end`);
    expect(r.stdout).toBe('ESRCH\nESRCH\nESRCH\nend\n');
  });

  it('keeps the helper binaries root-owned and read-only, out of reach of a session', async () => {
    for (const p of [helperPaths.init]) {
      const st = statSync(p);
      expect(st.uid).toBe(0);
      expect(st.mode & 0o222).toBe(0);
    }
    const r = await d.sh('jail', `echo x > ${helperPaths.init} && echo OVERWROTE; cp /bin/true ${helperPaths.init} 2>/dev/null && echo REPLACED; echo end`);
    expect(r.stdout).toBe('end\n');
    // Read-only where the rootfs shows them; invisible where a session tmpfs
    // covers them (a checkout under /tmp).
    expect(r.stderr).toMatch(/Read-only file system|Permission denied|Directory nonexistent/);
  });

  it('gives exec\'d commands the session\'s rlimits and cgroups, like the init', async () => {
    const s = await d.create({ name: 'limited', pids: 48 });
    const r = await d.sh('limited', 'ulimit -n; grep -E "^Max (processes|core file size)" /proc/self/limits | tr -s " "; sleep 0.5 & echo $!; wait');
    const [nofile, core, procs] = r.stdout.trim().split('\n');
    expect(nofile).toBe('4096');
    expect(core).toMatch(/^Max core file size 0 0 bytes/);
    expect(procs).toMatch(/^Max processes 49 49 processes/); // pids + 1: the cgroup bites first
    // An exec'd process is in the session's cgroup in every hierarchy.
    const running = d.sh('limited', 'sleep 2');
    let found = false;
    for (let i = 0; i < 300 && !found; i++) {
      found = d.cgroupDirs(s.id).every((dir) =>
        readFileSync(join(dir, 'cgroup.procs'), 'utf8')
          .split('\n')
          .filter(Boolean)
          .some((p) => existsSync(`/proc/${p}/comm`) && readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'sleep'),
      );
      if (!found) await new Promise((res) => setTimeout(res, 10));
    }
    expect(found).toBe(true);
    await running;
    await d.destroy(s.id);
  });

  it('writes the session limits into its cgroup files, and destroy removes them everywhere', async () => {
    const s = await d.create({ name: 'caps', memory_mb: 96, pids: 40, cpu_percent: 50 });
    expect(cgroupFile(s, 'memory', 'memory.limit_in_bytes')).toBe(String(96 * MIB));
    expect(cgroupFile(s, 'pids', 'pids.max')).toBe('40');
    expect(cgroupFile(s, 'cpu', 'cpu.cfs_quota_us')).toBe('50000');
    expect(cgroupFile(s, 'cpu', 'cpu.cfs_period_us')).toBe('100000');
    expect(d.cgroupDirs(s.id).length).toBe(7); // cpu, cpuacct, cpuset, memory, pids, devices (for runc inside system sessions) + the v2 tracking tree (this host's separate hierarchies)
    await d.destroy(s.id);
    expect(d.cgroupDirs(s.id)).toEqual([]);
  });

  it('stops a fork bomb at the pids limit while the daemon keeps answering', async () => {
    const s = await d.create({ name: 'bomb', pids: 32 });
    const bomb = d.sh('bomb', 'b() { b | b & }; b; sleep 30');
    let refused = 0;
    for (let i = 0; i < 500 && refused === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      refused = Number(/max (\d+)/.exec(cgroupFile(s, 'pids', 'pids.events'))?.[1] ?? 0);
    }
    expect(refused).toBeGreaterThan(0);
    expect(Number(cgroupFile(s, 'pids', 'pids.current'))).toBeLessThanOrEqual(32);
    const t0 = process.hrtime.bigint();
    const health = await d.api('GET', '/v1/sessions');
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    expect(health.status).toBe(200);
    console.log(`API call during the fork bomb: ${ms.toFixed(1)} ms`);
    expect(spawnSync('true').status).toBe(0);
    await d.destroy(s.id);
    await bomb;
    expect(d.cgroupDirs(s.id)).toEqual([]);
  });

  it('kills a memory hog inside its session only', async () => {
    const s = await d.create({ name: 'hog', memory_mb: 64 });
    const r = await d.cli(['session', 'exec', 'hog', '--', probe, 'hog']);
    expect(r.code).toBe(137);
    expect(cgroupFile(s, 'memory', 'memory.oom_control')).toMatch(/^oom_kill [1-9]/m);
    // The session and its init survive; the daemon too.
    expect((await d.show('hog')).state).toBe('running');
    expect((await d.sh('hog', 'echo alive')).stdout).toBe('alive\n');
    await d.destroy(s.id);
  });

  it('ends writes to /tmp and /home in ENOSPC at the configured size', async () => {
    await d.create({ name: 'small', tmp_mb: 8, home_mb: 8 });
    const r = await d.sh('small', 'for m in /tmp /home; do dd if=/dev/zero of=$m/fill bs=1M count=16 2>&1 | grep -o "No space left on device"; du -m $m/fill | cut -f1; done');
    expect(r.stdout).toBe('No space left on device\n8\nNo space left on device\n8\n');
  });

  it('ends file creation in ENOSPC at the inode cap', async () => {
    const r = await d.cli(['session', 'exec', 'small', '--', probe, 'files', '1000']);
    expect(r.stdout).toMatch(/^ENOSPC after (\d+)\n$/);
    expect(Number(/after (\d+)/.exec(r.stdout)![1])).toBeLessThan(200);
  });
});
