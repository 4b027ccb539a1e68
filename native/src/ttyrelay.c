#include "ttyrelay.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* After the command exits, a background process may still hold the pty.
 * Give its output this long to go quiet, and never more than the cap;
 * closing our end then hangs the pty up (SIGHUP to what is left). */
#define LINGER_QUIET_MS 200
#define LINGER_MAX_MS 2000

int session_tty_open(struct session_tty *t, const char **what) {
  t->master = t->slave = -1;
  /* Resolved in the session's mount namespace: its devpts instance. */
  t->master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (t->master < 0) return *what = "open /dev/ptmx in the session", -1;
  int unlock = 0;
  if (ioctl(t->master, TIOCSPTLCK, &unlock) < 0) return *what = "unlock the session pty", -1;
  t->slave = ioctl(t->master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (t->slave < 0) return *what = "open the session pty's peer (TIOCGPTPEER)", -1;
  struct winsize ws;
  if (ioctl(0, TIOCGWINSZ, &ws) == 0 && ioctl(t->master, TIOCSWINSZ, &ws) < 0) return *what = "set the session pty's size", -1;
  struct termios raw;
  if (tcgetattr(0, &raw) < 0) return *what = "stdin is not a terminal", -1;
  cfmakeraw(&raw);
  if (tcsetattr(0, TCSANOW, &raw) < 0) return *what = "make the daemon's terminal raw", -1;
  return 0;
}

int session_tty_adopt(const struct session_tty *t, const char **what) {
  if (setsid() < 0) return *what = "setsid", -1;
  if (ioctl(t->slave, TIOCSCTTY, 0) < 0) return *what = "make the session pty the controlling terminal", -1;
  for (int fd = 0; fd < 3; fd++)
    if (dup2(t->slave, fd) < 0) return *what = "dup2 the session pty", -1;
  return 0; /* the originals are O_CLOEXEC */
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

struct buf {
  char data[65536];
  size_t len, off;
};

static int pending(const struct buf *b) {
  return b->off < b->len;
}

static int room(const struct buf *b) {
  return b->len < sizeof b->data;
}

/* Append what `from` has until b is full or `from` is empty: a pty hands out
 * at most 4 KiB per read, and one large write onwards is far cheaper than
 * many small ones. 0 ok or again later, -1 end (0 or EIO: no writer left). */
static int fill(struct buf *b, int from) {
  if (b->off == b->len) b->off = b->len = 0;
  while (room(b)) {
    ssize_t r = read(from, b->data + b->len, sizeof b->data - b->len);
    if (r > 0) {
      b->len += (size_t)r;
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    return -1;
  }
  return 0;
}

/* Write what b holds to `to`. 0 ok or again later, -1 the reader is gone. */
static int drain(struct buf *b, int to) {
  while (pending(b)) {
    ssize_t w = write(to, b->data + b->off, b->len - b->off);
    if (w > 0) {
      b->off += (size_t)w;
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) return -1;
    return 0;
  }
  b->off = b->len = 0;
  return 0;
}

int session_tty_relay(struct session_tty *t, pid_t child) {
  close(t->slave);
  t->slave = -1;
  /* fds 0-2 share one open file description: the daemon's pty. */
  set_nonblock(0);
  set_nonblock(t->master);
  int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
  if (pidfd < 0) {
    /* Without it the exit could go unnoticed while a background job holds the pty. */
    kill(child, SIGKILL);
    int st = 0;
    while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
    }
    close(t->master);
    return st;
  }
  sigset_t winch;
  sigemptyset(&winch);
  sigaddset(&winch, SIGWINCH);
  sigprocmask(SIG_BLOCK, &winch, NULL);
  int sigfd = signalfd(-1, &winch, SFD_CLOEXEC | SFD_NONBLOCK);

  static struct buf out, in; /* out: session -> daemon; in: daemon -> session */
  int status = 0, exited = 0, master_eof = 0, daemon_gone = 0;
  long long exited_at = 0;
  for (;;) {
    if (exited && !pending(&out)) {
      if (master_eof) break;
      long long waited = now_ms() - exited_at;
      if (waited >= LINGER_MAX_MS) break;
    }
    struct pollfd f[5] = {
        /* Read the session only when there is room to pass it on. */
        {.fd = t->master, .events = (short)((!master_eof && room(&out) ? POLLIN : 0) | (!master_eof && pending(&in) ? POLLOUT : 0))},
        {.fd = daemon_gone ? -1 : 1, .events = pending(&out) ? POLLOUT : 0},
        {.fd = daemon_gone || exited || pending(&in) ? -1 : 0, .events = POLLIN},
        {.fd = exited ? -1 : pidfd, .events = POLLIN},
        {.fd = sigfd, .events = POLLIN},
    };
    if (f[0].events == 0) f[0].fd = -1; /* else its POLLHUP would spin */
    if (f[1].events == 0) f[1].fd = -1;
    int timeout = exited && !pending(&out) ? LINGER_QUIET_MS : -1;
    int n = poll(f, 5, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (n == 0) break; /* exited, nothing pending, and the pty went quiet */
    if (f[3].revents) {
      if (waitpid(child, &status, WNOHANG) == child) {
        exited = 1;
        exited_at = now_ms();
      }
    }
    if (f[4].revents) {
      struct signalfd_siginfo si;
      while (read(sigfd, &si, sizeof si) == sizeof si) {
      }
      struct winsize ws;
      if (ioctl(0, TIOCGWINSZ, &ws) == 0) ioctl(t->master, TIOCSWINSZ, &ws);
    }
    /* Each direction: take what is there, pass it on at once (no extra
     * poll round on the keystroke path), keep the rest for POLLOUT. */
    if (f[2].revents && fill(&in, 0) < 0) daemon_gone = 1;
    if ((f[2].revents || f[0].revents & POLLOUT) && !master_eof && drain(&in, t->master) < 0) in.len = in.off = 0;
    if (f[0].revents & (POLLIN | POLLHUP | POLLERR) && room(&out)) {
      /* Read until EIO, not until POLLHUP: a pty hands out its buffer in
       * pieces, and HUP comes while pieces remain. */
      if (fill(&out, t->master) < 0) master_eof = 1;
    }
    if (!daemon_gone && pending(&out) && drain(&out, 1) < 0) daemon_gone = 1;
    if (daemon_gone) out.len = out.off = 0;
  }
  if (!exited) {
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
  }
  /* Hang up the session pty: whatever still holds it gets SIGHUP. */
  close(t->master);
  t->master = -1;
  sigprocmask(SIG_UNBLOCK, &winch, NULL);
  return status;
}
