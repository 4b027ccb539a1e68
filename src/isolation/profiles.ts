// Capability profiles: what a session's processes may do inside their own
// namespaces. Policy lives here; native/src/harden.c applies the mask, and
// native/src/ops.h caps it (CAPS_KEEP_MAX), so no plan can ask for more.
//
// Every capability below is checked by the kernel against the session's own
// user namespace (ns_capable), and over files only where the owner is one of
// the session's IDs (capable_wrt_inode_uidgid): they reach the session's
// tmpfs, its writable layer, its volumes and its own processes, and nothing
// of the host. Seccomp stays on in every profile.
//
// The system profile (SYSTEM_CAPS) keeps the whole set: each capability is
// listed with what it gives over the session's own namespaces and why its
// host-facing uses stay out of reach (checked against the initial user
// namespace, or refused by seccomp). Only an access rule grants it.

import { PROFILES, type Profile } from '../vocab/profiles.js';

export { PROFILES, type Profile };

interface Cap {
  name: string;
  bit: number;
  why: string;
}

/** Docker's default set, less what the second list drops (sshd's privilege separation needs SETUID, SETGID, SYS_CHROOT and CHOWN for its ptys). */
export const WORKSPACE_CAPS: readonly Cap[] = [
  { name: 'CHOWN', bit: 0, why: 'chown in the session (package managers, tar -p); only to and from the session\'s own IDs; sshd gives a login its pty' },
  { name: 'DAC_OVERRIDE', bit: 1, why: 'root reads and writes its own files whatever their mode; host files are not the session\'s IDs, so not covered' },
  { name: 'FOWNER', bit: 3, why: 'chmod, utime and xattrs on files of other session users (dpkg, tar)' },
  { name: 'FSETID', bit: 4, why: 'keeps setuid/setgid bits across chown and writes, as package installs expect' },
  { name: 'KILL', bit: 5, why: 'signals to other users\' processes, which are all in the session\'s PID namespace' },
  { name: 'SETGID', bit: 6, why: 'setgid/setgroups to the session\'s own gids: su, sudo, apt\'s _apt sandbox, sshd dropping its pre-auth child to the sshd user' },
  { name: 'SETUID', bit: 7, why: 'setuid to the session\'s own uids: su, sudo, apt\'s _apt sandbox, daemons dropping root (sshd: its pre-auth child, a user\'s login)' },
  { name: 'SETPCAP', bit: 8, why: 'lets a process drop capabilities from its bounding set (setpriv, capsh); it can never add one' },
  { name: 'NET_BIND_SERVICE', bit: 10, why: 'ports below 1024 in the session\'s own network namespace (a web server on :80)' },
  { name: 'SYS_CHROOT', bit: 18, why: 'sshd\'s privilege separation chroots its pre-auth child to /run/sshd; a chroot only narrows a view inside the session\'s own root (pivot_root detached the host\'s), and seccomp allows it under workspace only' },
  { name: 'SETFCAP', bit: 31, why: 'file capabilities on the session\'s files (packages that setcap their binaries); bounded by this set at exec' },
];

/** Docker defaults that workspace leaves out, and why. */
export const DROPPED_CAPS: readonly Cap[] = [
  { name: 'MKNOD', bit: 27, why: 'device nodes: a user namespace cannot open them anyway, and /dev is fixed' },
  { name: 'NET_RAW', bit: 13, why: 'raw and packet sockets: spoofing attempts and a long CVE history; seccomp refuses AF_PACKET too' },
  { name: 'AUDIT_WRITE', bit: 29, why: 'the kernel takes audit messages only from the initial user namespace: it would grant nothing (sshd\'s and PAM\'s audit calls get ECONNREFUSED, which libaudit treats as "no audit")' },
];

const INIT_NS = 'the kernel checks it against the initial user namespace (capable()), where the session has nothing';

/** The system profile: every capability, each with what it reaches. Host-facing syscalls stay refused by seccomp (seccompPolicy.ts). */
export const SYSTEM_CAPS: readonly Cap[] = [
  ...WORKSPACE_CAPS,
  { name: 'DAC_READ_SEARCH', bit: 2, why: 'read and search the session\'s own files whatever their mode; open_by_handle_at, its host-facing use, needs it in the initial namespace and seccomp refuses it' },
  { name: 'LINUX_IMMUTABLE', bit: 9, why: `chattr +i/+a: ${INIT_NS}, so it grants nothing` },
  { name: 'NET_BROADCAST', bit: 11, why: 'broadcast and multicast in the session\'s own network namespace' },
  { name: 'NET_ADMIN', bit: 12, why: 'links, addresses, routes, bridges, TUN/TAP, nftables/iptables of the session\'s own network namespace (Docker\'s bridge, a VPN); the host\'s namespace is not the session\'s, and its traffic still leaves only through its veth and the host\'s rules for it' },
  { name: 'NET_RAW', bit: 13, why: 'raw and packet sockets in its own network namespace (ping, DHCP, tcpdump); what they send still leaves through its veth, where the host\'s rules for the session drop any source address but its own' },
  { name: 'IPC_LOCK', bit: 14, why: `mlock past RLIMIT_MEMLOCK: ${INIT_NS}; locked memory is charged to the session's memory cgroup anyway` },
  { name: 'IPC_OWNER', bit: 15, why: 'System V IPC objects of the session\'s own IPC namespace' },
  { name: 'SYS_MODULE', bit: 16, why: `module loading: ${INIT_NS}, and seccomp refuses init_module, finit_module and delete_module` },
  { name: 'SYS_RAWIO', bit: 17, why: `raw I/O: ${INIT_NS}; iopl and ioperm are refused by seccomp; no block device or /dev/mem is in the session` },
  { name: 'SYS_PTRACE', bit: 19, why: 'trace the session\'s own processes (debuggers, strace, container runtimes); its init is non-dumpable with memory of the initial namespace, so out of reach' },
  { name: 'SYS_PACCT', bit: 20, why: `process accounting: ${INIT_NS}, and seccomp refuses acct` },
  { name: 'SYS_ADMIN', bit: 21, why: 'mounts in its own mount namespace (tmpfs, overlay, proc, sysfs, cgroup, FUSE: filesystems the kernel lets a user namespace mount), new namespaces, sethostname of its own UTS namespace; mounts copied from the host are locked and /proc and /sys knobs stay the host\'s' },
  { name: 'SYS_BOOT', bit: 22, why: 'reboot in a non-initial PID namespace only ends that namespace\'s init (the session\'s, or a nested container\'s); the machine is never rebooted' },
  { name: 'SYS_NICE', bit: 23, why: `raising priority or real-time scheduling: ${INIT_NS}; CPU time is the session's cgroup's anyway` },
  { name: 'SYS_RESOURCE', bit: 24, why: `raising a hard rlimit: ${INIT_NS}, so the session's rlimits hold` },
  { name: 'SYS_TIME', bit: 25, why: `setting clocks: ${INIT_NS}, and seccomp refuses settimeofday, clock_settime, clock_adjtime and adjtimex` },
  { name: 'SYS_TTY_CONFIG', bit: 26, why: `vhangup and console configuration: ${INIT_NS}; no console device is in the session` },
  { name: 'MKNOD', bit: 27, why: `device nodes: ${INIT_NS} (a user namespace makes only overlay's whiteouts), and its mounts are nodev` },
  { name: 'LEASE', bit: 28, why: 'file leases on the session\'s own files' },
  { name: 'AUDIT_WRITE', bit: 29, why: 'the kernel takes audit messages only from the initial user namespace: it grants nothing' },
  { name: 'AUDIT_CONTROL', bit: 30, why: 'audit configuration is the initial user namespace\'s only: it grants nothing' },
  { name: 'MAC_OVERRIDE', bit: 32, why: `LSM overrides: ${INIT_NS}` },
  { name: 'MAC_ADMIN', bit: 33, why: `LSM configuration: ${INIT_NS}` },
  { name: 'SYSLOG', bit: 34, why: `the kernel log: ${INIT_NS}, seccomp refuses syslog and /dev/kmsg is absent` },
  { name: 'WAKE_ALARM', bit: 35, why: `alarms that wake the machine: ${INIT_NS}` },
  { name: 'BLOCK_SUSPEND', bit: 36, why: `blocking system suspend: ${INIT_NS}` },
  { name: 'AUDIT_READ', bit: 37, why: 'reading the audit log is the initial user namespace\'s only: it grants nothing' },
  { name: 'PERFMON', bit: 38, why: `performance monitoring: ${INIT_NS}, and seccomp refuses perf_event_open` },
  { name: 'BPF', bit: 39, why: `BPF programs and maps: ${INIT_NS}, and seccomp refuses bpf` },
  { name: 'CHECKPOINT_RESTORE', bit: 40, why: 'checkpoint/restore within its own PID namespace (ns_last_pid, map_files), as CRIU inside needs' },
];

const maskOf = (caps: readonly Cap[]) => caps.reduce((m, c) => m | (1n << BigInt(c.bit)), 0n).toString(16);

/** The capability mask a profile keeps, as the plan's hex argument. */
export function capabilityMask(profile: Profile): string {
  if (profile === 'strict') return '0';
  return maskOf(profile === 'system' ? SYSTEM_CAPS : WORKSPACE_CAPS);
}

/**
 * setgroups(2) in the session: allowed under workspace. The classic risk
 * (dropping a group to pass a group-denied mode, CVE-2014-8989) needs a
 * group worth dropping: the helper clears the host's supplementary groups
 * before clone, and the session can only take gids of its own range, which
 * no other session or host user has.
 */
export function setgroupsFor(profile: Profile): 'allow' | 'deny' {
  return profile === 'strict' ? 'deny' : 'allow';
}

/** Whether the profile gets a writable root (an overlay with a per-session upper). */
export function writableRoot(profile: Profile): boolean {
  return profile !== 'strict';
}

/**
 * Whether /proc and /sys are the kernel's own, unmasked (system): a nested
 * runtime may mount procfs and sysfs only where one is "fully visible", and
 * masks could not hold against a root that may unmount them anyway. What
 * guards the host's knobs there is the kernel's own checks: see
 * docs/security.md, "The system profile".
 */
export function plainProcSys(profile: Profile): boolean {
  return profile === 'system';
}

/**
 * Whether a profile's sessions can run commands as another of their users
 * (exec's `user`): the init's child calls setgroups, setresgid and
 * setresuid, which need CAP_SETGID and CAP_SETUID kept and setgroups
 * allowed in the session's user namespace. Read from the tables above, so
 * a profile that drops them refuses `user` up front.
 */
export function switchesUsers(profile: Profile): boolean {
  const mask = BigInt(`0x${capabilityMask(profile)}`);
  const keeps = (name: string) => WORKSPACE_CAPS.some((c) => c.name === name && (mask & (1n << BigInt(c.bit))) !== 0n);
  return keeps('SETUID') && keeps('SETGID') && setgroupsFor(profile) === 'allow';
}

/**
 * Why a session may not mount a volume read-only, or undefined where it may.
 * A system session's root mounts and remounts in its own mount namespace
 * (seccomp lets it, for Docker and systemd), and the kernel locks the flags
 * only of mounts copied or propagated into that namespace from a more
 * privileged one. A layered root's volumes propagate in (stage-volumes), so
 * theirs hold; on the host's root (sessions.rootfs "/") they are moved in,
 * unlocked, and a bind of one remounted read-write would write to the
 * volume: refused there rather than mounted read-only in name only.
 */
export function readOnlyVolumeRefusal(profile: Profile, hostRoot: boolean): string | undefined {
  if (profile !== 'system' || !hostRoot) return undefined;
  return 'a system session on the host\'s root (sessions.rootfs "/") cannot mount a volume read-only: its root may remount its own mounts, and the kernel does not lock the read-only flag of a volume moved into it there, so it could write to the volume anyway';
}

/** What a create refused so may do instead. */
export const READ_ONLY_VOLUME_REMEDY = 'mount it read-write, use the workspace or strict profile, or a layered root (sessions.rootfs "minimal" or a directory)';
