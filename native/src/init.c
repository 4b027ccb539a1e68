/*
 * enclave-init: creates one session and becomes its PID 1.
 *
 * Input: the session spec on stdin, built and validated by the daemon
 * (src/isolation/spec.ts). One directive per line, fields separated by tabs.
 * Output on stdout, one line: "ok\t<pid>\t<starttime>" or
 * "error\t<step>\t<errno>\t<detail>". Exit 0, or 64 + step on failure.
 *
 * Order (see DESIGN.md, "Session bootstrap order"):
 *  parent (host root): private mount ns, read-only rootfs bind + masks ->
 *    clone(user, pid, mnt, net, uts, ipc) with the child blocked on a pipe ->
 *    child into its cgroups -> uid_map, setgroups=deny, gid_map -> release.
 *  child: PDEATHSIG + ppid check -> wait -> session root IDs -> cgroup ns ->
 *    private propagation -> tmpfs/proc/sysfs/dev per spec -> pivot_root and
 *    detach the old root -> hostname, lo up -> close fds -> ready -> reaper.
 *
 * Why the rootfs is bound by the parent: in a mount ns owned by a new user
 * ns, mounts copied from the host are locked together, and the kernel
 * refuses a non-recursive bind of "/" (it could reveal what host submounts
 * cover). Host root binds it first, in a private mount ns of its own, so the
 * session gets "/" without /proc, /sys, /dev or any other host submount, and
 * the masks and the read-only flag arrive locked: the session cannot undo them.
 */
#include "common.h"
#include "harden.h"
#include "netlink.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <arpa/inet.h>
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SPEC (64 * 1024)
#define MAX_LINES 256
#define MAX_FIELDS 6

struct directive {
  int nf;
  char *f[MAX_FIELDS];
};

static struct directive spec[MAX_LINES];
static struct bpf_blob filter; /* read by the parent as host root, inherited */
static int nspec;
static int status_fd = -1; /* child -> parent report pipe (child side) */

static void parse_spec(void) {
  static char buf[MAX_SPEC + 1];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(0, buf + len, MAX_SPEC - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_step(1, STEP_SPEC, errno, "read spec from stdin");
    if (n == 0) break;
    len += (size_t)n;
    if (len == MAX_SPEC) fail_step(1, STEP_SPEC, E2BIG, "spec larger than %d bytes", MAX_SPEC);
  }
  buf[len] = '\0';
  char *save = NULL;
  for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (nspec == MAX_LINES) fail_step(1, STEP_SPEC, E2BIG, "more than %d directives", MAX_LINES);
    struct directive *d = &spec[nspec++];
    char *fs = NULL;
    for (char *f = strtok_r(line, "\t", &fs); f; f = strtok_r(NULL, "\t", &fs)) {
      if (d->nf == MAX_FIELDS) fail_step(1, STEP_SPEC, EINVAL, "too many fields in '%s'", d->f[0]);
      d->f[d->nf++] = f;
    }
  }
  if (nspec == 0 || spec[0].nf != 2 || strcmp(spec[0].f[0], "enclave-spec") || strcmp(spec[0].f[1], "1"))
    fail_step(1, STEP_SPEC, EINVAL, "spec must start with 'enclave-spec\\t1'");
}

static const char *spec_value(const char *key) {
  for (int i = 0; i < nspec; i++)
    if (spec[i].nf == 2 && !strcmp(spec[i].f[0], key)) return spec[i].f[1];
  return NULL;
}

static int want_fields(const struct directive *d, int n) {
  if (d->nf != n) fail_step(status_fd >= 0 ? status_fd : 1, STEP_SPEC, EINVAL, "'%s' takes %d fields, got %d", d->f[0], n - 1, d->nf - 1);
  return 1;
}

static unsigned long mount_flags(const char *list, enum step step) {
  unsigned long flags = 0;
  if (!strcmp(list, "-")) return 0;
  char copy[128];
  snprintf(copy, sizeof copy, "%s", list);
  char *save = NULL;
  for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
    if (!strcmp(f, "nosuid")) flags |= MS_NOSUID;
    else if (!strcmp(f, "nodev")) flags |= MS_NODEV;
    else if (!strcmp(f, "noexec")) flags |= MS_NOEXEC;
    else if (!strcmp(f, "ro")) flags |= MS_RDONLY;
    else fail_step(status_fd, step, EINVAL, "unknown mount flag '%s'", f);
  }
  return flags;
}

/*
 * Resolve a path below dirfd without following any symlink and without
 * escaping it, and return an O_PATH fd. Mounting on /proc/self/fd/N then
 * hits exactly that directory, whatever the rootfs holds.
 */
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
  if (len >= sizeof copy) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(copy, rel, len + 1);
  char *slash = strrchr(copy, '/');
  const char *name = slash ? slash + 1 : copy;
  if (strlen(name) >= leaflen) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(leaf, name, strlen(name) + 1);
  if (!slash) return fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
  *slash = '\0';
  return open_beneath(dirfd, copy, O_DIRECTORY);
}

static void mount_on(int rootfd, const char *rel, const char *src, const char *fstype, unsigned long flags,
                     const char *data, enum step step) {
  int fd = open_beneath(rootfd, rel, O_DIRECTORY);
  if (fd < 0) fail_step(status_fd, step, errno, "open mount target %s", rel);
  char target[64];
  fd_path(target, sizeof target, fd);
  if (mount(src, target, fstype, flags, data) < 0) fail_step(status_fd, step, errno, "mount %s on %s", fstype, rel);
  close(fd);
}

/* ---- parent half ------------------------------------------------------ */

static void write_id_map(int pid, const char *file, const char *key, enum step step) {
  char path[64], data[512];
  size_t used = 0;
  data[0] = '\0';
  for (int i = 0; i < nspec; i++) {
    if (strcmp(spec[i].f[0], key)) continue;
    want_fields(&spec[i], 4);
    int n = snprintf(data + used, sizeof data - used, "%s %s %s\n", spec[i].f[1], spec[i].f[2], spec[i].f[3]);
    if (n < 0 || (size_t)n >= sizeof data - used) fail_step(1, step, E2BIG, "%s too long", key);
    used += (size_t)n;
  }
  if (used == 0) fail_step(1, step, EINVAL, "spec has no %s", key);
  snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
  if (write_file(path, data) < 0) fail_step(1, step, errno, "write %s", path);
}

/* Private mount ns for the parent, with the session's root prepared in it. */
static void prepare_root(void) {
  const char *newroot = spec_value("newroot"), *rootfs = spec_value("rootfs");
  if (!newroot || !rootfs || newroot[0] != '/' || rootfs[0] != '/')
    fail_step(1, STEP_SPEC, EINVAL, "spec needs absolute 'newroot' and 'rootfs'");
  if (unshare(CLONE_NEWNS) < 0) fail_step(1, STEP_UNSHARE_MNT, errno, "unshare(CLONE_NEWNS)");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    fail_step(1, STEP_UNSHARE_MNT, errno, "make / rprivate");
  /* Non-recursive: host submounts (/proc, /sys, /dev, ...) stay behind. */
  if (mount(rootfs, newroot, NULL, MS_BIND, NULL) < 0) fail_step(1, STEP_ROOTFS, errno, "bind %s", rootfs);
  if (mount(NULL, newroot, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
    fail_step(1, STEP_ROOTFS, errno, "remount %s read-only", rootfs);
  int rootfd = open(newroot, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) fail_step(1, STEP_ROOTFS, errno, "open %s", newroot);
  for (int i = 0; i < nspec; i++) {
    if (strcmp(spec[i].f[0], "mask")) continue;
    want_fields(&spec[i], 2);
    const char *rel = spec[i].f[1];
    int fd = open_beneath(rootfd, rel, 0);
    if (fd < 0 && errno == ENOENT) continue; /* nothing there to hide */
    if (fd < 0) fail_step(1, STEP_MASK, errno, "open %s", rel);
    struct stat st;
    if (fstat(fd, &st) < 0) fail_step(1, STEP_MASK, errno, "stat %s", rel);
    char target[64];
    fd_path(target, sizeof target, fd);
    int rc = S_ISDIR(st.st_mode)
                 ? mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,nr_inodes=1,mode=0755")
                 : mount("/dev/null", target, NULL, MS_BIND, NULL);
    if (rc < 0) fail_step(1, STEP_MASK, errno, "mask %s", rel);
    close(fd);
  }
  /* Per-session files (resolv.conf, hosts) over the rootfs's, read-only. */
  for (int i = 0; i < nspec; i++) {
    if (strcmp(spec[i].f[0], "bind_file")) continue;
    want_fields(&spec[i], 3);
    int fd = open_beneath(rootfd, spec[i].f[2], 0);
    if (fd < 0 && errno == ENOENT) continue; /* the rootfs has no such file to replace */
    if (fd < 0) fail_step(1, STEP_BIND_FILE, errno, "open %s", spec[i].f[2]);
    char target[64];
    fd_path(target, sizeof target, fd);
    if (mount(spec[i].f[1], target, NULL, MS_BIND, NULL) < 0) fail_step(1, STEP_BIND_FILE, errno, "bind %s", spec[i].f[1]);
    close(fd);
    fd = open_beneath(rootfd, spec[i].f[2], 0);
    if (fd < 0) fail_step(1, STEP_BIND_FILE, errno, "reopen %s", spec[i].f[2]);
    fd_path(target, sizeof target, fd);
    if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
      fail_step(1, STEP_BIND_FILE, errno, "remount %s read-only", spec[i].f[2]);
    close(fd);
  }
  close(rootfd);
  /* The child starts with its cwd on the prepared root. */
  if (chdir(newroot) < 0) fail_step(1, STEP_ROOTFS, errno, "chdir %s", newroot);
}

/* ---- child half ------------------------------------------------------- */

static void bring_up_loopback(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail_step(status_fd, STEP_LOOPBACK, errno, "socket");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) fail_step(status_fd, STEP_LOOPBACK, errno, "get lo flags");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) fail_step(status_fd, STEP_LOOPBACK, errno, "set lo up");
  close(s);
}

static void apply_child_directive(int rootfd, const struct directive *d) {
  const char *op = d->f[0];
  char target[64], leaf[NAME_MAX + 1];
  if (!strcmp(op, "tmpfs")) {
    want_fields(d, 4);
    mount_on(rootfd, d->f[1], "tmpfs", "tmpfs", mount_flags(d->f[2], STEP_TMPFS), d->f[3], STEP_TMPFS);
  } else if (!strcmp(op, "mkdir")) {
    want_fields(d, 3);
    long long mode = strtoll(d->f[2], NULL, 8);
    int dfd = open_parent(rootfd, d->f[1], leaf, sizeof leaf);
    if (dfd < 0) fail_step(status_fd, STEP_MKDIR, errno, "open parent of %s", d->f[1]);
    if (mkdirat(dfd, leaf, (mode_t)mode) < 0 && errno != EEXIST) fail_step(status_fd, STEP_MKDIR, errno, "mkdir %s", d->f[1]);
    /* umask must not narrow the mode the spec asked for. */
    int fd = open_beneath(rootfd, d->f[1], O_DIRECTORY);
    if (fd < 0) fail_step(status_fd, STEP_MKDIR, errno, "open %s", d->f[1]);
    int rfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0 || fchmod(rfd, (mode_t)mode) < 0) fail_step(status_fd, STEP_MKDIR, errno, "chmod %s", d->f[1]);
    close(rfd);
    close(fd);
    close(dfd);
  } else if (!strcmp(op, "symlink")) {
    want_fields(d, 3);
    int dfd = open_parent(rootfd, d->f[2], leaf, sizeof leaf);
    if (dfd < 0) fail_step(status_fd, STEP_SYMLINK, errno, "open parent of %s", d->f[2]);
    if (symlinkat(d->f[1], dfd, leaf) < 0) fail_step(status_fd, STEP_SYMLINK, errno, "symlink %s", d->f[2]);
    close(dfd);
  } else if (!strcmp(op, "bind_dev")) {
    /* No mknod in a user namespace: bind the host's node onto an empty file. */
    want_fields(d, 3);
    int dfd = open_parent(rootfd, d->f[1], leaf, sizeof leaf);
    if (dfd < 0) fail_step(status_fd, STEP_BIND_DEV, errno, "open parent of %s", d->f[1]);
    int pfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ffd = pfd < 0 ? -1 : openat(pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (ffd < 0) fail_step(status_fd, STEP_BIND_DEV, errno, "create %s", d->f[1]);
    close(ffd);
    close(pfd);
    close(dfd);
    int fd = open_beneath(rootfd, d->f[1], 0);
    if (fd < 0) fail_step(status_fd, STEP_BIND_DEV, errno, "open %s", d->f[1]);
    fd_path(target, sizeof target, fd);
    if (mount(d->f[2], target, NULL, MS_BIND, NULL) < 0) fail_step(status_fd, STEP_BIND_DEV, errno, "bind %s", d->f[2]);
    close(fd);
  } else if (!strcmp(op, "proc")) {
    want_fields(d, 2);
    mount_on(rootfd, d->f[1], "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, STEP_PROC);
  } else if (!strcmp(op, "sysfs")) {
    want_fields(d, 2);
    mount_on(rootfd, d->f[1], "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, STEP_SYSFS);
  } else if (!strcmp(op, "devpts")) {
    want_fields(d, 3);
    mount_on(rootfd, d->f[1], "devpts", "devpts", MS_NOSUID | MS_NOEXEC, d->f[2], STEP_DEVPTS);
  } else if (!strcmp(op, "proc_mask")) {
    /* Inside the fresh /proc or /sys: a file becomes /dev/null, a directory
     * an empty read-only tmpfs. Absent paths are fine (nothing to hide). */
    want_fields(d, 2);
    int fd = open_beneath(rootfd, d->f[1], 0);
    if (fd < 0 && errno == ENOENT) return;
    if (fd < 0) fail_step(status_fd, STEP_PROC_MASK, errno, "open %s", d->f[1]);
    struct stat st;
    if (fstat(fd, &st) < 0) fail_step(status_fd, STEP_PROC_MASK, errno, "stat %s", d->f[1]);
    fd_path(target, sizeof target, fd);
    int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,nr_inodes=1,mode=0555")
                                 : mount("/dev/null", target, NULL, MS_BIND, NULL);
    if (rc < 0) fail_step(status_fd, STEP_PROC_MASK, errno, "mask %s", d->f[1]);
    close(fd);
  } else if (!strcmp(op, "readonly")) {
    want_fields(d, 2);
    int fd = open_beneath(rootfd, d->f[1], 0);
    if (fd < 0 && errno == ENOENT) return;
    if (fd < 0) fail_step(status_fd, STEP_READONLY, errno, "open %s", d->f[1]);
    fd_path(target, sizeof target, fd);
    if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0) fail_step(status_fd, STEP_READONLY, errno, "bind %s", d->f[1]);
    close(fd);
    /* Re-resolve: the new bind now sits on top of the old fd's mount. */
    fd = open_beneath(rootfd, d->f[1], 0);
    if (fd < 0) fail_step(status_fd, STEP_READONLY, errno, "reopen %s", d->f[1]);
    fd_path(target, sizeof target, fd);
    if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
      fail_step(status_fd, STEP_READONLY, errno, "remount %s read-only", d->f[1]);
    close(fd);
  } else if (!strcmp(op, "mqueue")) {
    want_fields(d, 2);
    mount_on(rootfd, d->f[1], "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, STEP_MQUEUE);
  } else if (strcmp(op, "enclave-spec") && strcmp(op, "hostname") && strcmp(op, "uid_map") && strcmp(op, "gid_map") &&
             strcmp(op, "cgroup") && strcmp(op, "newroot") && strcmp(op, "rootfs") && strcmp(op, "mask") &&
             strcmp(op, "rlimit") && strcmp(op, "seccomp") && strcmp(op, "veth") && strcmp(op, "ipv4") && strcmp(op, "bind_file")) {
    fail_step(status_fd, STEP_SPEC, EINVAL, "unknown directive '%s'", op);
  }
}

static void configure_ipv4(const struct directive *d);

static void noop_handler(int sig) { (void)sig; }

/* PID 1 of the session: reap everything; on a stop signal, pass it on. */
static __attribute__((noreturn)) void reaper(void) {
  static const int handled[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  sigset_t set;
  sigemptyset(&set);
  struct sigaction sa = {.sa_handler = noop_handler};
  /* A PID-ns init drops signals whose disposition is SIG_DFL, so install one. */
  for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) {
    sigaction(handled[i], &sa, NULL);
    sigaddset(&set, handled[i]);
  }
  sigprocmask(SIG_BLOCK, &set, NULL);
  int stopping = 0;
  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&set, &info);
    if (sig < 0) continue;
    if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP || sig == SIGQUIT) {
      stopping = 1;
      kill(-1, SIGTERM); /* every process of the session but us */
      kill(-1, SIGCONT);
    }
    for (;;) {
      pid_t p = waitpid(-1, NULL, WNOHANG);
      if (p > 0) continue;
      if (p < 0 && errno == ECHILD && stopping) _exit(0);
      break;
    }
  }
}

static __attribute__((noreturn)) void child_main(int go_fd, int report_fd, pid_t parent) {
  status_fd = report_fd;
  (void)parent;
  /* getppid() is 0 across a PID namespace, so the go pipe covers the window
   * before PDEATHSIG: a parent that died leaves EOF there, not 'g'. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail_step(status_fd, STEP_PARENT_DEATH, errno, "PR_SET_PDEATHSIG");
  char go = 0;
  ssize_t n;
  do n = read(go_fd, &go, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1 || go != 'g') fail_step(status_fd, STEP_SYNC, n < 0 ? errno : EPIPE, "parent did not release the child");
  close(go_fd);

  /* Still the host's uid 0 here, so the 0700 state dir holding newroot can be
   * walked. A recursive self-bind gives a mount of our own for pivot_root,
   * which refuses a locked one; the masks come along, still locked. */
  const char *newroot = spec_value("newroot");
  if (mount(newroot, newroot, NULL, MS_BIND | MS_REC, NULL) < 0) fail_step(status_fd, STEP_NEWROOT, errno, "self-bind %s", newroot);
  if (chdir(newroot) < 0) fail_step(status_fd, STEP_NEWROOT, errno, "chdir %s", newroot);
  int rootfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rootfd < 0) fail_step(status_fd, STEP_NEWROOT, errno, "open new root");

  /* Become the session's root (host IDs of the range) before creating files. */
  if (setresgid(0, 0, 0) < 0) fail_step(status_fd, STEP_SETID, errno, "setresgid(0)");
  if (setresuid(0, 0, 0) < 0) fail_step(status_fd, STEP_SETID, errno, "setresuid(0)");
  if (unshare(CLONE_NEWCGROUP) < 0) fail_step(status_fd, STEP_CGROUPNS, errno, "unshare(CLONE_NEWCGROUP)");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) fail_step(status_fd, STEP_PROPAGATION, errno, "make / rprivate");
  /* Network first: its sysctl needs a writable /proc, which ends below. */
  for (int i = 0; i < nspec; i++)
    if (!strcmp(spec[i].f[0], "ipv4")) configure_ipv4(&spec[i]);

  for (int i = 1; i < nspec; i++) apply_child_directive(rootfd, &spec[i]);

  /* pivot_root(".", ".") stacks the old root on the new one; detach it. */
  if (fchdir(rootfd) < 0) fail_step(status_fd, STEP_PIVOT_ROOT, errno, "fchdir new root");
  if (syscall(SYS_pivot_root, ".", ".") < 0) fail_step(status_fd, STEP_PIVOT_ROOT, errno, "pivot_root");
  if (umount2(".", MNT_DETACH) < 0) fail_step(status_fd, STEP_PIVOT_ROOT, errno, "detach old root");
  if (chdir("/") < 0) fail_step(status_fd, STEP_PIVOT_ROOT, errno, "chdir /");
  close(rootfd);

  const char *hostname = spec_value("hostname");
  if (!hostname || sethostname(hostname, strlen(hostname)) < 0) fail_step(status_fd, STEP_HOSTNAME, hostname ? errno : EINVAL, "sethostname");
  bring_up_loopback();

  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) fail_step(status_fd, STEP_FDS, errno, "stdio to /dev/null");
  close(null);

  for (int i = 0; i < nspec; i++) {
    if (strcmp(spec[i].f[0], "rlimit")) continue;
    want_fields(&spec[i], 4);
    if (apply_rlimit(spec[i].f[1], spec[i].f[2], spec[i].f[3]) < 0)
      fail_step(status_fd, STEP_RLIMIT, errno, "RLIMIT_%s %s:%s", spec[i].f[1], spec[i].f[2], spec[i].f[3]);
  }
  const char *what = NULL;
  if (drop_privileges(&what) < 0) fail_step(status_fd, STEP_CAPS, errno, "%s", what);
  if (prctl(PR_SET_PDEATHSIG, 0) < 0) fail_step(status_fd, STEP_PARENT_DEATH, errno, "clear PR_SET_PDEATHSIG");
  /* Nothing of the daemon's may stay open in the session; keep only the
   * report pipe until the end. */
  if (status_fd > 3 && syscall(SYS_close_range, 3, status_fd - 1, 0) < 0) fail_step(status_fd, STEP_FDS, errno, "close_range");
  if (syscall(SYS_close_range, status_fd + 1, ~0U, 0) < 0) fail_step(status_fd, STEP_FDS, errno, "close_range");
  if (load_seccomp(&filter) < 0) fail_step(status_fd, STEP_SECCOMP, errno, "seccomp(SECCOMP_SET_MODE_FILTER)");
  if (write_all(status_fd, "ready\n", 6) < 0) _exit(STEP_EXIT_BASE + STEP_READY);
  close(status_fd);
  reaper();
}

static int parse_mac(const char *s, unsigned char mac[6]) {
  unsigned v[6];
  if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
  for (int i = 0; i < 6; i++) mac[i] = (unsigned char)v[i];
  return 0;
}

/* veth HOSTIF PEERIF MAC MTU BRIDGE: the peer is born in the child's netns. */
static void create_veth(const struct directive *d, pid_t pid) {
  want_fields(d, 6);
  unsigned char mac[6];
  long long mtu = parse_u64(d->f[4]);
  if (parse_mac(d->f[3], mac) < 0 || mtu < 68) fail_step(1, STEP_SPEC, EINVAL, "veth: bad MAC or MTU");
  int nl = nl_open();
  if (nl < 0) fail_step(1, STEP_VETH, -nl, "netlink socket");
  int rc = nl_create_veth(nl, d->f[1], d->f[2], pid, mac, (int)mtu);
  if (rc < 0) fail_step(1, STEP_VETH, -rc, "create veth %s", d->f[1]);
  int idx = (int)if_nametoindex(d->f[1]), br = (int)if_nametoindex(d->f[5]);
  if (!idx || !br) fail_step(1, STEP_VETH, ENODEV, "find %s / bridge %s", d->f[1], d->f[5]);
  if ((rc = disable_ipv6(d->f[1])) < 0) fail_step(1, STEP_VETH, -rc, "disable IPv6 on %s", d->f[1]);
  if ((rc = nl_link_up(nl, idx, br)) < 0) fail_step(1, STEP_VETH, -rc, "attach %s to %s", d->f[1], d->f[5]);
  if ((rc = nl_brport_isolate(nl, idx)) < 0) fail_step(1, STEP_VETH, -rc, "isolate bridge port %s", d->f[1]);
  close(nl);
}

/* ipv4 IFNAME ADDR PREFIX GATEWAY, in the session's own netns. */
static void configure_ipv4(const struct directive *d) {
  want_fields(d, 5);
  struct in_addr addr, gw;
  long long prefix = parse_u64(d->f[3]);
  if (!inet_pton(AF_INET, d->f[2], &addr) || !inet_pton(AF_INET, d->f[4], &gw) || prefix < 1 || prefix > 32)
    fail_step(status_fd, STEP_SPEC, EINVAL, "ipv4: bad address, prefix or gateway");
  int rc;
  /* IPv6 off before the link comes up, so it never gets an address. */
  if ((rc = disable_ipv6("default")) < 0 || (rc = disable_ipv6(d->f[1])) < 0) fail_step(status_fd, STEP_NETWORK, -rc, "disable IPv6");
  int nl = nl_open();
  if (nl < 0) fail_step(status_fd, STEP_NETWORK, -nl, "netlink socket");
  int idx = (int)if_nametoindex(d->f[1]);
  if (!idx) fail_step(status_fd, STEP_NETWORK, ENODEV, "no %s in the session", d->f[1]);
  if ((rc = nl_addr_add(nl, idx, addr.s_addr, (int)prefix)) < 0) fail_step(status_fd, STEP_NETWORK, -rc, "address %s/%lld", d->f[2], prefix);
  if ((rc = nl_link_up(nl, idx, 0)) < 0) fail_step(status_fd, STEP_NETWORK, -rc, "set %s up", d->f[1]);
  /* A /32 address reaches everything, other sessions included, through the
   * gateway, where the firewall answers at once; nothing is on-link but it. */
  if ((rc = nl_route_link(nl, gw.s_addr, idx)) < 0 && rc != -EEXIST) fail_step(status_fd, STEP_NETWORK, -rc, "route to gateway %s", d->f[4]);
  if ((rc = nl_route_default(nl, gw.s_addr, idx)) < 0) fail_step(status_fd, STEP_NETWORK, -rc, "default route via %s", d->f[4]);
  close(nl);
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
  pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
  if (pid < 0) fail_step(1, STEP_CLONE, errno, "clone with all session namespaces");
  if (pid == 0) {
    /* In the new namespaces: can we drop everything and load a filter? */
    unsigned char allow[8] = {0x06, 0, 0, 0, 0x00, 0x00, 0xff, 0x7f}; /* BPF_RET|BPF_K, SECCOMP_RET_ALLOW */
    struct bpf_blob prog = {allow, sizeof allow};
    const char *what = NULL;
    if (drop_privileges(&what) < 0) _exit(STEP_EXIT_BASE + STEP_CAPS);
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

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--probe")) return probe();
  if (argc != 1) fail_step(1, STEP_USAGE, EINVAL, "usage: enclave-init < spec | enclave-init --probe");
  /* A daemon that died mid-create must not make us die of SIGPIPE mid-report. */
  signal(SIGPIPE, SIG_IGN);
  parse_spec();
  int go[2], report[2];
  if (pipe2(go, O_CLOEXEC) < 0 || pipe2(report, O_CLOEXEC) < 0) fail_step(1, STEP_SYNC, errno, "pipe2");
  /* No session without its filter: fail closed before anything is created. */
  const char *seccomp_path = spec_value("seccomp");
  if (!seccomp_path) fail_step(1, STEP_SECCOMP, EINVAL, "spec has no seccomp program");
  if (read_bpf(seccomp_path, &filter) < 0) fail_step(1, STEP_SECCOMP, errno, "read %s (root-owned, not group/world-writable)", seccomp_path);
  prepare_root();

  pid_t parent = getpid();
  long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
  /* A NULL stack makes clone behave like fork: copy-on-write, same stack. */
  pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
  if (pid < 0) fail_step(1, STEP_CLONE, errno, "clone");
  if (pid == 0) {
    close(go[1]);
    close(report[0]);
    child_main(go[0], report[1], parent);
  }
  child_pid = pid;
  fail_cleanup = kill_child;
  close(go[0]);
  close(report[1]);

  char path[PATH_MAX], pidstr[32];
  snprintf(pidstr, sizeof pidstr, "%d", pid);
  for (int i = 0; i < nspec; i++) {
    if (strcmp(spec[i].f[0], "cgroup")) continue;
    want_fields(&spec[i], 2);
    if (write_file(spec[i].f[1], pidstr) < 0) fail_step(1, STEP_CGROUP, errno, "join %s", spec[i].f[1]);
  }
  write_id_map(pid, "uid_map", "uid_map", STEP_UID_MAP);
  snprintf(path, sizeof path, "/proc/%d/setgroups", pid);
  if (write_file(path, "deny") < 0) fail_step(1, STEP_SETGROUPS, errno, "write %s", path);
  write_id_map(pid, "gid_map", "gid_map", STEP_GID_MAP);
  for (int i = 0; i < nspec; i++)
    if (!strcmp(spec[i].f[0], "veth")) create_veth(&spec[i], pid);
  if (write_all(go[1], "g", 1) < 0) fail_step(1, STEP_SYNC, errno, "release child");
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
