/*
 * enclave-enter: runs one command inside a running session.
 *
 *   enclave-enter --pid PID --start TICKS [--cgroup PROCS_FILE]... [--cwd DIR]
 *                 [--uid N] [--gid N] [--env NAME=VALUE]... [--tty] -- CMD [ARG...]
 *
 * This process runs as host root with an empty environment: the dynamic
 * loader of a host-root process must never see LD_PRELOAD and the like from
 * a caller. The command's environment is data (--env), installed only in the
 * child, inside the session, right before execve.
 * Steps: pin the session init with a pidfd and check its start time (a reused
 * PID is refused) -> non-dumpable -> join the session's cgroups -> drop
 * supplementary groups -> setns into all of the init's namespaces at once ->
 * session IDs -> fork into the PID namespace -> chdir, close stray fds, exec.
 * The parent stays outside the session's PID namespace, forwards signals and
 * exits as the command did (re-raising a fatal signal), so the daemon sees the
 * command's own status. Errors before exec: "enclave-enter: ..." on stderr and
 * exit 64 + step; exec failures exit 127 (not found) or 126 (not executable).
 * --tty (stdin is the daemon's pty): the command gets a pty of the session's
 * own devpts as its controlling terminal, and enter relays (ttyrelay.c).
 */
#include "common.h"
#include "harden.h"
#include "ttyrelay.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_CGROUPS 16
#define MAX_RLIMITS 8
#define MAX_ENV 1024
#define ALL_NS (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP)

static volatile pid_t child = -1;

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

static __attribute__((noreturn)) void die(enum step s, int err, const char *what) {
  /* stderr is the command's stderr: one readable line, then the step code. */
  dprintf(2, "enclave-enter: %s: %s\n", what, strerror(err));
  fail_step(-1, s, err, "%s", what);
}

int main(int argc, char **argv) {
  long long pid = -1, start = -1, uid = 0, gid = 0;
  const char *cwd = "/", *seccomp_path = NULL;
  const char *cgroups[MAX_CGROUPS];
  char *rlimits[MAX_RLIMITS];
  static char *envp[MAX_ENV + 1];
  int ncg = 0, nrl = 0, nenv = 0, i = 1;
  int tty_mode = 0;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) {
      i++;
      break;
    }
    if (!strcmp(a, "--tty")) {
      tty_mode = 1;
      continue;
    }
    if (i + 1 >= argc) die(STEP_USAGE, EINVAL, "option without a value");
    const char *v = argv[++i];
    if (!strcmp(a, "--pid")) pid = parse_u64(v);
    else if (!strcmp(a, "--start")) start = parse_u64(v);
    else if (!strcmp(a, "--uid")) uid = parse_u64(v);
    else if (!strcmp(a, "--gid")) gid = parse_u64(v);
    else if (!strcmp(a, "--cwd")) cwd = v;
    else if (!strcmp(a, "--cgroup") && ncg < MAX_CGROUPS) cgroups[ncg++] = v;
    else if (!strcmp(a, "--rlimit") && nrl < MAX_RLIMITS) rlimits[nrl++] = argv[i];
    else if (!strcmp(a, "--seccomp")) seccomp_path = v;
    else if (!strcmp(a, "--env") && nenv < MAX_ENV && strchr(v, '=')) envp[nenv++] = argv[i];
    else die(STEP_USAGE, EINVAL, "unknown option");
  }
  if (pid <= 0 || start < 0 || uid < 0 || gid < 0 || i >= argc || cwd[0] != '/') die(STEP_USAGE, EINVAL, "usage");
  /* Fail closed: no command runs in a session without the session's filter. */
  struct bpf_blob filter;
  if (!seccomp_path) die(STEP_SECCOMP, EINVAL, "no --seccomp program");
  if (read_bpf(seccomp_path, &filter) < 0) die(STEP_SECCOMP, errno, seccomp_path);

  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  if (pidfd < 0) die(STEP_IDENTITY, errno, "session init is gone");
  unsigned long long actual;
  /* Checked after pidfd_open: the fd now pins the process we verified. */
  if (read_start_time((int)pid, &actual) < 0 || actual != (unsigned long long)start)
    die(STEP_IDENTITY, ESRCH, "session init is gone (pid reused)");

  /* Nothing in the session may ptrace or read us before we exec. */
  if (prctl(PR_SET_DUMPABLE, 0) < 0) die(STEP_SETNS, errno, "PR_SET_DUMPABLE");
  char self[32];
  snprintf(self, sizeof self, "%d", getpid());
  for (int c = 0; c < ncg; c++)
    if (write_file(cgroups[c], self) < 0) die(STEP_CGROUP, errno, cgroups[c]);
  if (setgroups(0, NULL) < 0) die(STEP_SETID, errno, "setgroups");
  if (setns(pidfd, ALL_NS) < 0) die(STEP_SETNS, errno, "setns into the session");
  close(pidfd);
  if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) die(STEP_SETID, errno, "setresgid");
  if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) die(STEP_SETID, errno, "setresuid");
  /* Opened as the session's root, in its mount namespace: the pty belongs
   * to the session's devpts, not the host's. */
  struct session_tty tty = {.master = -1, .slave = -1};
  const char *tty_what = NULL;
  if (tty_mode && session_tty_open(&tty, &tty_what) < 0) die(STEP_TTY, errno, tty_what);

  /* Block forwarded signals until the child exists, so none is lost. */
  static const int fwd[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT};
  sigset_t set, old;
  sigemptyset(&set);
  for (size_t s = 0; s < sizeof fwd / sizeof fwd[0]; s++) sigaddset(&set, fwd[s]);
  sigprocmask(SIG_BLOCK, &set, &old);
  /* The child cannot see us across the PID namespace (getppid() is 0), so a
   * pipe whose write end only we hold tells it whether we are still alive. */
  int alive[2];
  if (pipe2(alive, O_CLOEXEC) < 0) die(STEP_FORK, errno, "pipe2");
  pid_t p = fork();
  if (p < 0) die(STEP_FORK, errno, "fork");
  if (p == 0) {
    close(alive[1]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct pollfd pfd = {.fd = alive[0], .events = POLLIN};
    if (poll(&pfd, 1, 0) != 0) _exit(STEP_EXIT_BASE + STEP_FORK); /* EOF: parent gone */
    sigprocmask(SIG_SETMASK, &old, NULL);
    /* Exactly what the session's init has: its rlimits, no capabilities,
     * no_new_privs, no inherited fds, the seccomp filter last. */
    for (int r = 0; r < nrl; r++) {
      char *eq = strchr(rlimits[r], '='), *colon = eq ? strchr(eq, ':') : NULL;
      if (!eq || !colon) die(STEP_RLIMIT, EINVAL, "--rlimit NAME=SOFT:HARD");
      *eq = *colon = '\0';
      if (apply_rlimit(rlimits[r], eq + 1, colon + 1) < 0) die(STEP_RLIMIT, errno, rlimits[r]);
    }
    const char *what = NULL;
    /* A session of its own: no controlling terminal (the daemon's, if it has
     * one, must never reach the session), or with --tty the session's pty. */
    if (tty_mode && session_tty_adopt(&tty, &what) < 0) die(STEP_TTY, errno, what);
    if (!tty_mode && setsid() < 0) die(STEP_TTY, errno, "setsid");
    if (drop_privileges(&what) < 0) die(STEP_CAPS, errno, what);
    if (chdir(cwd) < 0) die(STEP_CWD, errno, cwd);
    /* setns put our root at the session's; a cwd outside it reads "(unreachable)". */
    char here[PATH_MAX];
    if (!getcwd(here, sizeof here) || here[0] != '/') die(STEP_CWD, EPERM, "working directory outside the session root");
    if (syscall(SYS_close_range, 3, ~0U, 0) < 0) die(STEP_FDS, errno, "close_range");
    if (load_seccomp(&filter) < 0) die(STEP_SECCOMP, errno, "seccomp(SECCOMP_SET_MODE_FILTER)");
    /* Inside the session now: the command's environment, PATH lookup included. */
    environ = envp;
    execvp(argv[i], &argv[i]);
    int err = errno;
    dprintf(2, "enclave: %s: %s\n", argv[i], strerror(err));
    _exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
  }
  child = p;
  close(alive[0]);
  struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
  for (size_t s = 0; s < sizeof fwd / sizeof fwd[0]; s++) sigaction(fwd[s], &sa, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);

  int status;
  if (tty_mode) {
    status = session_tty_relay(&tty, p);
  } else {
    while (waitpid(p, &status, 0) < 0)
      if (errno != EINTR) die(STEP_FORK, errno, "waitpid");
  }
  /* Terminal mode: we are the last holder of the daemon's pty. libuv (1.46,
   * bundled with Node 20) takes POLLHUP plus a short read as end of stream,
   * but a pty master hands out at most 4095 bytes per read, so output still
   * buffered when we close is dropped (libuv issue #4992, fixed upstream in
   * 2026). Give the daemon a moment to read it first. Exit path only. */
  if (tty_mode) {
    struct timespec settle = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
    while (nanosleep(&settle, &settle) < 0 && errno == EINTR) {
    }
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  /* Die of the same signal, without a core file, so the status is exact. */
  int sig = WTERMSIG(status);
  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none);
  signal(sig, SIG_DFL);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, sig);
  sigprocmask(SIG_UNBLOCK, &only, NULL);
  raise(sig);
  return 128 + sig;
}
