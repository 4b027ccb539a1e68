/*
 * Terminal mode for enclave-enter: the command's terminal is a pty of the
 * session's own devpts (so `tty`, ttyname() and /proc/self/fd agree inside
 * the session), and enter relays bytes between it and its own stdio, which
 * is the daemon's pty. The daemon's pty is put in raw mode: line discipline,
 * echo and job-control signals happen once, in the session's pty.
 */
#ifndef ENCLAVE_TTYRELAY_H
#define ENCLAVE_TTYRELAY_H

#include <sys/types.h>

struct session_tty {
  int master; /* relay end, kept by enter */
  int slave;  /* the command's stdio and controlling terminal */
};

/* In the session's mount namespace: open /dev/ptmx there, unlock, open the
 * peer with TIOCGPTPEER (no path lookup), copy the size of our stdin's
 * terminal, make our stdin raw. -1 with errno and *what on failure. */
int session_tty_open(struct session_tty *t, const char **what);

/* In the child, before exec: new session, the pty as controlling terminal
 * and as fds 0-2. */
int session_tty_adopt(const struct session_tty *t, const char **what);

/* In enter after fork: relay until the command has exited and the session
 * pty is drained (EIO: no holder left), or a short while after the exit if
 * a background process keeps the pty open; window-size changes of our
 * terminal are applied to the session's. Returns the command's wait status. */
int session_tty_relay(struct session_tty *t, pid_t child);

#endif
