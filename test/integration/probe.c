/*
 * Escape-suite probe, compiled by the test and run inside a session.
 *   probe CASE [ARG]
 * Prints one line: "ok" if the call succeeded, else the errno name (EPERM,
 * ENOSYS, ...). Cases that must kill the caller simply never print.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <sys/inotify.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

static const char *name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EMFILE: return "EMFILE";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EACCES: return "EACCES";
    case ESRCH: return "ESRCH";
    case EINVAL: return "EINVAL";
    case EROFS: return "EROFS";
    case ENOENT: return "ENOENT";
    case ENOSPC: return "ENOSPC";
    case EAGAIN: return "EAGAIN";
    case EBADF: return "EBADF";
    case ENOTTY: return "ENOTTY";
    case EFBIG: return "EFBIG";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ECONNREFUSED: return "ECONNREFUSED";
    default: return "EOTHER";
  }
}

static int report(long rc) {
  puts(rc < 0 ? name(errno) : "ok");
  return 0;
}

static int pty(void) {
  int fd = posix_openpt(O_RDWR | O_NOCTTY);
  if (fd < 0) {
    perror("posix_openpt");
    exit(2);
  }
  return fd;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *c = argv[1];
  const char *arg = argc > 2 ? argv[2] : "";
  char ch = 'x';
  if (!strcmp(c, "mount-tmpfs")) return report(mount("none", "/tmp", "tmpfs", 0, NULL));
  if (!strcmp(c, "umount-proc")) return report(umount2("/proc", MNT_DETACH));
  if (!strcmp(c, "unshare-user")) return report(unshare(CLONE_NEWUSER));
  if (!strcmp(c, "unshare-mnt")) return report(unshare(CLONE_NEWNS));
  if (!strcmp(c, "unshare-cgroup")) return report(unshare(CLONE_NEWCGROUP));
  if (!strcmp(c, "chroot")) return report(chroot("/tmp"));
  if (!strcmp(c, "chroot-escape")) {
    /* The classic escape: chroot without chdir, climb out, chroot there. It must end at the session's own root. */
    struct stat before, after;
    mkdir("/tmp/chroot-jail", 0700);
    if (stat("/", &before) < 0 || chroot("/tmp/chroot-jail") < 0) return report(-1);
    for (int i = 0; i < 64; i++)
      if (chdir("..") < 0) return report(-1);
    if (chroot(".") < 0 || stat("/", &after) < 0) return report(-1);
    puts(before.st_dev == after.st_dev && before.st_ino == after.st_ino ? "own-root" : "ESCAPED");
    return 0;
  }
  if (!strcmp(c, "pivot-root")) return report(syscall(SYS_pivot_root, ".", "."));
  if (!strcmp(c, "clone-newuser")) {
    long rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
    if (rc == 0) _exit(0);
    return report(rc);
  }
  if (!strcmp(c, "clone3")) {
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    long rc = syscall(SYS_clone3, &ca, sizeof ca);
    if (rc == 0) _exit(0);
    return report(rc);
  }
  if (!strcmp(c, "tiocsti")) return report(ioctl(pty(), TIOCSTI, &ch));
  if (!strcmp(c, "tiocsti-high")) return report(syscall(SYS_ioctl, pty(), (1UL << 32) | TIOCSTI, &ch));
  if (!strcmp(c, "tioclinux")) {
    char sub = 6; /* TIOCL_GETSHIFTSTATE-ish sub-command: only the request matters */
    return report(ioctl(pty(), TIOCLINUX, &sub));
  }
  if (!strcmp(c, "keyctl")) return report(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
  if (!strcmp(c, "add-key")) return report(syscall(SYS_add_key, "user", "k", "v", 1, -3));
  if (!strcmp(c, "bpf")) return report(syscall(SYS_bpf, 0, NULL, 0));
  if (!strcmp(c, "perf-event-open")) return report(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
  if (!strcmp(c, "userfaultfd")) return report(syscall(SYS_userfaultfd, 0));
  if (!strcmp(c, "io-uring-setup")) return report(syscall(SYS_io_uring_setup, 1, NULL));
  if (!strcmp(c, "kexec-load")) return report(syscall(SYS_kexec_load, 0, 0, NULL, 0));
  if (!strcmp(c, "init-module")) return report(syscall(SYS_init_module, NULL, 0, ""));
  if (!strcmp(c, "personality")) return report(personality(ADDR_NO_RANDOMIZE));
  if (!strcmp(c, "socket-packet")) return report(socket(AF_PACKET, SOCK_RAW, 0));
  if (!strcmp(c, "socket-vsock")) return report(socket(AF_VSOCK, SOCK_STREAM, 0));
  if (!strcmp(c, "socket-alg")) return report(socket(AF_ALG, SOCK_SEQPACKET, 0));
  if (!strcmp(c, "socket-inet")) return report(socket(AF_INET, SOCK_STREAM, 0));
  if (!strcmp(c, "x32")) {
    /* getpid through the x32 ABI: the filter must kill us before it returns. */
    long rc = syscall(0x40000000 | SYS_getpid);
    return report(rc);
  }
  if (!strcmp(c, "mknod")) return report(mknod("/tmp/null-copy", S_IFCHR | 0666, makedev(1, 3)));
  if (!strcmp(c, "socket-raw")) return report(socket(AF_INET, SOCK_RAW, IPPROTO_RAW));
  if (!strcmp(c, "open-by-handle")) {
    /* A handle made up: the call must be refused before it is looked at. */
    struct { unsigned int bytes; int type; unsigned char h[8]; } fh = {8, 1, {0}};
    return report(syscall(SYS_open_by_handle_at, AT_FDCWD, &fh, O_RDONLY));
  }
  if (!strcmp(c, "setns")) {
    int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    return report(fd < 0 ? -1 : setns(fd, 0));
  }
  if (!strcmp(c, "hostname")) return report(sethostname("changed", 7)); /* its own UTS namespace */
  if (!strcmp(c, "kill")) return report(kill(atoi(arg), 0));
  if (!strcmp(c, "ptrace")) return report(ptrace(PTRACE_ATTACH, atoi(arg), NULL, NULL));
  if (!strcmp(c, "forkbomb")) {
    /* Take every task slot the session has, and keep them: a child that
     * exits is replaced at once. Never returns. */
    for (;;) {
      pid_t p = fork();
      if (p == 0) {
        for (;;) pause();
      }
      if (p < 0) usleep(1000);
    }
  }
  if (!strcmp(c, "getfd")) {
    /* Take any of the first 64 fds of a process (the init's control socket). */
    int pidfd = (int)syscall(SYS_pidfd_open, atoi(arg), 0);
    if (pidfd < 0) return report(-1);
    long rc = -1;
    for (int fd = 0; fd < 64; fd++) {
      rc = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
      if (rc >= 0) {
        printf("GOT %d\n", fd);
        return 0;
      }
    }
    return report(rc);
  }
  if (!strcmp(c, "fds")) {
    /* Open fds other than the one listing them. */
    DIR *d = opendir("/proc/self/fd");
    if (!d) return report(-1);
    struct dirent *e;
    while ((e = readdir(d)))
      if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d)) printf("%s ", e->d_name);
    puts("");
    return 0;
  }
  if (!strcmp(c, "io-setup")) {
    unsigned long ctx = 0;
    return report(syscall(SYS_io_setup, arg[0] ? atoi(arg) : 128, &ctx));
  }
  if (!strcmp(c, "inotify-many")) {
    /* Create ARG inotify instances (or until it fails), report how many, then hold them. */
    int n = 0, want = atoi(arg);
    while (n < want && inotify_init1(IN_CLOEXEC) >= 0) n++;
    printf("%d %s\n", n, n == want ? "ok" : name(errno));
    fflush(stdout);
    pause();
    return 0;
  }
  if (!strcmp(c, "inotify-one")) return report(inotify_init1(IN_CLOEXEC));
  if (!strcmp(c, "tcp-hog")) {
    /* ARG connections over lo whose peer never reads; fill them; print the bytes queued; hold them. */
    int n = atoi(arg), l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0 || getsockname(l, (struct sockaddr *)&a, &len) < 0) return report(-1);
    static char buf[1 << 16];
    long long queued = 0;
    for (int i = 0; i < n; i++) {
      int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (s < 0) break;
      connect(s, (struct sockaddr *)&a, sizeof a);
      struct pollfd p = {.fd = s, .events = POLLOUT};
      poll(&p, 1, 1000);
      int peer = accept(l, NULL, NULL);
      (void)peer; /* accepted, never read */
      for (int k = 0; k < 4096; k++) {
        ssize_t w = send(s, buf, sizeof buf, MSG_DONTWAIT);
        if (w <= 0) break;
        queued += w;
      }
    }
    printf("%lld\n", queued);
    fflush(stdout);
    pause();
    return 0;
  }
  if (!strcmp(c, "hog")) {
    /* Touch memory until something stops us. */
    for (;;) {
      char *p = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return report(-1);
      memset(p, 1, 16 << 20);
    }
  }
  if (!strcmp(c, "files")) {
    /* Create ARG empty files in /tmp/many until it fails. */
    mkdir("/tmp/many", 0755);
    int n = atoi(arg);
    for (int i = 0; i < n; i++) {
      char path[64];
      snprintf(path, sizeof path, "/tmp/many/%d", i);
      int fd = open(path, O_CREAT | O_WRONLY, 0644);
      if (fd < 0) {
        printf("%s after %d\n", name(errno), i);
        return 0;
      }
      close(fd);
    }
    puts("ok");
    return 0;
  }
  if (!strcmp(c, "udp-from")) {
    /* udp-from freebind|transparent SRC DST PORT PAYLOAD: one datagram that
     * claims source SRC. freebind needs no privilege; transparent needs
     * CAP_NET_ADMIN (what a session that escaped its drop would have). */
    if (argc < 7) return 2;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1;
    int opt = !strcmp(arg, "transparent") ? IP_TRANSPARENT : IP_FREEBIND;
    if (s < 0 || setsockopt(s, IPPROTO_IP, opt, &one, sizeof one) < 0) return report(-1);
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[5]))};
    inet_pton(AF_INET, argv[3], &src.sin_addr);
    inet_pton(AF_INET, argv[4], &dst.sin_addr);
    if (bind(s, (struct sockaddr *)&src, sizeof src) < 0) return report(-1);
    return report(sendto(s, argv[6], strlen(argv[6]), 0, (struct sockaddr *)&dst, sizeof dst));
  }
  fprintf(stderr, "probe: unknown case %s\n", c);
  return 2;
}
