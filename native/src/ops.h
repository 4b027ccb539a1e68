/*
 * The op table: every operation a session plan may hold, once. Like
 * bubblewrap's SetupOp list and systemd-nspawn's mount_table, each op has a
 * name, an argument signature (one kind letter per argument, so the arity is
 * its length), the phase it runs in, the step it reports when it fails, and
 * flags. The plan parser (plan.c) validates a plan against this table before
 * anything is executed, `enclave-init --check` runs only that validation, and
 * `enclave-init --ops` prints the table, which is where the daemon's
 * TypeScript takes its step names from.
 *
 * Each op also names its arguments (space-separated, one per kind letter):
 * native/tools/gen-contract.mjs turns this table into the daemon's typed op
 * constructors and readers (src/native/contract.gen.ts), so TypeScript
 * neither copies it nor reads a plan's arguments by position.
 */
#ifndef ENCLAVE_OPS_H
#define ENCLAVE_OPS_H

#include "common.h"

/* Argument kinds: the letter, and what plan.c requires of such an argument. */
#define ENCLAVE_ARG_KINDS(X)                                                          \
  X('A', "an absolute clean path")                                                    \
  X('R', "a clean relative path")            /* below the new root */                 \
  X('T', "text")                             /* a link target */                      \
  X('N', "a decimal number")                                                          \
  X('M', "an octal mode")                    /* <= 07777 */                           \
  X('F', "mount flags (nosuid,nodev,noexec,ro or -)")                                 \
  X('D', "mount data")                       /* [a-z0-9_=,.], e.g. size=4k,mode=0555 */ \
  X('I', "an interface name")                                                         \
  X('E', "a MAC address")                                                             \
  X('P', "an IPv4 address")                                                           \
  X('G', "allow or deny")                                                             \
  X('H', "a DNS label")                      /* the hostname */                       \
  X('L', "an rlimit name")                                                            \
  X('V', "a number or unlimited")            /* an rlimit value */                    \
  X('K', "a capability mask within CAPS_KEEP_MAX, or CAPS_SYSTEM") /* hex, capabilities kept */ \
  X('X', "a hex seccomp program")            /* struct sock_filter, hex */            \
  X('B', "a blob index")                                                              \
  X('S', "an environment variable name")     /* [A-Za-z_][A-Za-z0-9_]* */             \
  X('W', "a variable value")                 /* any text, may be empty */

/* Phases, in the order they run. */
#define ENCLAVE_PHASES(X)                                                            \
  X(HOST, "host")     /* helper parent, host root, own mount ns, before clone */   \
  X(PARENT, "parent") /* helper parent, after clone, child still held */           \
  X(NET, "net")       /* child, in its namespaces, before the mounts */            \
  X(MOUNT, "mount")   /* child, building the new root (relative to it) */          \
  X(FINAL, "final")   /* child, after pivot_root: identity, limits, drops */ \
  X(EXEC, "exec")     /* the init, for every command it starts: environment */

#define ENCLAVE_PHASE_ENUM(id, name) PHASE_##id,
enum phase { ENCLAVE_PHASES(ENCLAVE_PHASE_ENUM) PHASE_COUNT };
#undef ENCLAVE_PHASE_ENUM

/* Flags. */
#define OP_ONCE 0x1           /* at most once per plan */
#define OP_REQUIRED 0x2       /* at least once per plan */
#define OP_ALLOW_NOTEXIST 0x4 /* a missing target is skipped, not an error */
#define OP_LAST 0x8           /* the last op of set-up: only exec-phase ops follow */
#define OP_FIRST 0x10         /* must be the plan's first op */

#define ENCLAVE_OPS(X)                                                                                                               \
  /* id          name            args      argument names                         phase         step            flags */              \
  X(ROOTFS,      "rootfs",       "AA",     "newroot source",                      PHASE_HOST,   STEP_ROOTFS,    OP_ONCE | OP_REQUIRED | OP_FIRST) \
  X(HIDE,        "hide",         "RD",     "path data",                           PHASE_HOST,   STEP_HIDE,      OP_ALLOW_NOTEXIST) /* D: a directory's empty tmpfs */ \
  X(BIND_FILE,   "bind-file",    "AR",     "source target",                       PHASE_MOUNT,  STEP_BIND_FILE, OP_ALLOW_NOTEXIST) /* source opened by the host phase */ \
  X(STAGE_VOLUMES, "stage-volumes", "",    "",                                    PHASE_HOST,   STEP_VOLUME,    OP_ONCE) /* a layered root's read-only volumes come by propagation, locked */ \
  X(CONTROL,     "control",      "A",      "path",                                PHASE_HOST,   STEP_CONTROL,   OP_ONCE | OP_REQUIRED) \
  X(CGROUP,      "cgroup",       "A",      "dir",                                 PHASE_PARENT, STEP_CGROUP,    0)                     \
  X(UID_MAP,     "uid-map",      "NNN",    "inside host count",                   PHASE_PARENT, STEP_UID_MAP,   OP_ONCE | OP_REQUIRED) \
  X(SETGROUPS,   "setgroups",    "G",      "mode",                                PHASE_PARENT, STEP_SETGROUPS, OP_ONCE | OP_REQUIRED) \
  X(GID_MAP,     "gid-map",      "NNN",    "inside host count",                   PHASE_PARENT, STEP_GID_MAP,   OP_ONCE | OP_REQUIRED) \
  X(VETH,        "veth",         "IIENI",  "hostIf peerIf mac mtu bridge",        PHASE_PARENT, STEP_VETH,      OP_ONCE)               \
  X(LAYER,       "layer",        "A",      "source",                              PHASE_PARENT, STEP_LAYER,     0)                     \
  X(VOLUME,      "volume",       "AF",     "source flags",                        PHASE_PARENT, STEP_VOLUME,    0) /* idmapped; F is ro or - */ \
  X(LOOPBACK,    "loopback",     "",       "",                                    PHASE_NET,    STEP_LOOPBACK,  OP_ONCE | OP_REQUIRED) \
  X(IPV4,        "ipv4",         "IPNP",   "ifname address prefix gateway",       PHASE_NET,    STEP_NETWORK,   OP_ONCE)               \
  X(UPPER,       "upper",        "D",      "data",                                PHASE_MOUNT,  STEP_UPPER,     OP_ONCE)               \
  X(ROOT,        "root",         "N",      "layer",                               PHASE_MOUNT,  STEP_ROOT,      OP_ONCE)               \
  X(OVERLAY,     "overlay",      "RN",     "at layer",                            PHASE_MOUNT,  STEP_OVERLAY,   0)                     \
  X(VOLUME_AT,   "volume-at",    "RN",     "at volume",                           PHASE_MOUNT,  STEP_VOLUME,    0) /* volume N on R (made if missing) */ \
  X(TMPFS,       "tmpfs",        "RFD",    "at flags data",                       PHASE_MOUNT,  STEP_TMPFS,     0)                     \
  X(MKDIR,       "mkdir",        "RM",     "path mode",                           PHASE_MOUNT,  STEP_MKDIR,     0)                     \
  X(SYMLINK,     "symlink",      "TR",     "target path",                         PHASE_MOUNT,  STEP_SYMLINK,   0)                     \
  X(BIND_DEV,    "bind-dev",     "RA",     "path source",                         PHASE_MOUNT,  STEP_BIND_DEV,  0)                     \
  X(DEV_NODE,    "dev-node",     "AR",     "source path",                         PHASE_MOUNT,  STEP_BIND_DEV,  0) /* TUN or FUSE only: opened by the host phase (the daemon's 0666 copy) */ \
  X(PROC,        "proc",         "RF",     "at flags",                            PHASE_MOUNT,  STEP_PROC,      OP_ONCE | OP_REQUIRED) \
  X(SYSFS,       "sysfs",        "RF",     "at flags",                            PHASE_MOUNT,  STEP_SYSFS,     OP_ONCE)               \
  X(DEVPTS,      "devpts",       "RFD",    "at flags data",                       PHASE_MOUNT,  STEP_DEVPTS,    OP_ONCE | OP_REQUIRED) \
  X(MQUEUE,      "mqueue",       "RF",     "at flags",                            PHASE_MOUNT,  STEP_MQUEUE,    OP_ONCE)               \
  X(LXCFS_FILE,  "lxcfs-file",   "AR",     "source target",                       PHASE_MOUNT,  STEP_LXCFS,     0) /* lxcfs's view of a /proc or /sys file, opened by the host phase */ \
  X(CGROUPFS,    "cgroupfs",     "RD",     "at controllers",                      PHASE_MOUNT,  STEP_CGROUPFS,  0) /* a v1 hierarchy from the session's cgroup ns: its own cgroup, read-only */ \
  X(CGROUP2FS,   "cgroup2fs",    "R",      "at",                                  PHASE_MOUNT,  STEP_CGROUPFS,  OP_ONCE) /* the same, of the v2 tree */ \
  X(CGROUPFS_RW, "cgroupfs-rw",  "RD",     "at controllers",                      PHASE_MOUNT,  STEP_CGROUPFS,  0) /* cgroupfs, writable: a system session's delegated cgroup (the daemon chose what it owns) */ \
  X(CGROUP2FS_RW, "cgroup2fs-rw", "R",     "at",                                  PHASE_MOUNT,  STEP_CGROUPFS,  OP_ONCE) /* the same, of the v2 tree */ \
  X(MASK,        "mask",         "RD",     "path data",                           PHASE_MOUNT,  STEP_MASK,      OP_ALLOW_NOTEXIST) /* D: a directory's empty tmpfs */ \
  X(WHITEOUT,    "whiteout",     "R",      "path",                                PHASE_MOUNT,  STEP_MASK,      0) /* hidden in the writable root: a whiteout in the upper of the layer it is in, made before that overlay is */ \
  X(READONLY,    "readonly",     "R",      "path",                                PHASE_MOUNT,  STEP_READONLY,  OP_ALLOW_NOTEXIST)     \
  X(FILE,        "file",         "RMNNB",  "path mode uid gid blob",              PHASE_MOUNT,  STEP_FILE,      0)                     \
  X(HOSTNAME,    "hostname",     "H",      "name",                                PHASE_FINAL,  STEP_HOSTNAME,  OP_ONCE | OP_REQUIRED) \
  X(RLIMIT,      "rlimit",       "LVV",    "resource soft hard",                  PHASE_FINAL,  STEP_RLIMIT,    0)                     \
  X(CAPS,        "capabilities", "K",      "keep",                                PHASE_FINAL,  STEP_CAPS,      OP_ONCE | OP_REQUIRED) \
  X(SECCOMP,     "seccomp",      "X",      "program",                             PHASE_FINAL,  STEP_SECCOMP,   OP_ONCE | OP_REQUIRED | OP_LAST) \
  X(ENV,         "env",          "SW",     "name value",                          PHASE_EXEC,   STEP_ENV,       0)                     \
  X(ENV_FILE,    "env-file",     "SA",     "name path",                           PHASE_EXEC,   STEP_ENV,       OP_ALLOW_NOTEXIST) \
  X(BOOT,        "boot",         "AD",     "init machineId",                      PHASE_EXEC,   STEP_BOOT,      OP_ONCE) /* --init systemd: what the boot verb starts (boot.c); D: the machine ID, 32 hex digits */

/*
 * The most a plan may keep (the workspace profile's set): CHOWN, DAC_OVERRIDE,
 * FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT
 * (sshd's privilege separation), SETFCAP.
 * The daemon chooses; this is the mechanism's own ceiling, so a plan can never
 * ask for SYS_ADMIN, NET_ADMIN, NET_RAW, MKNOD or the like.
 */
/*
 * The system profile's set, the one other value a plan may keep: every
 * capability up to CHECKPOINT_RESTORE (40), over the session's own
 * namespaces. Its securebits are left unset (drop_privileges): container
 * runtimes inside set keep-caps themselves.
 */
#define CAPS_SYSTEM ((1ULL << 41) - 1)
#define CAPS_KEEP_MAX ((1ULL << 0) | (1ULL << 1) | (1ULL << 3) | (1ULL << 4) | (1ULL << 5) | (1ULL << 6) | (1ULL << 7) | (1ULL << 8) | (1ULL << 10) | (1ULL << 18) | (1ULL << 31))

/* Idmapped layers a plan may stack (parent phase "layer" ops). */
#define MAX_LAYERS 8
#define MAX_VOLUMES 8
/* Where the init keeps the writable layer's root (below the smallest RLIMIT_NOFILE a plan may set). */
#define UPPER_KEEP_FD 63

#define ENCLAVE_OP_ENUM(id, name, args, argnames, phase, step, flags) OP_##id,
enum op_id { ENCLAVE_OPS(ENCLAVE_OP_ENUM) OP_COUNT };
#undef ENCLAVE_OP_ENUM

struct op_def {
  const char *name;
  const char *args;
  enum phase phase;
  enum step step;
  int flags;
};

extern const struct op_def op_defs[OP_COUNT];
extern const char *const phase_names[PHASE_COUNT];

#endif
