/*
 * systemd as the init of a nested PID namespace. The session's own init
 * (enclave-init) stays PID 1 of the session: it keeps forking every exec'd
 * command and reaping, so exec, the console and stop work whatever systemd
 * does. It forks systemd into a new PID namespace (systemd is PID 1 there,
 * as it requires) and a new mount namespace, where a procfs of that PID
 * namespace goes over /proc (journald and systemd read their peers' /proc
 * entries by the PIDs they see). Everything else is the session's: its user
 * and network namespaces, its cgroup namespace (rooted at its delegated
 * cgroups), its /run, /tmp and root, its seccomp filter and capabilities,
 * inherited across the fork as by any command. What systemd mounts stays in
 * its mount namespace; its sockets in /run (the private bus, journald's) are
 * on the session's /run tmpfs, so systemctl and journalctl from an exec
 * reach it.
 */
#include "boot.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

struct boot_error {
  int step;
  int err;
  char detail[160];
};

static __attribute__((noreturn)) void boot_fail(int fd, int err, const char *what) {
  struct boot_error e = {.step = STEP_BOOT, .err = err};
  snprintf(e.detail, sizeof e.detail, "%s", what);
  (void)!write(fd, &e, sizeof e);
  _exit(127);
}

/* /etc/machine-id as systemd wants it in a container: the session's own, kept
 * when it has one already (a start after a stop: its root was stored). */
static void machine_id(int fd, const char *id) {
  int f = open("/etc/machine-id", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0444);
  if (f < 0) boot_fail(fd, errno, "open /etc/machine-id");
  struct stat st;
  if (fstat(f, &st) < 0) boot_fail(fd, errno, "stat /etc/machine-id");
  if (st.st_size == 0) {
    char line[40];
    int n = snprintf(line, sizeof line, "%s\n", id);
    if (write(f, line, (size_t)n) != n) boot_fail(fd, errno ? errno : EIO, "write /etc/machine-id");
  }
  close(f);
}

static __attribute__((noreturn)) void boot_child(int fd, const char *init, const char *id) {
  sigset_t none;
  sigemptyset(&none);
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL); /* the init's SIG_IGN of SIGPIPE would survive execve */
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (setsid() < 0) boot_fail(fd, errno, "setsid");
  /* Our copy of the session's mounts (private: nothing propagates back). */
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) boot_fail(fd, errno, "mount a procfs of systemd's PID namespace on /proc");
  machine_id(fd, id);
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) boot_fail(fd, errno, "close_range");
  if (chdir("/") < 0) boot_fail(fd, errno, "chdir /");
  /* container= tells systemd it is a container's init (sd_booted, virt detection, which units apply). */
  char *argv[] = {(char *)init, NULL};
  char *envp[] = {"container=enclave", NULL};
  execve(init, argv, envp);
  char what[200];
  snprintf(what, sizeof what, "execve %s", init);
  boot_fail(fd, errno, what);
}

pid_t boot_start(const char *init, const char *machine, enum step *step, int *err, char *detail, size_t detail_len) {
  int p[2];
  *step = STEP_BOOT;
  if (strlen(machine) != 32 || strspn(machine, "0123456789abcdef") != 32) {
    *err = EINVAL;
    snprintf(detail, detail_len, "the plan's machine ID is not 32 hex digits");
    return -1;
  }
  if (pipe2(p, O_CLOEXEC) < 0) {
    *err = errno;
    snprintf(detail, detail_len, "pipe2");
    return -1;
  }
  /* Like fork, in a new PID and mount namespace (a NULL stack: copy-on-write). */
  pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | SIGCHLD, NULL, NULL, NULL, NULL);
  if (pid < 0) {
    *err = errno;
    snprintf(detail, detail_len, "clone a PID and mount namespace for systemd");
    close(p[0]);
    close(p[1]);
    return -1;
  }
  if (pid == 0) {
    close(p[0]);
    boot_child(p[1], init, machine);
  }
  close(p[1]);
  struct boot_error e;
  ssize_t n;
  do n = read(p[0], &e, sizeof e);
  while (n < 0 && errno == EINTR);
  close(p[0]);
  if (n == 0) return pid; /* closed on exec: systemd runs */
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  if (n != (ssize_t)sizeof e) {
    *err = n < 0 ? errno : EPROTO;
    snprintf(detail, detail_len, "systemd's child ended before it said why");
    return -1;
  }
  e.detail[sizeof e.detail - 1] = '\0';
  *err = e.err;
  snprintf(detail, detail_len, "%s", e.detail);
  return -1;
}

int boot_enter(pid_t pid, int *mnt, char *detail, size_t detail_len) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/pid", pid);
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0 || setns(ns, CLONE_NEWPID) < 0) {
    int e = errno;
    if (ns >= 0) close(ns);
    snprintf(detail, detail_len, "enter systemd's PID namespace for the commands to come");
    return errno = e, -1;
  }
  close(ns);
  snprintf(path, sizeof path, "/proc/%d/ns/mnt", pid);
  if ((*mnt = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
    snprintf(detail, detail_len, "open systemd's mount namespace");
    return -1;
  }
  return 0;
}
