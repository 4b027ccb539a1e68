// Failure steps of the native helpers, in the order of native/src/common.h
// (ENCLAVE_STEPS). A helper that fails exits with STEP_EXIT_BASE + index.
export const HELPER_STEPS = [
  'spec', 'unshare-mnt', 'rootfs', 'mask', 'clone', 'cgroup', 'uid-map', 'setgroups', 'gid-map', 'sync',
  'parent-death', 'newroot', 'setid', 'cgroupns', 'propagation', 'tmpfs', 'mkdir', 'symlink', 'bind-dev', 'proc',
  'sysfs', 'devpts', 'mqueue', 'pivot-root', 'hostname', 'loopback', 'fds', 'ready', 'identity', 'setns', 'fork',
  'cwd', 'usage', 'rlimit', 'capabilities', 'seccomp', 'readonly', 'proc-mask', 'veth', 'network', 'bind-file',
  'tty',
] as const;

export type HelperStep = (typeof HELPER_STEPS)[number];

export const STEP_EXIT_BASE = 64;

export function stepForExitCode(code: number): HelperStep | undefined {
  return HELPER_STEPS[code - STEP_EXIT_BASE];
}
