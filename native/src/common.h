/*
 * Shared by the Enclave helpers. The helpers are mechanism only: the daemon
 * (TypeScript) decides every path, mode, size and ID; the helpers execute the
 * plan in a fixed order and stop at the first failure, naming the step.
 */
#ifndef ENCLAVE_COMMON_H
#define ENCLAVE_COMMON_H

#include <stddef.h>

/*
 * Failure steps. A helper that fails reports "error <step> <errno> <detail>"
 * on its status channel and exits with STEP_EXIT_BASE + step; the session
 * agent reports the steps of a failed exec on its control channel. Each op of
 * the plan names its step in the op table (ops.h); the others are the fixed
 * steps around it. The daemon reads this list from `enclave-init --ops`.
 */
#define ENCLAVE_STEPS(X)           \
  X(PLAN, "plan")                  \
  X(USAGE, "usage")                \
  X(UNSHARE_MNT, "unshare-mnt")    \
  X(ROOTFS, "rootfs")              \
  X(HIDE, "hide")                  \
  X(BIND_FILE, "bind-file")        \
  X(CONTROL, "control")            \
  X(CLONE, "clone")                \
  X(CGROUP, "cgroup")              \
  X(UID_MAP, "uid-map")            \
  X(SETGROUPS, "setgroups")        \
  X(GID_MAP, "gid-map")            \
  X(VETH, "veth")                  \
  X(SYNC, "sync")                  \
  X(PARENT_DEATH, "parent-death")  \
  X(NEWROOT, "newroot")            \
  X(SETID, "setid")                \
  X(CGROUPNS, "cgroupns")          \
  X(PROPAGATION, "propagation")    \
  X(LOOPBACK, "loopback")          \
  X(NETWORK, "network")            \
  X(TMPFS, "tmpfs")                \
  X(MKDIR, "mkdir")                \
  X(SYMLINK, "symlink")            \
  X(BIND_DEV, "bind-dev")          \
  X(PROC, "proc")                  \
  X(SYSFS, "sysfs")                \
  X(DEVPTS, "devpts")              \
  X(MQUEUE, "mqueue")              \
  X(MASK, "mask")                  \
  X(READONLY, "readonly")          \
  X(FILE, "file")                  \
  X(PIVOT_ROOT, "pivot-root")      \
  X(HOSTNAME, "hostname")          \
  X(FDS, "fds")                    \
  X(RLIMIT, "rlimit")              \
  X(CAPS, "capabilities")          \
  X(DUMPABLE, "dumpable")          \
  X(SECCOMP, "seccomp")            \
  X(READY, "ready")                \
  X(PROTOCOL, "protocol")          \
  X(FORK, "fork")                  \
  X(TTY, "tty")                    \
  X(STDIO, "stdio")                \
  X(CWD, "cwd")                    \
  X(EXEC, "exec")                  \
  X(STOPPING, "stopping")          \
  X(ENV, "env")                    \
  X(WRITE, "write")                \
  X(LAYER, "layer")                \
  X(UPPER, "upper")                \
  X(ROOT, "root")                  \
  X(OVERLAY, "overlay")            \
  X(VOLUME, "volume")              \
  X(LXCFS, "lxcfs")                \
  X(CGROUPFS, "cgroupfs")          \
  X(USER, "user")                  \
  X(BOOT, "boot")

#define ENCLAVE_STEP_ENUM(name, str) STEP_##name,
enum step { ENCLAVE_STEPS(ENCLAVE_STEP_ENUM) STEP_COUNT };
#undef ENCLAVE_STEP_ENUM

#define STEP_EXIT_BASE 64

const char *step_name(enum step s);

/* Run before a failure is reported (the init parent kills its child). */
extern void (*fail_cleanup)(void);

/* Report a failed step on fd (if >= 0) and exit with its code. */
__attribute__((noreturn, format(printf, 4, 5))) void fail_step(int fd, enum step s, int err, const char *fmt, ...);

/* write(2) the whole buffer, retrying on EINTR and short writes. */
int write_all(int fd, const void *buf, size_t len);

/* Write a short string to a file (cgroup.procs, uid_map, ...). */
int write_file(const char *path, const char *data);

/* Replace dirfd/leaf with a file of exactly these bytes, mode and owner:
 * written to a temporary name beside it, then renamed over it, so a reader
 * sees the old file or the new one, never a part. 0, or -1 with errno. */
int replace_file_at(int dirfd, const char *leaf, unsigned mode, unsigned uid, unsigned gid, const void *data, size_t len);

/* Parse a non-negative decimal; -1 on error. */
long long parse_u64(const char *s);

#endif
