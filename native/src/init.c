/*
 * enclave-init: creates one session from its plan and becomes its PID 1.
 *
 * Input: the session plan on stdin (plan.h), built by the daemon
 * (src/isolation/plan.ts) and validated whole here before anything runs.
 * Output on stdout, one line: "ok\t<pid>\t<starttime>" or
 * "error\t<step>\t<errno>\t<detail>". Exit 0, or 64 + step on failure.
 *
 * The plan's phases run in this order:
 *  host   (helper parent, host root) private mount ns, read-only rootfs
 *         bind, hidden host paths, copies of per-session files and of
 *         lxcfs's files, the control socket -> clone(user, pid, mnt, net,
 *         uts, ipc), the child held
 *  parent cgroups, uid_map, setgroups, gid_map, veth, idmapped layers ->
 *         release the child, the layers passed with the go message
 *  net    (child) session root IDs, cgroup ns, lo and eth0 up
 *  mount  the root (from layers, with an upper), per-session files, tmpfs,
 *         /proc and /sys (lxcfs's files over some), the session's own
 *         cgroups, /dev, masks and read-only paths -> pivot_root
 *  final  hostname, rlimits, capabilities, non-dumpable, seccomp (last)
 * then the child reports ready and runs the session agent (agent.c).
 *
 * Why the rootfs is bound by the parent: in a mount ns owned by a new user
 * ns, mounts copied from the host are locked together, and the kernel
 * refuses a non-recursive bind of "/" (it could reveal what host submounts
 * cover). Host root binds it first, in a private mount ns of its own, so the
 * session gets "/" without /proc, /sys, /dev or any other host submount, and
 * what the host phase hides arrives locked: the session cannot undo it.
 */
#include "agent.h"
#include "common.h"
#include "harden.h"
#include "netlink.h"
#include "plan.h"
#include "procstat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static struct plan plan;
static char plan_buf[PLAN_MAX_BYTES + 1];
static size_t plan_len;
static struct bpf_blob filter;     /* decoded by the parent, inherited */
static int status_fd = 1;          /* where failures are reported */
static int listen_fd = -1;         /* the control socket, from the host phase */
static int rootfd = -1;            /* the new root, during the mount phase */
static int layer_fd[MAX_LAYERS];   /* idmapped read-only layers, from the parent */
static int nlayers;
static int volume_fd[MAX_VOLUMES]; /* idmapped volumes, from the parent */
static int nvolumes;
static int volumes_staged;         /* the read-only ones come by propagation (stage_volumes) */

/* Volume op `op` is attached at vN in the staging tmpfs, not passed as an fd. */
static int staged(const struct plan_op *op) { return volumes_staged && plan_volume_ro(op); }
static int upper_fd = -1;          /* the session's writable layer (a tmpfs), if any */
static int bind_fd[PLAN_MAX_OPS];  /* bind-file sources, opened by the host phase */
static unsigned long long keep_caps; /* capabilities kept (a profile that keeps some) */

static int send_go(int fd);
static ssize_t recv_go(int fd, char *go);

#define ARG(op, i) ((op)->arg[i])
#define FAIL(op, err, ...) fail_step(status_fd, op_defs[(op)->id].step, err, __VA_ARGS__)

static void read_plan(void) {
  for (;;) {
    ssize_t n = read(0, plan_buf + plan_len, PLAN_MAX_BYTES + 1 - plan_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_step(1, STEP_PLAN, errno, "read the plan from stdin");
    if (n == 0) break;
    plan_len += (size_t)n;
    if (plan_len > PLAN_MAX_BYTES) fail_step(1, STEP_PLAN, E2BIG, "plan larger than %d bytes", PLAN_MAX_BYTES);
  }
  char err[256];
  if (plan_parse(plan_buf, plan_len, &plan, err, sizeof err) < 0) fail_step(1, STEP_PLAN, EINVAL, "%s", err);
}

/* ---- paths below the new root, never following a symlink -------------- */

static int open_beneath(int dirfd, const char *rel, int flags) {
  struct open_how how = {
      .flags = (unsigned long long)(O_PATH | O_CLOEXEC | flags),
      .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
  };
  return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
}

static void fd_path(char *out, size_t len, int fd) { snprintf(out, len, "/proc/self/fd/%d", fd); }

/* Split "a/b/c" into the fd of "a/b" (beneath dirfd) and "c". */
static int open_parent(int dirfd, const char *rel, char *leaf, size_t leaflen) {
  char copy[PATH_MAX];
  size_t len = strlen(rel);
  if (len >= sizeof copy) return errno = ENAMETOOLONG, -1;
  memcpy(copy, rel, len + 1);
  char *slash = strrchr(copy, '/');
  const char *name = slash ? slash + 1 : copy;
  if (strlen(name) >= leaflen) return errno = ENAMETOOLONG, -1;
  memcpy(leaf, name, strlen(name) + 1);
  if (!slash) return fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
  *slash = '\0';
  return open_beneath(dirfd, copy, O_DIRECTORY);
}

static unsigned long mount_flags(const char *list) {
  unsigned long flags = 0;
  if (!strcmp(list, "-")) return 0;
  char copy[64]; /* the plan parser bounded it and allowed only these four words */
  snprintf(copy, sizeof copy, "%s", list);
  char *save = NULL;
  for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
    if (!strcmp(f, "nosuid")) flags |= MS_NOSUID;
    else if (!strcmp(f, "nodev")) flags |= MS_NODEV;
    else if (!strcmp(f, "noexec")) flags |= MS_NOEXEC;
    else if (!strcmp(f, "ro")) flags |= MS_RDONLY;
  }
  return flags;
}

static void mount_on(const struct plan_op *op, const char *rel, const char *fstype, unsigned long flags, const char *data) {
  int fd = open_beneath(rootfd, rel, O_DIRECTORY);
  if (fd < 0) FAIL(op, errno, "open mount target %s", rel);
  char target[64];
  fd_path(target, sizeof target, fd);
  if (mount(fstype, target, fstype, flags, data) < 0) FAIL(op, errno, "mount %s on %s", fstype, rel);
  close(fd);
}

enum cover { COVER_EMPTY, COVER_SELF, COVER_SOURCE };

/*
 * The one open -> mount -> reopen -> remount idiom: cover rel with an empty
 * read-only thing (a directory gets an empty tmpfs of the plan's data, a
 * file /dev/null), with a read-only bind of itself, or with a read-only bind
 * of a host file (source). The fd pins exactly what was resolved beneath the
 * root; after the bind, the path is resolved again, because the new mount
 * sits on top of the old fd. Read-only, nosuid, nodev and noexec are what
 * the three ops mean, not a choice of the plan's.
 */
static void cover(const struct plan_op *op, const char *rel, enum cover how, const char *arg) {
  const char *source = how == COVER_SOURCE ? arg : NULL, *empty_data = how == COVER_EMPTY ? arg : NULL;
  int fd = open_beneath(rootfd, rel, 0);
  if (fd < 0 && errno == ENOENT && (op_defs[op->id].flags & OP_ALLOW_NOTEXIST)) return;
  if (fd < 0) FAIL(op, errno, "open %s", rel);
  char target[64];
  fd_path(target, sizeof target, fd);
  if (how == COVER_EMPTY) {
    struct stat st;
    if (fstat(fd, &st) < 0) FAIL(op, errno, "stat %s", rel);
    int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, empty_data)
                                 : mount("/dev/null", target, NULL, MS_BIND, NULL);
    if (rc < 0) FAIL(op, errno, "cover %s", rel);
    close(fd);
    return;
  }
  /* A mount of the session's own (its /sys/fs/cgroup tmpfs) is made
   * read-only in place; anything else is first bound onto itself. */
  struct statx sx;
  int own_mount = how == COVER_SELF && statx(fd, "", AT_EMPTY_PATH, 0, &sx) == 0 && (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
                  (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
  if (!own_mount) {
    if (mount(how == COVER_SELF ? target : source, target, NULL, MS_BIND | (how == COVER_SELF ? MS_REC : 0), NULL) < 0)
      FAIL(op, errno, "bind %s", how == COVER_SELF ? rel : source);
    close(fd);
    if ((fd = open_beneath(rootfd, rel, 0)) < 0) FAIL(op, errno, "reopen %s", rel);
    fd_path(target, sizeof target, fd);
  }
  if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
    FAIL(op, errno, "remount %s read-only", rel);
  close(fd);
}

/* ---- host phase: helper parent, host root ----------------------------- */

/* Read-only volumes come to a layered root's child by propagation, not as
 * fds: the kernel locks the flags (read-only, nosuid, nodev) of a mount
 * propagated into a namespace of a less privileged user namespace, and a
 * clone keeps them, so not even a root that may mount (system) can remount
 * one writable. A tmpfs over the new root (a layered root does not read
 * what is there), shared before the clone, so the child's copy is its
 * slave; the parent phase attaches each such idmapped volume at vN in it
 * (N: its index among the volumes), and the child clones vN from its copy
 * before it builds the root over it. Read-write volumes still come as fds,
 * unlocked, as before: a runtime inside may remount their binds with flags
 * of its own (runc adds nodev or nosuid without restating the others). */
static void stage_volumes(const struct plan_op *op) {
  const char *newroot = ARG(plan_find(&plan, OP_ROOTFS), 0);
  if (mount("enclave-volumes", newroot, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=16k,nr_inodes=64,mode=0711") < 0) FAIL(op, errno, "the volumes' staging tmpfs");
  if (mount(NULL, newroot, NULL, MS_SHARED, NULL) < 0) FAIL(op, errno, "make the volumes' staging tmpfs shared");
  volumes_staged = 1;
  int n = 0;
  for (int i = 0; i < plan.nops; i++) {
    if (plan.op[i].id != OP_VOLUME) continue;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/v%d", newroot, n++);
    if (staged(&plan.op[i]) && mkdir(dir, 0700) < 0) FAIL(op, errno, "mkdir %s", dir);
  }
}

static void op_rootfs(const struct plan_op *op) {
  const char *newroot = ARG(op, 0), *rootfs = ARG(op, 1);
  if (unshare(CLONE_NEWNS) < 0) fail_step(1, STEP_UNSHARE_MNT, errno, "unshare(CLONE_NEWNS)");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail_step(1, STEP_UNSHARE_MNT, errno, "make / rprivate");
  /* Non-recursive: host submounts (/proc, /sys, /dev, ...) stay behind. */
  if (mount(rootfs, newroot, NULL, MS_BIND, NULL) < 0) FAIL(op, errno, "bind %s", rootfs);
  if (mount(NULL, newroot, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) FAIL(op, errno, "remount %s read-only", rootfs);
  if ((rootfd = open(newroot, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) FAIL(op, errno, "open %s", newroot);
}

/* The listening end of the control channel: bound by host root in the host
 * netns, so it is not in the session's /proc/net/unix, at a path below the
 * 0700 state dir, which the session has masked. The session init inherits
 * it across clone; the daemon connects to the path. */
static void op_control(const struct plan_op *op) {
  const char *path = ARG(op, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) FAIL(op, ENAMETOOLONG, "control socket path %s", path);
  strcpy(sa.sun_path, path);
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) FAIL(op, errno, "socket");
  if (unlink(path) < 0 && errno != ENOENT) FAIL(op, errno, "remove stale %s", path);
  mode_t old = umask(0177);
  int rc = bind(s, (struct sockaddr *)&sa, sizeof sa);
  umask(old);
  if (rc < 0) FAIL(op, errno, "bind %s", path);
  if (listen(s, 8) < 0) FAIL(op, errno, "listen %s", path);
  listen_fd = s;
}

/* bind-file SRC TARGET: host root takes a read-only copy of the host file
 * now; the child attaches it once its root is built (mount phase), since the
 * session's uid cannot walk to SRC. */
static int open_bind_source(const struct plan_op *op) {
  int fd = open_tree(AT_FDCWD, ARG(op, 0), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return -1;
  if (fd < 0) FAIL(op, errno, "open_tree %s", ARG(op, 0));
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) FAIL(op, errno, "make %s read-only", ARG(op, 0));
  return fd;
}

/* lxcfs-file SRC TARGET: as bind-file, host root takes a read-only copy of
 * one file of the daemon's lxcfs mount now, and the child binds it over a
 * file of its /proc or /sys once they are mounted. Nothing here is optional:
 * a missing source, or one that is not on a FUSE filesystem (lxcfs is not
 * mounted there), fails the session, so it never starts with the host's
 * numbers while the plan says it has its own. */
static int open_lxcfs_source(const struct plan_op *op) {
  int fd = open_tree(AT_FDCWD, ARG(op, 0), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0) FAIL(op, errno, "open_tree %s (is lxcfs serving there?)", ARG(op, 0));
  struct statfs sf;
  if (fstatfs(fd, &sf) < 0) FAIL(op, errno, "statfs %s", ARG(op, 0));
  if (sf.f_type != FUSE_SUPER_MAGIC) FAIL(op, EINVAL, "%s is not on a FUSE filesystem: lxcfs is not mounted there", ARG(op, 0));
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) FAIL(op, errno, "make %s read-only", ARG(op, 0));
  return fd;
}

/* dev-node SRC PATH: the system profile's TUN and FUSE, and never another
 * device: host root takes a copy of the daemon's node (nosuid, noexec; not
 * nodev, or it would not open), the child attaches it in /dev. */
static int open_dev_node(const struct plan_op *op) {
  struct stat st;
  if (stat(ARG(op, 0), &st) < 0) FAIL(op, errno, "stat %s", ARG(op, 0));
  unsigned maj = major(st.st_rdev), min = minor(st.st_rdev);
  if (!S_ISCHR(st.st_mode) || maj != 10 || (min != 200 && min != 229)) FAIL(op, EPERM, "%s is not /dev/net/tun or /dev/fuse (char 10:200, 10:229)", ARG(op, 0));
  int fd = open_tree(AT_FDCWD, ARG(op, 0), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0) FAIL(op, errno, "open_tree %s", ARG(op, 0));
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, .attr_clr = MOUNT_ATTR_NODEV};
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) FAIL(op, errno, "set the attributes of %s", ARG(op, 0));
  return fd;
}

static void run_host_phase(void) {
  for (int i = 0; i < plan.nops; i++) {
    const struct plan_op *op = &plan.op[i];
    switch (op->id) {
      case OP_ROOTFS: op_rootfs(op); break;
      case OP_HIDE: cover(op, ARG(op, 0), COVER_EMPTY, ARG(op, 1)); break;
      case OP_STAGE_VOLUMES: stage_volumes(op); break;
      case OP_BIND_FILE: bind_fd[i] = open_bind_source(op); break;
      case OP_LXCFS_FILE: bind_fd[i] = open_lxcfs_source(op); break;
      case OP_DEV_NODE: bind_fd[i] = open_dev_node(op); break;
      case OP_CONTROL: op_control(op); break;
      default: break;
    }
  }
  /* The child starts with its cwd on the prepared root. */
  if (fchdir(rootfd) < 0) fail_step(1, STEP_ROOTFS, errno, "chdir to the new root");
  close(rootfd);
  rootfd = -1;
}

/* ---- parent phase: the child exists, still held ----------------------- */

/* layer SRC: a read-only copy of SRC's mount, idmapped into the session's
 * user namespace (host 0..N-1 shown as the session's 0..N-1), so the
 * session's root owns the layer's root-owned files without a chown of
 * anything. Only host root can make it; the child attaches it (build_root). */
static int idmapped_copy(const struct plan_op *op, int userns, uint64_t set, uint64_t clr) {
  int fd = open_tree(AT_FDCWD, ARG(op, 0), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0) FAIL(op, errno, "open_tree %s", ARG(op, 0));
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | set, .attr_clr = clr, .userns_fd = (unsigned)userns};
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
    FAIL(op, errno, "idmap %s into the session (needs a filesystem with idmapped mounts)", ARG(op, 0));
  return fd;
}

static void op_layer(const struct plan_op *op, int userns) {
  if (nlayers == MAX_LAYERS) FAIL(op, E2BIG, "more than %d layers", MAX_LAYERS);
  layer_fd[nlayers++] = idmapped_copy(op, userns, MOUNT_ATTR_RDONLY, 0);
}

/* volume SRC ro|-: the volume's host mount (a loop-mounted ext4 the daemon
 * keeps, nosuid,nodev,noexec on the host) idmapped like a layer, so the
 * same on-disk owners show in every session whatever its host range; exec
 * is allowed in the copy, suid and devices never; "ro" holds even for the
 * session's root: staged (a layered root), the copy propagates in with its
 * flags locked, so even a root that may mount (system) cannot remount it;
 * else it comes as an fd, unlocked, where seccomp denies every mount call
 * (a system session on the host's root takes no "ro" volume). */
static void op_volume(const struct plan_op *op, int userns) {
  if (nvolumes == MAX_VOLUMES) FAIL(op, E2BIG, "more than %d volumes", MAX_VOLUMES);
  int ro = plan_volume_ro(op);
  volume_fd[nvolumes++] = idmapped_copy(op, userns, ro ? MOUNT_ATTR_RDONLY : 0, MOUNT_ATTR_NOEXEC | (ro ? 0 : MOUNT_ATTR_RDONLY));
}

static void write_proc(const struct plan_op *op, pid_t pid, const char *file, const char *data) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
  if (write_file(path, data) < 0) FAIL(op, errno, "write %s", path);
}

/* veth HOSTIF PEERIF MAC MTU BRIDGE: the peer is born in the child's netns. */
static void op_veth(const struct plan_op *op, pid_t pid) {
  unsigned v[6];
  unsigned char mac[6];
  sscanf(ARG(op, 2), "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]);
  for (int i = 0; i < 6; i++) mac[i] = (unsigned char)v[i];
  long long mtu = parse_u64(ARG(op, 3));
  if (mtu < 68 || mtu > 65535) FAIL(op, EINVAL, "veth MTU %lld", mtu);
  int nl = nl_open();
  if (nl < 0) FAIL(op, -nl, "netlink socket");
  int rc = nl_create_veth(nl, ARG(op, 0), ARG(op, 1), pid, mac, (int)mtu);
  if (rc < 0) FAIL(op, -rc, "create veth %s", ARG(op, 0));
  int idx = (int)if_nametoindex(ARG(op, 0)), br = (int)if_nametoindex(ARG(op, 4));
  if (!idx || !br) FAIL(op, ENODEV, "find %s / bridge %s", ARG(op, 0), ARG(op, 4));
  if ((rc = disable_ipv6(ARG(op, 0))) < 0) FAIL(op, -rc, "disable IPv6 on %s", ARG(op, 0));
  if ((rc = nl_link_up(nl, idx, br)) < 0) FAIL(op, -rc, "attach %s to %s", ARG(op, 0), ARG(op, 4));
  if ((rc = nl_brport_isolate(nl, idx)) < 0) FAIL(op, -rc, "isolate bridge port %s", ARG(op, 0));
  close(nl);
}

static void run_parent_phase(pid_t pid) {
  char buf[96];
  snprintf(buf, sizeof buf, "%d", pid);
  for (int i = 0; i < plan.nops; i++) {
    const struct plan_op *op = &plan.op[i];
    switch (op->id) {
      case OP_CGROUP: {
        char procs[PATH_MAX];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", ARG(op, 0));
        if (write_file(procs, buf) < 0) FAIL(op, errno, "join %s", ARG(op, 0));
        break;
      }
      case OP_UID_MAP:
      case OP_GID_MAP: {
        char map[96];
        snprintf(map, sizeof map, "%s %s %s\n", ARG(op, 0), ARG(op, 1), ARG(op, 2));
        write_proc(op, pid, op->id == OP_UID_MAP ? "uid_map" : "gid_map", map);
        break;
      }
      case OP_SETGROUPS: write_proc(op, pid, "setgroups", ARG(op, 0)); break;
      case OP_VETH: op_veth(op, pid); break;
      case OP_LAYER:
      case OP_VOLUME: {
        /* After the ID maps: an idmapped mount takes the namespace's maps. */
        char ns[64];
        snprintf(ns, sizeof ns, "/proc/%d/ns/user", pid);
        int userns = open(ns, O_RDONLY | O_CLOEXEC);
        if (userns < 0) FAIL(op, errno, "open %s", ns);
        if (op->id == OP_LAYER) op_layer(op, userns);
        else op_volume(op, userns);
        close(userns);
        if (staged(op)) {
          /* Propagates, locked, into the child's copy of the staging tmpfs. */
          char at[PATH_MAX];
          snprintf(at, sizeof at, "%s/v%d", ARG(plan_find(&plan, OP_ROOTFS), 0), nvolumes - 1);
          if (move_mount(volume_fd[nvolumes - 1], "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) < 0) FAIL(op, errno, "stage volume at %s", at);
          close(volume_fd[nvolumes - 1]);
          volume_fd[nvolumes - 1] = -1;
        }
        break;
      }
      default: break;
    }
  }
}

/* ---- child: net, mount and final phases ------------------------------- */

static void op_loopback(const struct plan_op *op) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) FAIL(op, errno, "socket");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) FAIL(op, errno, "get lo flags");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) FAIL(op, errno, "set lo up");
  close(s);
}

/* ipv4 IFNAME ADDR PREFIX GATEWAY, in the session's own netns. */
static void op_ipv4(const struct plan_op *op) {
  struct in_addr addr, gw;
  long long prefix = parse_u64(ARG(op, 2));
  inet_pton(AF_INET, ARG(op, 1), &addr);
  inet_pton(AF_INET, ARG(op, 3), &gw);
  if (prefix < 1 || prefix > 32) FAIL(op, EINVAL, "prefix %lld", prefix);
  int rc;
  /* IPv6 off before the link comes up, so it never gets an address. */
  if ((rc = disable_ipv6("default")) < 0 || (rc = disable_ipv6(ARG(op, 0))) < 0) FAIL(op, -rc, "disable IPv6");
  int nl = nl_open();
  if (nl < 0) FAIL(op, -nl, "netlink socket");
  int idx = (int)if_nametoindex(ARG(op, 0));
  if (!idx) FAIL(op, ENODEV, "no %s in the session", ARG(op, 0));
  if ((rc = nl_addr_add(nl, idx, addr.s_addr, (int)prefix)) < 0) FAIL(op, -rc, "address %s/%lld", ARG(op, 1), prefix);
  if ((rc = nl_link_up(nl, idx, 0)) < 0) FAIL(op, -rc, "set %s up", ARG(op, 0));
  /* A /32 address reaches everything, other sessions included, through the
   * gateway, where the firewall answers at once; nothing is on-link but it. */
  if ((rc = nl_route_link(nl, gw.s_addr, idx)) < 0 && rc != -EEXIST) FAIL(op, -rc, "route to gateway %s", ARG(op, 3));
  if ((rc = nl_route_default(nl, gw.s_addr, idx)) < 0) FAIL(op, -rc, "default route via %s", ARG(op, 3));
  close(nl);
}

static void op_mkdir(const struct plan_op *op) {
  char leaf[NAME_MAX + 1];
  const char *rel = ARG(op, 0);
  mode_t mode = (mode_t)strtol(ARG(op, 1), NULL, 8);
  int dfd = open_parent(rootfd, rel, leaf, sizeof leaf);
  if (dfd < 0) FAIL(op, errno, "open parent of %s", rel);
  if (mkdirat(dfd, leaf, mode) < 0 && errno != EEXIST) FAIL(op, errno, "mkdir %s", rel);
  /* umask must not narrow the mode the plan asked for. */
  int fd = open_beneath(rootfd, rel, O_DIRECTORY);
  if (fd < 0) FAIL(op, errno, "open %s", rel);
  int rfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0 || fchmod(rfd, mode) < 0) FAIL(op, errno, "chmod %s", rel);
  close(rfd);
  close(fd);
  close(dfd);
}

static void op_symlink(const struct plan_op *op) {
  char leaf[NAME_MAX + 1];
  int dfd = open_parent(rootfd, ARG(op, 1), leaf, sizeof leaf);
  if (dfd < 0) FAIL(op, errno, "open parent of %s", ARG(op, 1));
  if (symlinkat(ARG(op, 0), dfd, leaf) < 0) FAIL(op, errno, "symlink %s", ARG(op, 1));
  close(dfd);
}

/* A new empty file at rel beneath the root, for a device node to be
 * mounted on (no mknod in a user namespace): its parent's fd, its name in leaf. */
static int mount_point_file(const struct plan_op *op, const char *rel, char leaf[NAME_MAX + 1]) {
  int dfd = open_parent(rootfd, rel, leaf, NAME_MAX + 1);
  if (dfd < 0) FAIL(op, errno, "open parent of %s", rel);
  int ffd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (ffd < 0) FAIL(op, errno, "create %s", rel);
  close(ffd);
  return dfd;
}

/* bind-dev: the host's node bound onto an empty file. */
static void op_bind_dev(const struct plan_op *op) {
  char leaf[NAME_MAX + 1], target[64];
  const char *rel = ARG(op, 0);
  close(mount_point_file(op, rel, leaf));
  int fd = open_beneath(rootfd, rel, 0);
  if (fd < 0) FAIL(op, errno, "open %s", rel);
  fd_path(target, sizeof target, fd);
  if (mount(ARG(op, 1), target, NULL, MS_BIND, NULL) < 0) FAIL(op, errno, "bind %s", ARG(op, 1));
  close(fd);
}

/* dev-node: the host phase's copy, on an empty file made in /dev. */
static void op_dev_node(const struct plan_op *op, int fd) {
  char leaf[NAME_MAX + 1];
  const char *rel = ARG(op, 1);
  int dfd = mount_point_file(op, rel, leaf);
  if (move_mount(fd, "", dfd, leaf, MOVE_MOUNT_F_EMPTY_PATH) < 0) FAIL(op, errno, "attach %s", rel);
  close(dfd);
  close(fd);
}

/* file PATH MODE UID GID BLOB: content from the plan's blobs (never argv,
 * never the host disk), written beneath the root into a tmpfs of the
 * session, with its mode and owner set before it gets its name. */
static void op_file(const struct plan_op *op) {
  char leaf[NAME_MAX + 1];
  const char *rel = ARG(op, 0);
  int blob = atoi(ARG(op, 4));
  unsigned mode = (unsigned)strtol(ARG(op, 1), NULL, 8);
  long long uid = parse_u64(ARG(op, 2)), gid = parse_u64(ARG(op, 3));
  int dfd = open_parent(rootfd, rel, leaf, sizeof leaf);
  if (dfd < 0) FAIL(op, errno, "open parent of %s", rel);
  int rdfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rdfd < 0) FAIL(op, errno, "open parent of %s", rel);
  if (replace_file_at(rdfd, leaf, mode, (unsigned)uid, (unsigned)gid, plan.blob[blob], plan.blob_len[blob]) < 0) FAIL(op, errno, "write %s", rel);
  close(rdfd);
  close(dfd);
}

/* ---- the layered root: idmapped read-only layers, an optional upper ----- */

/* A detached tmpfs from "k=v,k=v" data (the plan parser allowed [a-z0-9_=,.]). */
static int fsmount_tmpfs(const char *data, unsigned attrs) {
  int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
  if (fs < 0) return -1;
  char copy[256], *save = NULL;
  snprintf(copy, sizeof copy, "%s", data);
  for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(kv, '=');
    if (eq) *eq = '\0';
    if (fsconfig(fs, eq ? FSCONFIG_SET_STRING : FSCONFIG_SET_FLAG, kv, eq ? eq + 1 : NULL, 0) < 0) goto fail;
  }
  if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) goto fail;
  int m = fsmount(fs, FSMOUNT_CLOEXEC, attrs);
  int saved = errno;
  close(fs);
  errno = saved;
  return m;
fail:
  saved = errno;
  close(fs);
  errno = saved;
  return -1;
}

/* The overlay a path below the root is in: the longest "overlay" op's path
 * that is it or a parent of it ("" for the root layer). */
static const char *overlay_of(const char *rel) {
  const char *best = "";
  for (int i = 0; i < plan.nops; i++) {
    if (plan.op[i].id != OP_OVERLAY) continue;
    const char *at = ARG(&plan.op[i], 0);
    size_t k = strlen(at);
    if (!strncmp(rel, at, k) && (rel[k] == '/' || rel[k] == '\0') && k > strlen(best)) best = at;
  }
  return best;
}

/*
 * whiteout PATH: PATH of layer n (mounted at AT) hidden by a whiteout in
 * the upper directory UP, made before the overlay is, with the parents it
 * needs copied from the layer (mode and owner), so the merged directories
 * look as before. Unlike a mask mount, which a root that may unmount (the
 * system profile) could lift, a whiteout is part of the filesystem: the
 * session reaches the upper only through the overlay, which hides its
 * whiteouts and its own xattrs. Nothing in the layer there: nothing to do.
 */
static void apply_whiteouts(int n, const char *at, int up) {
  for (int i = 0; i < plan.nops; i++) {
    const struct plan_op *w = &plan.op[i];
    if (w->id != OP_WHITEOUT || strcmp(overlay_of(ARG(w, 0)), at)) continue;
    const char *sub = *at ? ARG(w, 0) + strlen(at) : ARG(w, 0);
    if (*sub == '/') sub++;
    if (!*sub) FAIL(w, EINVAL, "a whiteout cannot hide a whole layer (%s)", ARG(w, 0));
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", sub);
    int dfd = fcntl(up, F_DUPFD_CLOEXEC, 3);
    if (dfd < 0) FAIL(w, errno, "dup the upper directory");
    struct stat st;
    for (char *c = path;; c++) {
      if (*c != '/' && *c != '\0') continue;
      char saved = *c;
      *c = '\0';
      const char *leaf = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
      if (fstatat(layer_fd[n], path, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno != ENOENT) FAIL(w, errno, "stat %s in layer %d", path, n);
        break;
      }
      if (saved == '\0') {
        if (mknodat(dfd, leaf, S_IFCHR | 0000, 0) < 0 && errno != EEXIST) FAIL(w, errno, "whiteout %s", ARG(w, 0));
        break;
      }
      if (!S_ISDIR(st.st_mode)) break; /* nothing of the layer is below a non-directory */
      if (mkdirat(dfd, leaf, 0700) < 0 && errno != EEXIST) FAIL(w, errno, "upper directory %s", path);
      if (fchownat(dfd, leaf, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 || fchmodat(dfd, leaf, st.st_mode & 07777, 0) < 0)
        FAIL(w, errno, "give upper directory %s its layer's owner and mode", path);
      int next = openat(dfd, leaf, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0) FAIL(w, errno, "open upper directory %s", path);
      close(dfd);
      dfd = next;
      *c = saved;
    }
    close(dfd);
  }
}

/* The mount for one part of the root: with an upper layer, an overlay of
 * layer n with upper/NAME (charged to the session's memory cgroup, capped by
 * the tmpfs size); without, a read-only copy of the layer itself. AT is
 * where it goes ("" for the root), for its whiteouts. */
static int layer_mount(const struct plan_op *op, int n, const char *name, const char *at) {
  if (upper_fd < 0) {
    int m = open_tree(layer_fd[n], "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (m < 0) FAIL(op, errno, "copy layer %d", n);
    return m;
  }
  char work[NAME_MAX + 1];
  snprintf(work, sizeof work, "%s.work", name);
  /* The upper directory's mode is the merged root's: exactly 0755. */
  if ((mkdirat(upper_fd, name, 0755) < 0 && errno != EEXIST) || fchmodat(upper_fd, name, 0755, 0) < 0 || (mkdirat(upper_fd, work, 0700) < 0 && errno != EEXIST))
    FAIL(op, errno, "make the upper directories of %s", name);
  int up = openat(upper_fd, name, O_PATH | O_DIRECTORY | O_CLOEXEC), wk = openat(upper_fd, work, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (up < 0 || wk < 0) FAIL(op, errno, "open the upper directories of %s", name);
  apply_whiteouts(n, at, up);
  int fs = fsopen("overlay", FSOPEN_CLOEXEC);
  if (fs < 0) FAIL(op, errno, "fsopen overlay");
  /* userxattr: overlay's own xattrs go to user.overlay.*, the only ones a
   * mount in a user namespace may write. */
  if (fsconfig(fs, FSCONFIG_SET_FD, "lowerdir+", NULL, layer_fd[n]) < 0 || fsconfig(fs, FSCONFIG_SET_FD, "upperdir", NULL, up) < 0 ||
      fsconfig(fs, FSCONFIG_SET_FD, "workdir", NULL, wk) < 0 || fsconfig(fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0 ||
      fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
    int saved = errno;
    char log[256] = "";
    ssize_t k = read(fs, log, sizeof log - 1);
    log[k > 0 ? k - (log[k - 1] == '\n') : 0] = '\0';
    FAIL(op, saved, "overlay for %s: %s", name, log);
  }
  int m = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV);
  if (m < 0) FAIL(op, errno, "fsmount overlay for %s", name);
  close(fs);
  close(up);
  close(wk);
  return m;
}

/*
 * Builds the root from the parent's layers: a private staging tmpfs on top
 * of the new-root directory holds each layer attached (overlay clones its
 * layers, and only from mounts of our own namespace), and the root mount,
 * which pivot_root then makes "/". The staging tmpfs goes with the old root.
 */
static void build_root(void) {
  const struct plan_op *root = plan_find(&plan, OP_ROOT), *upper = plan_find(&plan, OP_UPPER);
  int staging = fsmount_tmpfs("size=16k,nr_inodes=32,mode=0700", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  if (staging < 0) FAIL(root, errno, "staging tmpfs");
  if (move_mount(staging, "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH) < 0) FAIL(root, errno, "attach the staging tmpfs");
  for (int i = 0; i < nlayers; i++) {
    char name[16];
    snprintf(name, sizeof name, "l%d", i);
    if (mkdirat(staging, name, 0700) < 0) FAIL(root, errno, "staging directory %s", name);
    if (move_mount(layer_fd[i], "", staging, name, MOVE_MOUNT_F_EMPTY_PATH) < 0) FAIL(root, errno, "attach layer %d", i);
  }
  /* Fail closed: whiteouts live in the upper, so without one nothing would be hidden. */
  const struct plan_op *w = plan_find(&plan, OP_WHITEOUT);
  if (w && !upper) FAIL(w, EINVAL, "whiteouts need a writable root");
  if (upper && (upper_fd = fsmount_tmpfs(ARG(upper, 0), MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)) < 0)
    FAIL(upper, errno, "the writable layer's tmpfs (%s)", ARG(upper, 0));
  int m = layer_mount(root, (int)parse_u64(ARG(root, 0)), "root", "");
  if (mkdirat(staging, "root", 0755) < 0) FAIL(root, errno, "staging directory root");
  if (move_mount(m, "", staging, "root", MOVE_MOUNT_F_EMPTY_PATH) < 0) FAIL(root, errno, "attach the root");
  if (fchdir(m) < 0) FAIL(root, errno, "enter the root");
  close(m);
  close(staging);
}

/* overlay PATH N: a layer (overlaid when there is an upper) mounted on PATH. */
static void op_overlay(const struct plan_op *op) {
  char name[NAME_MAX + 1];
  snprintf(name, sizeof name, "%s", ARG(op, 0));
  for (char *c = name; *c; c++)
    if (*c == '/') *c = '_';
  int m = layer_mount(op, (int)parse_u64(ARG(op, 1)), name, ARG(op, 0));
  int target = open_beneath(rootfd, ARG(op, 0), O_DIRECTORY);
  if (target < 0) FAIL(op, errno, "open %s", ARG(op, 0));
  if (move_mount(m, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) FAIL(op, errno, "mount on %s", ARG(op, 0));
  close(target);
  close(m);
}

/* volume-at PATH N: volume N on PATH, whose missing directories are made
 * (0755, in the writable root or a volume; a read-only root refuses). */
static void op_volume_at(const struct plan_op *op) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s", ARG(op, 0));
  for (char *c = path;; c++) {
    if (*c != '/' && *c != '\0') continue;
    char saved = *c;
    *c = '\0';
    char leaf[NAME_MAX + 1];
    int dfd = open_parent(rootfd, path, leaf, sizeof leaf);
    if (dfd < 0) FAIL(op, errno, "open the parent of %s", path);
    if (mkdirat(dfd, leaf, 0755) < 0 && errno != EEXIST) FAIL(op, errno, "make the mount point %s", path);
    close(dfd);
    *c = saved;
    if (saved == '\0') break;
  }
  int target = open_beneath(rootfd, ARG(op, 0), O_DIRECTORY);
  if (target < 0) FAIL(op, errno, "open %s", ARG(op, 0));
  long long n = parse_u64(ARG(op, 1));
  if (move_mount(volume_fd[n], "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) FAIL(op, errno, "mount volume %lld on %s", n, ARG(op, 0));
  close(target);
  close(volume_fd[n]);
  volume_fd[n] = -1;
}

/* bind-file: the host phase's read-only copy, on a file of the built root. */
static void op_bind_file(const struct plan_op *op, int fd) {
  if (fd < 0) return; /* the host has no such file */
  int target = open_beneath(rootfd, ARG(op, 1), 0);
  if (target < 0 && errno == ENOENT) return;
  if (target < 0) FAIL(op, errno, "open %s", ARG(op, 1));
  if (move_mount(fd, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) FAIL(op, errno, "bind %s on %s", ARG(op, 0), ARG(op, 1));
  close(target);
  close(fd);
}

/* lxcfs-file: the host phase's copy over a file of /proc or /sys, which
 * must be there (no file, no session). */
static void op_lxcfs_file(const struct plan_op *op, int fd) {
  int target = open_beneath(rootfd, ARG(op, 1), 0);
  if (target < 0) FAIL(op, errno, "open %s", ARG(op, 1));
  if (move_mount(fd, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) FAIL(op, errno, "bind %s on %s", ARG(op, 0), ARG(op, 1));
  close(target);
  close(fd);
}

/* cgroupfs / cgroup2fs: mounted after unshare(CLONE_NEWCGROUP), so the
 * kernel roots the view at the session's own cgroup of that hierarchy and
 * nothing above or beside it is reachable. Read-only (and nosuid, nodev,
 * noexec) is what the op means: a session reads its limits, never writes
 * them (the files are host root's, unmapped in the session, besides). */
#define CGROUP_VIEW_FLAGS (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
/* The -rw ops: a system session's delegated view. Writable as a mount; what
 * it may write is what the daemon chowned to its root (its directory,
 * cgroup.procs and the like), never its limit files, which stay host root's. */
#define CGROUP_DELEGATED_FLAGS (MS_NOSUID | MS_NODEV | MS_NOEXEC)

/* The blobs (secrets) are on disk in the session now: not kept in memory. */
static void forget_blobs(void) {
  for (int i = 0; i < plan.nblobs; i++) explicit_bzero((void *)plan.blob[i], plan.blob_len[i]);
}

static void run_child_phase(enum phase phase) {
  for (int i = 0; i < plan.nops; i++) {
    const struct plan_op *op = &plan.op[i];
    if (op_defs[op->id].phase != phase) continue;
    switch (op->id) {
      case OP_LOOPBACK: op_loopback(op); break;
      case OP_IPV4: op_ipv4(op); break;
      case OP_TMPFS: mount_on(op, ARG(op, 0), "tmpfs", mount_flags(ARG(op, 1)), ARG(op, 2)); break;
      case OP_MKDIR: op_mkdir(op); break;
      case OP_SYMLINK: op_symlink(op); break;
      case OP_BIND_DEV: op_bind_dev(op); break;
      case OP_DEV_NODE: op_dev_node(op, bind_fd[i]); break;
      case OP_PROC: mount_on(op, ARG(op, 0), "proc", mount_flags(ARG(op, 1)), NULL); break;
      case OP_SYSFS: mount_on(op, ARG(op, 0), "sysfs", mount_flags(ARG(op, 1)), NULL); break;
      case OP_DEVPTS: mount_on(op, ARG(op, 0), "devpts", mount_flags(ARG(op, 1)), ARG(op, 2)); break;
      case OP_MQUEUE: mount_on(op, ARG(op, 0), "mqueue", mount_flags(ARG(op, 1)), NULL); break;
      case OP_MASK: cover(op, ARG(op, 0), COVER_EMPTY, ARG(op, 1)); break;
      case OP_READONLY: cover(op, ARG(op, 0), COVER_SELF, NULL); break;
      case OP_FILE: op_file(op); break;
      case OP_OVERLAY: op_overlay(op); break;
      case OP_VOLUME_AT: op_volume_at(op); break;
      case OP_BIND_FILE: op_bind_file(op, bind_fd[i]); break;
      case OP_LXCFS_FILE: op_lxcfs_file(op, bind_fd[i]); break;
      case OP_CGROUPFS: mount_on(op, ARG(op, 0), "cgroup", CGROUP_VIEW_FLAGS, ARG(op, 1)); break;
      case OP_CGROUP2FS: mount_on(op, ARG(op, 0), "cgroup2", CGROUP_VIEW_FLAGS, NULL); break;
      case OP_CGROUPFS_RW: mount_on(op, ARG(op, 0), "cgroup", CGROUP_DELEGATED_FLAGS, ARG(op, 1)); break;
      case OP_CGROUP2FS_RW: mount_on(op, ARG(op, 0), "cgroup2", CGROUP_DELEGATED_FLAGS, NULL); break;
      case OP_HOSTNAME:
        if (sethostname(ARG(op, 0), strlen(ARG(op, 0))) < 0) FAIL(op, errno, "sethostname");
        break;
      case OP_RLIMIT:
        if (apply_rlimit(ARG(op, 0), ARG(op, 1), ARG(op, 2)) < 0) FAIL(op, errno, "RLIMIT_%s %s:%s", ARG(op, 0), ARG(op, 1), ARG(op, 2));
        break;
      case OP_CAPS: {
        /* Keeping some: dropped after the filter is in (child_main). */
        keep_caps = strtoull(ARG(op, 0), NULL, 16);
        const char *what = NULL;
        if (!keep_caps && drop_privileges(0, 0, &what) < 0) FAIL(op, errno, "%s", what);
        break;
      }
      case OP_SECCOMP: break; /* last of all, in child_main */
      default: break;
    }
  }
}

/* Close every fd from 3 up but the n in keep (ascending, distinct). */
static int close_except(const int *keep, int n) {
  unsigned from = 3;
  for (int i = 0; i < n; i++) {
    if (keep[i] < 0 || (unsigned)keep[i] < from) continue;
    if ((unsigned)keep[i] > from && syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0) < 0) return -1;
    from = (unsigned)keep[i] + 1;
  }
  return (int)syscall(SYS_close_range, from, ~0U, 0);
}

static __attribute__((noreturn)) void child_main(int go_fd, int report_fd) {
  status_fd = report_fd;
  /* getppid() is 0 across a PID namespace, so the go pipe covers the window
   * before PDEATHSIG: a parent that died leaves EOF there, not 'g'. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail_step(status_fd, STEP_PARENT_DEATH, errno, "PR_SET_PDEATHSIG");
  char go = 0;
  ssize_t n = recv_go(go_fd, &go);
  if (n != 1 || go != 'g') fail_step(status_fd, STEP_SYNC, n < 0 ? errno : EPIPE, "parent did not release the child");
  close(go_fd);

  /* We start where the parent left us: in the new root (our copy of its
   * mount), the only way in for the session's uid, which cannot walk the 0700
   * state dir holding it. A recursive copy of that tree, attached on top of
   * it, is a mount of our own for pivot_root, which refuses a locked one;
   * what the host phase hid comes along, locked. */
  /* Our copies of the staged volumes, locked as they propagated in: a clone keeps that. */
  for (int i = 0, n = 0; i < plan.nops; i++) {
    if (plan.op[i].id != OP_VOLUME) continue;
    int k = n++;
    if (!staged(&plan.op[i])) continue;
    char at[16];
    snprintf(at, sizeof at, "v%d", k);
    if ((volume_fd[k] = open_tree(AT_FDCWD, at, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)) < 0) fail_step(status_fd, STEP_VOLUME, errno, "clone staged volume %s", at);
    /* Fail closed: the volume (ext4, not the bare staging directory a propagation that did
     * not arrive would leave), read-only, and locked so: clearing the flag on our clone is
     * refused (were it not, the clone is dropped with us). */
    struct statfs sf;
    if (fstatfs(volume_fd[k], &sf) < 0) fail_step(status_fd, STEP_VOLUME, errno, "statfs staged volume %s", at);
    if (sf.f_type != EXT4_SUPER_MAGIC || !(sf.f_flags & ST_RDONLY)) fail_step(status_fd, STEP_VOLUME, ENOENT, "staged volume %s did not arrive read-only", at);
    struct mount_attr probe = {.attr_clr = MOUNT_ATTR_RDONLY};
    if (syscall(SYS_mount_setattr, volume_fd[k], "", AT_EMPTY_PATH, &probe, sizeof probe) == 0 || errno != EPERM)
      fail_step(status_fd, STEP_VOLUME, EPERM, "staged volume %s is not locked read-only", at);
  }
  if (plan_find(&plan, OP_ROOT)) {
    build_root();
  } else {
    int tree = open_tree(AT_FDCWD, ".", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0) fail_step(status_fd, STEP_NEWROOT, errno, "open_tree of the new root");
    if (move_mount(tree, "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH) < 0) fail_step(status_fd, STEP_NEWROOT, errno, "attach the new root");
    if (fchdir(tree) < 0) fail_step(status_fd, STEP_NEWROOT, errno, "enter the new root");
    close(tree);
  }
  if ((rootfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) fail_step(status_fd, STEP_NEWROOT, errno, "open new root");

  /* Become the session's root (host IDs of the range) before creating files. */
  if (setresgid(0, 0, 0) < 0) fail_step(status_fd, STEP_SETID, errno, "setresgid(0)");
  if (setresuid(0, 0, 0) < 0) fail_step(status_fd, STEP_SETID, errno, "setresuid(0)");
  /* The session's processes start with the usual umask, not the daemon's. */
  umask(022);
  if (unshare(CLONE_NEWCGROUP) < 0) fail_step(status_fd, STEP_CGROUPNS, errno, "unshare(CLONE_NEWCGROUP)");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail_step(status_fd, STEP_PROPAGATION, errno, "make / rprivate");
  /* Network first: its sysctl needs a writable /proc, which ends below. */
  run_child_phase(PHASE_NET);
  run_child_phase(PHASE_MOUNT);
  forget_blobs();

  /* pivot_root(".", ".") stacks the old root on the new one; detach it. */
  if (fchdir(rootfd) < 0) fail_step(status_fd, STEP_PIVOT_ROOT, errno, "fchdir new root");
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail_step(status_fd, STEP_PIVOT_ROOT, errno, "pivot_root");
  if (umount2(".", MNT_DETACH) < 0) fail_step(status_fd, STEP_PIVOT_ROOT, errno, "detach old root");
  if (chdir("/") < 0) fail_step(status_fd, STEP_PIVOT_ROOT, errno, "chdir /");
  close(rootfd);
  rootfd = -1;

  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) fail_step(status_fd, STEP_FDS, errno, "stdio to /dev/null");
  close(null);

  run_child_phase(PHASE_FINAL);
  if (prctl(PR_SET_PDEATHSIG, 0) < 0) fail_step(status_fd, STEP_PARENT_DEATH, errno, "clear PR_SET_PDEATHSIG");
  /* Non-dumpable: no session process may read our fds (/proc/1/fd) or take
   * them (pidfd_getfd, ptrace). Set last, after every credential change. */
  if (prctl(PR_SET_DUMPABLE, 0) < 0) fail_step(status_fd, STEP_DUMPABLE, errno, "PR_SET_DUMPABLE");
  /* Nothing of the daemon's stays open in the session: keep the control
   * socket and, until the end, the report pipe. */
  int keep[3] = {listen_fd < status_fd ? listen_fd : status_fd, listen_fd < status_fd ? status_fd : listen_fd, -1};
  /* The writable layer's root stays open at a known fd: the daemon (host
   * root) reads it through /proc/PID/fd while the session is frozen
   * (snapshots). Non-dumpable and close-on-exec: no session process gets it. */
  if (upper_fd >= 0) {
    if (listen_fd == UPPER_KEEP_FD || status_fd == UPPER_KEEP_FD || dup3(upper_fd, UPPER_KEEP_FD, O_CLOEXEC) < 0)
      fail_step(status_fd, STEP_FDS, errno ? errno : EBUSY, "keep the writable layer at fd %d", UPPER_KEEP_FD);
    keep[2] = UPPER_KEEP_FD;
  }
  for (int i = 1; i < 3; i++) /* ascending, for close_except */
    for (int j = i; j > 0 && keep[j] < keep[j - 1]; j--) {
      int t = keep[j];
      keep[j] = keep[j - 1];
      keep[j - 1] = t;
    }
  if (close_except(keep, 3) < 0) fail_step(status_fd, STEP_FDS, errno, "close_range");
  /* Without no_new_privs (a profile that keeps capabilities) the kernel
   * takes the filter only from a holder of CAP_SYS_ADMIN in the namespace:
   * load it while we have it, then drop to the kept set. */
  if (load_seccomp(&filter) < 0) fail_step(status_fd, STEP_SECCOMP, errno, "seccomp(SECCOMP_SET_MODE_FILTER)");
  if (keep_caps) {
    const char *what = NULL;
    if (drop_privileges(keep_caps, keep_caps == CAPS_SYSTEM, &what) < 0) fail_step(status_fd, STEP_CAPS, errno, "%s", what);
    if (prctl(PR_SET_DUMPABLE, 0) < 0) fail_step(status_fd, STEP_DUMPABLE, errno, "PR_SET_DUMPABLE");
  }
  if (write_all(status_fd, "ready\n", 6) < 0) _exit(STEP_EXIT_BASE + STEP_READY);
  close(status_fd);
  agent_run(listen_fd, &plan);
}

/*
 * The session's namespaces are created with the session's own host uid and
 * gid (the first of its range) as effective IDs, so its user namespace is
 * owned by that uid, not by host root. The kernel charges per-user counters
 * (inotify instances and watches, among others) up the namespace chain to
 * the owner: with root as the owner, every session drew on host root's
 * budget, and one of them could exhaust it for the host and all the others.
 * Host root keeps every capability over the namespace (it is an ancestor's),
 * and no host process runs with that uid, which belongs to the session alone.
 * SECBIT_NO_SETUID_FIXUP keeps our capabilities while the euid is not 0;
 * the parent is host root again as soon as clone returns.
 */
static pid_t clone_as_owner(long flags, uid_t uid, gid_t gid) {
  if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP) < 0 || setresgid(-1, gid, -1) < 0 || setresuid(-1, uid, -1) < 0)
    fail_step(1, STEP_CLONE, errno, "take host uid %u to create the namespaces", uid);
  /* A NULL stack makes clone behave like fork: copy-on-write, same stack. */
  pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
  if (pid < 0) fail_step(1, STEP_CLONE, errno, "clone as host uid %u", uid);
  if (pid > 0 && (setresuid(-1, 0, -1) < 0 || setresgid(-1, 0, -1) < 0)) fail_step(1, STEP_CLONE, errno, "return to host root after clone");
  return pid;
}

/* 'g' releases the child, with the idmapped layers, then volumes, attached (SCM_RIGHTS). */
static int send_go(int fd) {
  char g = 'g';
  struct iovec io = {&g, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int) * (MAX_LAYERS + MAX_VOLUMES))];
    struct cmsghdr align;
  } u;
  struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1};
  /* The read-write volumes, in order: the staged ones came by propagation. */
  int passed[MAX_VOLUMES], sent_volumes = 0;
  for (int i = 0; i < nvolumes; i++)
    if (volume_fd[i] >= 0) passed[sent_volumes++] = volume_fd[i];
  size_t k = (size_t)(nlayers + sent_volumes);
  if (k > 0) {
    memset(&u, 0, sizeof u);
    m.msg_control = u.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * k);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * k);
    memcpy(CMSG_DATA(c), layer_fd, sizeof(int) * (size_t)nlayers);
    memcpy(CMSG_DATA(c) + sizeof(int) * (size_t)nlayers, passed, sizeof(int) * (size_t)sent_volumes);
  }
  ssize_t n;
  do n = sendmsg(fd, &m, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == 1 ? 0 : -1;
}

/* The child knows from the plan how many layers and volumes come. */
static ssize_t recv_go(int fd, char *go) {
  struct iovec io = {go, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int) * (MAX_LAYERS + MAX_VOLUMES))];
    struct cmsghdr align;
  } u;
  int want_layers = 0, want_volumes = 0, all_volumes = 0;
  for (int i = 0; i < plan.nops; i++) {
    want_layers += plan.op[i].id == OP_LAYER;
    want_volumes += plan.op[i].id == OP_VOLUME && !staged(&plan.op[i]);
    all_volumes += plan.op[i].id == OP_VOLUME;
  }
  int passed[MAX_VOLUMES];
  struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  ssize_t n;
  do n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n != 1 || (m.msg_flags & MSG_CTRUNC)) return n < 0 ? -1 : 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    if (k != (size_t)(want_layers + want_volumes)) return 0;
    memcpy(layer_fd, CMSG_DATA(c), (size_t)want_layers * sizeof(int));
    memcpy(passed, CMSG_DATA(c) + (size_t)want_layers * sizeof(int), (size_t)want_volumes * sizeof(int));
    nlayers = want_layers;
    nvolumes = want_volumes;
  }
  if (nlayers != want_layers || nvolumes != want_volumes) return 0;
  /* By their index among the volumes: a staged one is cloned from its copy later (-1 until then). */
  for (int i = 0, j = 0, v = 0; i < plan.nops; i++)
    if (plan.op[i].id == OP_VOLUME) volume_fd[v++] = staged(&plan.op[i]) ? -1 : passed[j++];
  nvolumes = all_volumes;
  return n;
}

static pid_t child_pid;

/* A half-built session never outlives a failed set-up, nor stays a zombie. */
static void kill_child(void) {
  if (child_pid <= 0) return;
  kill(child_pid, SIGKILL);
  while (waitpid(child_pid, NULL, 0) < 0 && errno == EINTR) {
  }
  child_pid = 0;
}

/* `enclave-init --probe`: can this host create every namespace a session needs,
 * and drop privileges and load a seccomp filter inside them? */
static int probe(void) {
  long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP | SIGCHLD;
  /* As sessions are made: by an unprivileged owner uid (any unused one will do). */
  pid_t pid = clone_as_owner(flags, 100000, 100000);
  if (pid == 0) {
    unsigned char allow[8] = {0x06, 0, 0, 0, 0x00, 0x00, 0xff, 0x7f}; /* BPF_RET|BPF_K, SECCOMP_RET_ALLOW */
    struct bpf_blob prog = {allow, sizeof allow};
    const char *what = NULL;
    if (drop_privileges(0, 0, &what) < 0) _exit(STEP_EXIT_BASE + STEP_CAPS);
    if (load_seccomp(&prog) < 0) _exit(STEP_EXIT_BASE + STEP_SECCOMP);
    _exit(0);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == STEP_EXIT_BASE + STEP_CAPS) fail_step(1, STEP_CAPS, EPERM, "cannot drop capabilities / set no_new_privs");
  if (WIFEXITED(st) && WEXITSTATUS(st) == STEP_EXIT_BASE + STEP_SECCOMP) fail_step(1, STEP_SECCOMP, ENOSYS, "cannot load a seccomp filter (CONFIG_SECCOMP_FILTER?)");
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_step(1, STEP_CLONE, ECHILD, "probe child failed (status %d)", st);
  return write_all(1, "ok\n", 3) < 0;
}

/* `enclave-init --probe-idmap PATH`: can PATH's filesystem be idmapped into a
 * session's user namespace (what a layered root needs)? */
static int probe_idmap(const char *path) {
  int hold[2];
  if (pipe2(hold, O_CLOEXEC) < 0) fail_step(1, STEP_SYNC, errno, "pipe2");
  pid_t pid = clone_as_owner(CLONE_NEWUSER | SIGCHLD, 100000, 100000);
  if (pid == 0) {
    char c;
    close(hold[1]);
    (void)!read(hold[0], &c, 1);
    _exit(0);
  }
  child_pid = pid;
  fail_cleanup = kill_child;
  close(hold[0]);
  char file[64], ns[64];
  const char *maps[3][2] = {{"uid_map", "0 100000 65536\n"}, {"setgroups", "deny"}, {"gid_map", "0 100000 65536\n"}};
  for (int i = 0; i < 3; i++) {
    snprintf(file, sizeof file, "/proc/%d/%s", pid, maps[i][0]);
    if (write_file(file, maps[i][1]) < 0) fail_step(1, STEP_UID_MAP, errno, "write %s", file);
  }
  snprintf(ns, sizeof ns, "/proc/%d/ns/user", pid);
  int userns = open(ns, O_RDONLY | O_CLOEXEC);
  if (userns < 0) fail_step(1, STEP_LAYER, errno, "open %s", ns);
  int fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0) fail_step(1, STEP_LAYER, errno, "open_tree %s", path);
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, .userns_fd = (unsigned)userns};
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) fail_step(1, STEP_LAYER, errno, "idmapped mount of %s", path);
  close(fd);
  kill_child();
  return write_all(1, "ok\n", 3) < 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--probe")) return probe();
  if (argc == 3 && !strcmp(argv[1], "--probe-idmap")) return probe_idmap(argv[2]);
  if (argc == 2 && !strcmp(argv[1], "--ops")) return plan_print_table(1) < 0;
  if (argc == 2 && !strcmp(argv[1], "--check")) {
    read_plan();
    return write_all(1, "ok\n", 3) < 0;
  }
  if (argc != 1) fail_step(1, STEP_USAGE, EINVAL, "usage: enclave-init < plan | enclave-init --check < plan | enclave-init --ops | enclave-init --probe | enclave-init --probe-idmap PATH");
  /* A daemon that died mid-create must not make us die of SIGPIPE mid-report. */
  signal(SIGPIPE, SIG_IGN);
  read_plan();
  /* No session without its filter: decoded before anything is created. */
  const char *hex = ARG(plan_find(&plan, OP_SECCOMP), 0);
  static unsigned char prog[MAX_BPF_INSNS * 8];
  filter.data = prog;
  filter.len = plan_hex_decode(hex, prog, sizeof prog);
  int go[2], report[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, go) < 0 || pipe2(report, O_CLOEXEC) < 0) fail_step(1, STEP_SYNC, errno, "socketpair/pipe2");
  for (int i = 0; i < PLAN_MAX_OPS; i++) bind_fd[i] = -1;
  /* No host supplementary group goes into the session: with setgroups
   * allowed there, dropping one could pass a group-denied permission. */
  if (setgroups(0, NULL) < 0) fail_step(1, STEP_SETID, errno, "setgroups(0)");
  run_host_phase();

  /* The child starts in the new root: clone gives it our cwd, in its copy of our mount ns. */
  const char *newroot = ARG(plan_find(&plan, OP_ROOTFS), 0);
  if (chdir(newroot) < 0) fail_step(1, STEP_NEWROOT, errno, "chdir %s", newroot);
  long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
  pid_t pid = clone_as_owner(flags, (uid_t)parse_u64(ARG(plan_find(&plan, OP_UID_MAP), 1)), (gid_t)parse_u64(ARG(plan_find(&plan, OP_GID_MAP), 1)));
  if (pid == 0) {
    close(go[1]);
    close(report[0]);
    child_main(go[0], report[1]);
  }
  child_pid = pid;
  fail_cleanup = kill_child;
  forget_blobs(); /* the child has its own copy */
  close(go[0]);
  close(report[1]);
  close(listen_fd); /* the session init holds it now */

  run_parent_phase(pid);
  if (send_go(go[1]) < 0) fail_step(1, STEP_SYNC, errno, "release child");
  for (int i = 0; i < nlayers; i++) close(layer_fd[i]);
  for (int i = 0; i < nvolumes; i++) close(volume_fd[i]);
  close(go[1]);

  /* The child reports "ready" or its failed step, then closes the pipe. */
  char msg[768];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(report[0], msg + len, sizeof msg - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += (size_t)n;
    if (memchr(msg, '\n', len) || len == sizeof msg - 1) break;
  }
  msg[len] = '\0';
  if (strcmp(msg, "ready\n") != 0) {
    fail_cleanup = NULL;
    kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (len > 0 && !strncmp(msg, "error\t", 6)) {
      (void)write_all(1, msg, len);
      _exit(WIFEXITED(st) ? WEXITSTATUS(st) : STEP_EXIT_BASE + STEP_READY);
    }
    fail_step(1, STEP_READY, EPIPE, "session init exited during set-up (wait status %d)", st);
  }
  unsigned long long start;
  if (read_start_time(pid, &start) < 0) fail_step(1, STEP_READY, errno, "read start time of %d", pid);
  char line[96];
  int n = snprintf(line, sizeof line, "ok\t%d\t%llu\n", pid, start);
  if (write_all(1, line, (size_t)n) < 0) fail_step(-1, STEP_READY, errno, "report to the daemon");
  /* Exiting hands the init to the nearest subreaper (the daemon) or to PID 1. */
  return 0;
}
