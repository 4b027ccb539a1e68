// The session seccomp policy, as one table. Everything not listed is
// allowed; the architecture check, the x32 check and the ENOSYS for unknown
// numbers come first (see bpf.ts). Syscalls absent from an architecture's
// table (iopl on arm64, say) are skipped for that architecture.
import type { Profile } from '../vocab/profiles.js';

export const EPERM = 1;
export const ENOSYS = 38;
export const EAFNOSUPPORT = 97;

export const CLONE_NS_FLAGS =
  0x00000080 /* NEWTIME */ | 0x00020000 /* NEWNS */ | 0x02000000 /* NEWCGROUP */ | 0x04000000 /* NEWUTS */ |
  0x08000000 /* NEWIPC */ | 0x10000000 /* NEWUSER */ | 0x20000000 /* NEWPID */ | 0x40000000; /* NEWNET */

export const TIOCSTI = 0x5412;
export const TIOCLINUX = 0x541c;

/** personality(2) values that change nothing security-relevant (as Docker allows). */
export const HARMLESS_PERSONALITIES = [0x0 /* PER_LINUX */, 0x8 /* PER_LINUX32 */, 0x20000 /* UNAME26 */, 0x20008, 0xffffffff /* query */];

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const AF_PACKET = 17;

/** A condition on one argument's low 32 bits (the kernel ABI for these calls is int-sized). */
export type ArgTest =
  | { arg: number; anyBitOf: number }
  | { arg: number; oneOf: number[] }
  | { arg: number; noneOf: number[] };

export interface Rule {
  why: string;
  syscalls: string[];
  errno: number;
  /** Without a test the rule applies to every call. */
  when?: ArgTest;
  /** The profiles it applies to; without, every profile. */
  only?: readonly Profile[];
}

export const SECCOMP_POLICY: readonly Rule[] = [
  {
    why: 'no new namespaces, no mounts: the session keeps the view it was given. System lets them through: its root owns its mount, network, UTS, IPC, PID and cgroup namespaces and makes nested ones (Docker, Podman, unshare); mounts copied from the host are locked, and the kernel lets a user namespace mount only filesystems marked safe for it',
    syscalls: ['unshare', 'setns', 'mount', 'umount2', 'pivot_root', 'open_tree', 'open_tree_attr', 'move_mount', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'mount_setattr'],
    errno: EPERM,
    only: ['workspace', 'strict'],
  },
  {
    why: 'chroot under strict (no capabilities: it could not anyway). Workspace keeps it for sshd\'s privilege separation (chroot to /run/sshd): a chroot only narrows a view, and the classic escape (chdir .. past it) ends at the session\'s own root, the old root being detached after pivot_root. System keeps it too (its root has the whole set, and container runtimes chroot)',
    syscalls: ['chroot'],
    errno: EPERM,
    only: ['strict'],
  },
  { why: 'clone may not create namespaces either (system may: nested namespaces are owned by the session\'s user namespace, or by one nested in it)', syscalls: ['clone'], errno: EPERM, when: { arg: 0, anyBitOf: CLONE_NS_FLAGS }, only: ['workspace', 'strict'] },
  { why: 'clone3 flags live in memory a filter cannot read: make libc fall back to clone', syscalls: ['clone3'], errno: ENOSYS },
  { why: 'kernel keyrings are not namespaced (system: ENOSYS instead, below)', syscalls: ['add_key', 'request_key', 'keyctl'], errno: EPERM, only: ['workspace', 'strict'] },
  {
    why: 'system: keyrings still refused, but ENOSYS, which runc (Docker, Podman) takes as "no keyring support" and carries on; on EPERM it fails every container with "unable to join session keyring" (seen in dockerInside.test.ts)',
    syscalls: ['add_key', 'request_key', 'keyctl'],
    errno: ENOSYS,
    only: ['system'],
  },
  {
    why: 'kernel, module, clock and machine control (every profile: each reaches the whole machine)',
    syscalls: [
      'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'swapon', 'swapoff', 'acct', 'syslog',
      'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex', 'iopl', 'ioperm', 'modify_ldt', 'quotactl', 'quotactl_fd', 'nfsservctl',
      'lookup_dcookie', 'uselib', 'ustat', 'sysfs', '_sysctl', 'vhangup',
    ],
    errno: EPERM,
  },
  {
    why: 'reboot: no profile but system keeps CAP_SYS_BOOT. Under system it is let through: in a non-initial PID namespace the kernel only ends that namespace\'s init (a nested container\'s, or the session\'s own: the session stops itself), never the machine',
    syscalls: ['reboot'],
    errno: EPERM,
    only: ['workspace', 'strict'],
  },
  {
    why: 'exploit primitives and cross-process handles',
    syscalls: [
      'bpf', 'perf_event_open', 'userfaultfd', 'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'open_by_handle_at',
      'name_to_handle_at', 'fanotify_init', 'kcmp', 'pidfd_getfd', 'process_vm_readv', 'process_vm_writev',
    ],
    errno: EPERM,
  },
  {
    why: 'AIO contexts draw on one host-wide counter (fs.aio-max-nr) that no cgroup accounts, and seccomp can bound one call, not their sum: ENOSYS, so libaio users fall back to threads',
    syscalls: ['io_setup'],
    errno: ENOSYS,
  },
  { why: 'NUMA placement affects the whole host', syscalls: ['mbind', 'set_mempolicy', 'set_mempolicy_home_node', 'migrate_pages', 'move_pages'], errno: EPERM },
  { why: 'no typing into a terminal the session does not own', syscalls: ['ioctl'], errno: EPERM, when: { arg: 1, oneOf: [TIOCSTI, TIOCLINUX] } },
  { why: 'no personality flags beyond the harmless ones (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...)', syscalls: ['personality'], errno: EPERM, when: { arg: 0, noneOf: HARMLESS_PERSONALITIES } },
  { why: 'sockets: UNIX, IPv4, IPv6 and netlink only (system: packet sockets too, below)', syscalls: ['socket'], errno: EAFNOSUPPORT, when: { arg: 0, noneOf: [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK] }, only: ['workspace', 'strict'] },
  {
    why: 'system adds packet sockets (DHCP clients, tcpdump, bridges\' tooling) in its own network namespace: frames leave only through its veth, where the host drops any but its own MAC and address; the rest (vsock, AF_ALG, ...) stays refused',
    syscalls: ['socket'],
    errno: EAFNOSUPPORT,
    when: { arg: 0, noneOf: [AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET] },
    only: ['system'],
  },
];

/** The rules one profile's program holds. */
export function policyFor(profile: Profile): Rule[] {
  return SECCOMP_POLICY.filter((r) => !r.only || r.only.includes(profile));
}
