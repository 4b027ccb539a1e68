/*
 * The session's PID 1 once it is set up. It reaps every process of the
 * session, stops the session on a signal from outside it, and starts
 * commands for the daemon: each one is forked here, inside the session, so
 * it inherits the namespaces, cgroups, rlimits, dropped capabilities and
 * seccomp filter the session was created with, and nothing else.
 *
 * The daemon asks over the control socket that the helper's parent bound on
 * the host (host netns, a path under the 0700 state dir that the session
 * has masked), so no session process can name it. Messages are SEQPACKET
 * datagrams of NUL-terminated fields:
 *   daemon -> init  exec ID TTY STDIN COLS ROWS CWD ARGC ARGV... ENVC ENV...
 *                   (with the stdin?, stdout, stderr fds unless TTY)
 *                   signal ID SIGNO
 *                   release ID   (a tty command's master is drained)
 *                   write ID DIR LEAF MODE CONTENT   (refresh a secret file)
 *   init -> daemon  started ID PID (with the pty master if TTY)
 *                   failed ID STEP ERRNO DETAIL
 *                   exited ID CODE SIGNAL
 *                   written ID
 *                   ending CODE   (the session is stopping; the init exits with CODE)
 *
 * Every command's environment is the daemon's ENV entries, then the plan's
 * exec-phase ops: env NAME VALUE, and env-file NAME PATH (a secret file the
 * session holds, read right before execve, so a refreshed file is what the
 * next command sees).
 */
#ifndef ENCLAVE_AGENT_H
#define ENCLAVE_AGENT_H

#define AGENT_MAX_MSG (128 * 1024)
#define AGENT_MAX_EXECS 256
/* Largest file an env-file op exports (a token, a key). */
#define AGENT_MAX_EXPORT (64 * 1024)

struct plan;
__attribute__((noreturn)) void agent_run(int listen_fd, const struct plan *plan);

#endif
