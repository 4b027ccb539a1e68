/*
 * Shared by the Enclave helpers. The helpers are mechanism only: the daemon
 * (TypeScript) decides every path, mode, size and ID; the helpers execute the
 * plan in a fixed order and stop at the first failure, naming the step.
 */
#ifndef ENCLAVE_COMMON_H
#define ENCLAVE_COMMON_H

#include <stddef.h>

/*
 * Failure steps. A helper that fails exits with STEP_EXIT_BASE + step, and
 * reports "error <step-name> <errno> <detail>" on its status channel.
 * Keep in sync with src/native/steps.ts (a unit test checks the names).
 */
#define ENCLAVE_STEPS(X) \
  X(SPEC, "spec")                  \
  X(UNSHARE_MNT, "unshare-mnt")    \
  X(ROOTFS, "rootfs")              \
  X(MASK, "mask")                  \
  X(CLONE, "clone")                \
  X(CGROUP, "cgroup")              \
  X(UID_MAP, "uid-map")            \
  X(SETGROUPS, "setgroups")        \
  X(GID_MAP, "gid-map")            \
  X(SYNC, "sync")                  \
  X(PARENT_DEATH, "parent-death")  \
  X(NEWROOT, "newroot")            \
  X(SETID, "setid")                \
  X(CGROUPNS, "cgroupns")          \
  X(PROPAGATION, "propagation")    \
  X(TMPFS, "tmpfs")                \
  X(MKDIR, "mkdir")                \
  X(SYMLINK, "symlink")            \
  X(BIND_DEV, "bind-dev")          \
  X(PROC, "proc")                  \
  X(SYSFS, "sysfs")                \
  X(DEVPTS, "devpts")              \
  X(MQUEUE, "mqueue")              \
  X(PIVOT_ROOT, "pivot-root")      \
  X(HOSTNAME, "hostname")          \
  X(LOOPBACK, "loopback")          \
  X(FDS, "fds")                    \
  X(READY, "ready")                \
  X(IDENTITY, "identity")          \
  X(SETNS, "setns")                \
  X(FORK, "fork")                  \
  X(CWD, "cwd")                    \
  X(USAGE, "usage")                \
  X(RLIMIT, "rlimit")              \
  X(CAPS, "capabilities")          \
  X(SECCOMP, "seccomp")            \
  X(READONLY, "readonly")          \
  X(PROC_MASK, "proc-mask")        \
  X(VETH, "veth")                  \
  X(NETWORK, "network")            \
  X(BIND_FILE, "bind-file")        \
  X(TTY, "tty")

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

/* Field 22 of /proc/<pid>/stat: start time in clock ticks after boot. */
int read_start_time(int pid, unsigned long long *out);

/* Parse a non-negative decimal; -1 on error. */
long long parse_u64(const char *s);

#endif
