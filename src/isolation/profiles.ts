// Capability profiles: what a session's processes may do inside their own
// namespaces. Policy lives here; native/src/harden.c applies the mask, and
// native/src/ops.h caps it (CAPS_KEEP_MAX), so no plan can ask for more.
//
// Every capability below is checked by the kernel against the session's own
// user namespace (ns_capable), and over files only where the owner is one of
// the session's IDs (capable_wrt_inode_uidgid): they reach the session's
// tmpfs, its writable layer, its volumes and its own processes, and nothing
// of the host. Seccomp stays on in both profiles.

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

/** The capability mask a profile keeps, as the plan's hex argument. */
export function capabilityMask(profile: Profile): string {
  if (profile === 'strict') return '0';
  return WORKSPACE_CAPS.reduce((m, c) => m | (1n << BigInt(c.bit)), 0n).toString(16);
}

/**
 * setgroups(2) in the session: allowed under workspace. The classic risk
 * (dropping a group to pass a group-denied mode, CVE-2014-8989) needs a
 * group worth dropping: the helper clears the host's supplementary groups
 * before clone, and the session can only take gids of its own range, which
 * no other session or host user has.
 */
export function setgroupsFor(profile: Profile): 'allow' | 'deny' {
  return profile === 'workspace' ? 'allow' : 'deny';
}

/** Whether the profile gets a writable root (an overlay with a per-session upper). */
export function writableRoot(profile: Profile): boolean {
  return profile === 'workspace';
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
