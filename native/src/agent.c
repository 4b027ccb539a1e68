#include "agent.h"

#include "boot.h"
#include "common.h"
#include "plan.h"
#include "users.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

extern char **environ;

/* The verb table (agent.h), as data: each verb's fields with their kinds and bounds. */
struct agent_field {
  const char *name;
  enum agent_kind kind;
  long long lo, hi;
};

struct agent_verb_def {
  const char *name;
  enum agent_direction dir;
  const struct agent_field *field;
  int nfields;
};

#define F(name, kind, lo, hi) {name, FIELD_##kind, lo, hi},
#define AGENT_VERB_FIELDS(id, name, dir, fds, fields) static const struct agent_field fields_##id[] = {fields};
AGENT_VERBS(AGENT_VERB_FIELDS)
#undef AGENT_VERB_FIELDS
#define AGENT_VERB_DEF(id, name, dir, fds, fields) {name, dir, fields_##id, (int)(sizeof fields_##id / sizeof fields_##id[0])},
static const struct agent_verb_def verbs[VERB_COUNT] = {AGENT_VERBS(AGENT_VERB_DEF)};
#undef AGENT_VERB_DEF
#undef F

/*
 * A tty command's terminal as the init holds it: its own copy of the pty
 * master, so the pty lives on when the daemon's copy goes (a daemon that
 * dies would otherwise hang its consoles up), and for a console the daemon
 * asked to keep ("keep ID"), the output ring it gave us (agent.h).
 */
struct term {
  int master;          /* -1: none */
  int kept;            /* a console: it outlives the daemon */
  int ring_fd;         /* -1: none */
  unsigned char *ring; /* mapped, or NULL */
  uint64_t cap;        /* the ring's data bytes */
  uint64_t since;      /* its `written` when the daemon left */
  int hup;             /* no slave open (read would spin): not read until a daemon comes */
};

struct exec_rec {
  char id[AGENT_MAX_ID + 1];
  pid_t pid;      /* 0: free slot */
  int status_fd;  /* exec-error pipe until the command starts or fails */
  int slave_fd;   /* our copy of the pty slave: see held[] */
  int failed;     /* reported as failed: no exit report follows */
  struct term t;
};

/*
 * A pty slave we keep open after its command exited, until the daemon says
 * it has drained the master ("release ID"): with no slave open a master
 * reads EIO, and libuv (libuv#4992) then drops what was still buffered. Its
 * terminal (our master copy, a console's ring) goes with it.
 */
struct held_slave {
  char id[AGENT_MAX_ID + 1];
  int fd; /* -1: free */
  struct term t;
};
static struct held_slave held[AGENT_MAX_EXECS];

/* What the child writes on its status pipe when it cannot start (one write, under PIPE_BUF). */
struct start_error {
  int step;
  int err;
  char detail[160]; /* "": the step's own words (resolve_start) */
};

static struct exec_rec recs[AGENT_MAX_EXECS];
static const struct plan *session_plan; /* its exec-phase ops: the environment */
static int conn = -1;
static int stopping; /* the signal that told the session to stop, or 0 */
static int quiescing; /* the signal a "quiesce" sent, until no process but us is left; or 0 */
static const int stop_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
/*
 * --init systemd (boot.c): systemd's pid, or 0. A stop or quiesce asks it
 * to halt (SIGRTMIN+3, as systemd-nspawn and machinectl do: SIGTERM would
 * make it re-execute itself) and holds its own signals for the session's
 * other processes until it has ended, which takes its PID namespace with
 * it; the daemon's grace bounds the wait (then SIGKILL, as for any session).
 */
static pid_t boot_pid;
/* systemd's mount namespace: every command started after the boot enters it (exec_child). */
static int boot_mnt = -1;
static unsigned long long held_signals; /* bit N: signal N goes to every process once systemd has ended */
static const int handled[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

static const struct term no_term = {.master = -1, .ring_fd = -1};

static void term_close(struct term *t) {
  if (t->master >= 0) close(t->master);
  if (t->ring) munmap(t->ring, RING_HEADER + t->cap);
  if (t->ring_fd >= 0) close(t->ring_fd);
  *t = no_term;
}

static uint64_t ring_written(const struct term *t) {
  return __atomic_load_n((const uint64_t *)(t->ring + RING_WRITTEN_AT), __ATOMIC_ACQUIRE);
}

/* Bytes the init may still take from a kept console while no daemon reads it. */
static size_t ring_room(const struct term *t) {
  uint64_t used = ring_written(t) - t->since;
  return used >= t->cap ? 0 : (size_t)(t->cap - used);
}

/* Append to the ring, then publish the new end (a reader maps the same pages). */
static void ring_put(struct term *t, const unsigned char *b, size_t n) {
  uint64_t w = ring_written(t);
  for (size_t i = 0; i < n;) {
    size_t pos = (size_t)((w + i) % t->cap), k = n - i;
    if (k > t->cap - pos) k = (size_t)(t->cap - pos);
    memcpy(t->ring + RING_HEADER + pos, b + i, k);
    i += k;
  }
  __atomic_store_n((uint64_t *)(t->ring + RING_WRITTEN_AT), w + n, __ATOMIC_RELEASE);
}

static void drop_conn(void) {
  if (conn >= 0) close(conn);
  conn = -1;
  /* Nobody is left to drain those terminals. */
  for (int i = 0; i < AGENT_MAX_EXECS; i++) {
    if (held[i].fd >= 0) close(held[i].fd), held[i].fd = -1;
    term_close(&held[i].t);
  }
  for (int i = 0; i < AGENT_MAX_EXECS; i++) {
    struct term *t = &recs[i].t;
    if (recs[i].pid <= 0 || t->master < 0) continue;
    /* An exec --tty ends with its client, as its pty hangs up; a console is
     * kept, and read into its ring until the next daemon comes. */
    if (!t->kept) term_close(t);
    else t->since = ring_written(t), t->hup = 0;
  }
}

static void hold_slave(struct exec_rec *r) {
  if (r->slave_fd < 0 && r->t.master < 0) return;
  for (int i = 0; i < AGENT_MAX_EXECS && conn >= 0; i++) {
    if (held[i].fd >= 0 || held[i].t.master >= 0) continue;
    memcpy(held[i].id, r->id, sizeof held[i].id);
    held[i].fd = r->slave_fd;
    held[i].t = r->t;
    r->slave_fd = -1;
    r->t = no_term;
    return;
  }
  /* No daemon to drain it, or all slots held: this terminal just ends now. */
  if (r->slave_fd >= 0) close(r->slave_fd);
  r->slave_fd = -1;
  term_close(&r->t);
}

/* One datagram: the verb and its fields, NUL-terminated, optionally
 * carrying one fd. A daemon that does not read within a second loses the
 * connection, not us. */
#define SEND(verb, fd, ...) send_msg(verb, fd, (const char *[]){__VA_ARGS__}, (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)))
static void send_msg(enum agent_verb verb, int fd, const char *const *field, int n) {
  if (conn < 0) return;
  /* A message the table does not describe is never sent. */
  if (verbs[verb].dir != TO_DAEMON || n != verbs[verb].nfields) return;
  static char buf[1024];
  size_t used = strlen(verbs[verb].name) + 1;
  memcpy(buf, verbs[verb].name, used);
  for (int i = 0; i < n; i++) {
    size_t len = 0;
    while (len < AGENT_MAX_FIELD && field[i][len]) len++;
    if (used + len + 1 > sizeof buf) break;
    memcpy(buf + used, field[i], len);
    used += len;
    buf[used++] = '\0';
  }
  struct iovec iov = {buf, used};
  union {
    char space[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    memset(&ctl, 0, sizeof ctl);
    mh.msg_control = ctl.space;
    mh.msg_controllen = sizeof ctl.space;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t r;
  do r = sendmsg(conn, &mh, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0) drop_conn();
}

static void send_failed(const char *id, enum step step, int err, const char *detail) {
  char e[16];
  snprintf(e, sizeof e, "%d", err);
  SEND(VERB_FAILED, -1, id, step_name(step), e, detail);
}

/* The fields after the verb against the verb's row: 0 when they fit it. */
static int fields_fit(enum agent_verb verb, char **f, int nf) {
  const struct agent_verb_def *v = &verbs[verb];
  int i = 1;
  for (int k = 0; k < v->nfields; k++, i++) {
    const struct agent_field *d = &v->field[k];
    if (i >= nf) return -1;
    const char *s = f[i];
    long long n;
    switch (d->kind) {
      case FIELD_ID:
        if (!*s || strlen(s) > AGENT_MAX_ID) return -1;
        break;
      case FIELD_FLAG:
      case FIELD_NUM:
        if ((n = parse_u64(s)) < 0 || n < d->lo || n > d->hi) return -1;
        break;
      case FIELD_PATH:
        if (s[0] != '/') return -1;
        break;
      case FIELD_TEXT:
        if (strlen(s) > (size_t)d->hi) return -1;
        break;
      case FIELD_LIST: /* a count, then that many fields */
        if ((n = parse_u64(s)) < 0 || n < d->lo || n > nf - 1 - i) return -1;
        i += (int)n;
        break;
      case FIELD_MODE:  /* the handler checks it, with its own answer */
      case FIELD_BYTES: /* anything the framing can carry */
        break;
    }
  }
  return i == nf ? 0 : -1;
}

static struct exec_rec *find_rec(const char *id) {
  for (int i = 0; i < AGENT_MAX_EXECS; i++)
    if (recs[i].pid > 0 && !strcmp(recs[i].id, id)) return &recs[i];
  return NULL;
}

/* The status pipe is readable: an error report, or EOF at a successful exec. */
static void resolve_start(struct exec_rec *r) {
  struct start_error se;
  ssize_t n;
  do n = read(r->status_fd, &se, sizeof se);
  while (n < 0 && errno == EINTR);
  close(r->status_fd);
  r->status_fd = -1;
  if (n == (ssize_t)sizeof se) {
    r->failed = 1;
    const char *what = se.step == STEP_CWD ? "chdir" : se.step == STEP_ENV ? "read a file exported to the environment" : "execve";
    /* The child's own words (who it could not become): printable, terminated. */
    se.detail[sizeof se.detail - 1] = '\0';
    for (char *c = se.detail; *c; c++)
      if (*c < 0x20 || *c == 0x7f) *c = '?';
    if (se.step < 0 || se.step >= STEP_COUNT) se.step = STEP_EXEC;
    send_failed(r->id, (enum step)se.step, se.err, se.detail[0] ? se.detail : what);
  } else {
    char pid[16];
    snprintf(pid, sizeof pid, "%d", r->pid);
    /* The daemon gets a copy; ours keeps the pty alive (struct term). */
    SEND(VERB_STARTED, r->t.master, r->id, pid);
    return;
  }
  term_close(&r->t);
}

/* Signal every process of the session but us, or, while systemd runs, ask it to halt first. */
static void signal_all(int sig) {
  if (boot_pid > 0 && sig != SIGKILL) {
    kill(boot_pid, SIGRTMIN + 3);
    held_signals |= 1ULL << sig;
    return;
  }
  kill(-1, sig);
  kill(-1, SIGCONT);
}

/* systemd ended: what was held goes out now. Ended on its own (poweroff
 * inside, or a crash), the session stops, as a machine that powered off. */
static void booted_ended(void) {
  boot_pid = 0;
  if (boot_mnt >= 0) close(boot_mnt), boot_mnt = -1;
  if (!held_signals && !stopping && !quiescing) stopping = SIGTERM, held_signals = 1ULL << SIGTERM;
  for (int sig = 1; sig < 64; sig++)
    if (held_signals & (1ULL << sig)) kill(-1, sig);
  if (held_signals) kill(-1, SIGCONT);
  held_signals = 0;
}

static void reap(void) {
  for (;;) {
    int st = 0;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p < 0 && errno == EINTR) continue;
    /* Like a shell: a session stopped by signal N ends with 128 + N. */
    if (p < 0 && errno == ECHILD && stopping) {
      /* A daemon that is not our parent (it restarted and re-adopted us)
       * cannot wait for us: it hears how we end from us. */
      char code[16];
      snprintf(code, sizeof code, "%d", 128 + stopping);
      SEND(VERB_ENDING, -1, code);
      _exit(128 + stopping);
    }
    /* Asked to quiesce (a stop stores the files of a session at rest): say when it is. */
    if (p < 0 && errno == ECHILD && quiescing) {
      char sig[16];
      snprintf(sig, sizeof sig, "%d", quiescing);
      SEND(VERB_QUIET, -1, sig);
      quiescing = 0;
    }
    if (p <= 0) return;
    if (p == boot_pid) booted_ended();
    for (int i = 0; i < AGENT_MAX_EXECS; i++) {
      struct exec_rec *r = &recs[i];
      if (r->pid != p) continue;
      if (r->status_fd >= 0) resolve_start(r); /* died before we polled it */
      if (!r->failed) {
        char code[16], sig[16];
        snprintf(code, sizeof code, "%d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        snprintf(sig, sizeof sig, "%d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        SEND(VERB_EXITED, -1, r->id, code, sig);
      }
      if (r->failed && r->slave_fd >= 0) close(r->slave_fd), r->slave_fd = -1;
      if (r->failed) term_close(&r->t);
      hold_slave(r);
      r->pid = 0;
    }
  }
}

/* The status pipe carries the failure; the daemon maps it (126/127 and the
 * rest). The child's own exit status is never reported. */
static __attribute__((noreturn)) void child_fail_why(int status_fd, enum step step, int err, const char *why) {
  struct start_error se = {.step = step, .err = err};
  snprintf(se.detail, sizeof se.detail, "%s", why);
  (void)write_all(status_fd, &se, sizeof se);
  _exit(127);
}

static __attribute__((noreturn)) void child_fail(int status_fd, enum step step) {
  child_fail_why(status_fd, step, errno, "");
}

/* NAME=VALUE into env (n entries, room for one more), replacing NAME. */
static void env_set(char **env, int *n, const char *name, const char *value, size_t vlen) {
  size_t nlen = strlen(name);
  char *kv = malloc(nlen + 1 + vlen + 1);
  if (!kv) return;
  memcpy(kv, name, nlen);
  kv[nlen] = '=';
  memcpy(kv + nlen + 1, value, vlen);
  kv[nlen + 1 + vlen] = '\0';
  for (int i = 0; i < *n; i++)
    if (!strncmp(env[i], name, nlen) && env[i][nlen] == '=') return (void)(env[i] = kv);
  env[(*n)++] = kv;
  env[*n] = NULL;
}

/* A file the session owns, exported as a variable: a regular file only (a
 * FIFO would block, a symlink could point anywhere), bounded, no NUL. */
static int read_export(const char *path, char *buf, size_t cap, size_t *len) {
  struct open_how how = {.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW, .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
  int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
  if (fd < 0) return -1;
  struct stat st;
  ssize_t n = -1;
  if (fstat(fd, &st) < 0) goto out;
  if (!S_ISREG(st.st_mode)) {
    errno = EINVAL;
    goto out;
  }
  if ((size_t)st.st_size > cap) {
    errno = E2BIG;
    goto out;
  }
  n = read(fd, buf, cap);
  if (n >= 0 && memchr(buf, '\0', (size_t)n)) errno = EINVAL, n = -1;
out:
  close(fd);
  if (n < 0) return -1;
  *len = (size_t)n;
  return 0;
}

/* The daemon's environment, then the plan's: what the session declared at
 * create (its variables, its exported secrets) wins. Runs in the child. */
static char **command_env(char **envp, int envc, int status_fd, const struct exec_user *u);

/*
 * Become the user an exec-as names (users.h), resolved here in the child
 * against the session's files, never in the init (a hostile /etc/passwd
 * costs this child only): its groups, its gid, then its uid, last, while
 * the other two may still change. Any failure is the exec's.
 */
static void become(int status_fd, const char *spec, int tty, struct exec_user *u) {
  char why[sizeof ((struct start_error *)0)->detail];
  if (user_resolve(spec, u, why, sizeof why) < 0) child_fail_why(status_fd, STEP_USER, errno, why);
  /* Its terminal is its own, as login and runc make it. */
  if (tty && fchown(0, u->uid, u->gid) < 0) child_fail_why(status_fd, STEP_USER, errno, "chown its terminal");
  if (setgroups((size_t)u->ngroups, u->groups) < 0) {
    int e = errno;
    snprintf(why, sizeof why, "setgroups to %d group%s refused", u->ngroups, u->ngroups == 1 ? "" : "s");
    child_fail_why(status_fd, STEP_USER, e, why);
  }
  const char *which = NULL;
  unsigned id = 0;
  if (setresgid(u->gid, u->gid, u->gid) < 0) which = "gid", id = u->gid;
  else if (setresuid(u->uid, u->uid, u->uid) < 0) which = "uid", id = u->uid;
  if (!which) return;
  int e = errno;
  /* EINVAL: no mapping of it in the session's user namespace. */
  if (e == EINVAL) snprintf(why, sizeof why, "%s %u is outside the session's ID range", which, id);
  else snprintf(why, sizeof why, "setres%s to %u refused", which, id);
  child_fail_why(status_fd, STEP_USER, e, why);
}

static __attribute__((noreturn)) void exec_child(int status_fd, int tty_slave, const int *fds, int nfds, int with_stdin,
                                                 const char *cwd, const char *user, char **argv, char **envp) {
  sigset_t none;
  sigemptyset(&none);
  for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) signal(handled[i], SIG_DFL);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* Its own session: no controlling terminal but its own pty, if any. */
  if (setsid() < 0) child_fail(status_fd, STEP_STDIO);
  if (tty_slave >= 0) {
    if (ioctl(tty_slave, TIOCSCTTY, 0) < 0) child_fail(status_fd, STEP_TTY);
    for (int i = 0; i < 3; i++)
      if (dup2(tty_slave, i) < 0) child_fail(status_fd, STEP_STDIO);
  } else {
    int in = with_stdin ? fds[0] : open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0 || dup2(in, 0) < 0 || dup2(fds[nfds - 2], 1) < 0 || dup2(fds[nfds - 1], 2) < 0) child_fail(status_fd, STEP_STDIO);
  }
  /* Everything of ours closes at exec; a failure report still gets out. */
  if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) child_fail(status_fd, STEP_FDS);
  /* Booted: into systemd's mounts (its /proc shows its PID namespace, where we were forked), as root still. */
  if (boot_mnt >= 0 && setns(boot_mnt, CLONE_NEWNS) < 0) child_fail_why(status_fd, STEP_BOOT, errno, "enter systemd's mount namespace");
  static struct exec_user as;
  if (user) become(status_fd, user, tty_slave >= 0, &as);
  int envc = 0;
  while (envp[envc]) envc++;
  environ = command_env(envp, envc, status_fd, user ? &as : NULL);
  if (cwd[0]) {
    if (chdir(cwd) < 0) child_fail(status_fd, STEP_CWD);
  } else {
    /* No cwd asked for (exec-as): HOME, as the command's environment says
     * it; "/" when it is not a directory this user can enter, as login(1). */
    const char *home = getenv("HOME");
    if (!home || home[0] != '/' || chdir(home) < 0)
      if (chdir("/") < 0) child_fail(status_fd, STEP_CWD);
  }
  execvp(argv[0], argv);
  child_fail(status_fd, STEP_EXEC);
}

static int env_has(char **env, int n, const char *name) {
  size_t nlen = strlen(name);
  for (int i = 0; i < n; i++)
    if (!strncmp(env[i], name, nlen) && env[i][nlen] == '=') return 1;
  return 0;
}

static char **command_env(char **envp, int envc, int status_fd, const struct exec_user *u) {
  int n = envc, room = envc + (session_plan ? session_plan->nops : 0) + 3 + 1;
  char **env = calloc((size_t)room, sizeof *env);
  if (!env) child_fail(status_fd, STEP_ENV);
  memcpy(env, envp, (size_t)envc * sizeof *env);
  /* Another user's: HOME, USER and LOGNAME from its passwd line, unless the
   * caller set them (the daemon sends root's only for root's commands). */
  if (u && !env_has(env, n, "HOME")) env_set(env, &n, "HOME", u->home, strlen(u->home));
  if (u && u->name[0] && !env_has(env, n, "USER")) env_set(env, &n, "USER", u->name, strlen(u->name));
  if (u && u->name[0] && !env_has(env, n, "LOGNAME")) env_set(env, &n, "LOGNAME", u->name, strlen(u->name));
  static char value[AGENT_MAX_EXPORT];
  for (int i = 0; session_plan && i < session_plan->nops; i++) {
    const struct plan_op *op = &session_plan->op[i];
    if (op->id == OP_ENV) env_set(env, &n, op->arg[0], op->arg[1], strlen(op->arg[1]));
    if (op->id != OP_ENV_FILE) continue;
    size_t len = 0;
    if (read_export(op->arg[1], value, sizeof value, &len) == 0) env_set(env, &n, op->arg[0], value, len);
    /* Removed by the session, or (another user's command, read with its
     * rights) a secret not shared with this user: not exported. */
    else if (errno != ENOENT && !(u && errno == EACCES)) child_fail(status_fd, STEP_ENV);
  }
  return env;
}

static void handle_exec(enum agent_verb verb, char **f, int nf, int *fds, int nfds) {
  /* exec ID TTY STDIN COLS ROWS CWD ARGC ARGV... ENVC ENV...
   * exec-as ID TTY STDIN COLS ROWS CWD USER ARGC ARGV... ENVC ENV... */
  static char *argv[AGENT_MAX_FIELDS], *envp[AGENT_MAX_FIELDS];
  const char *id = nf > 1 ? f[1] : "";
  if (fields_fit(verb, f, nf) < 0) return send_failed(id, STEP_PROTOCOL, EINVAL, "malformed exec");
  int as = verb == VERB_EXEC_AS; /* the user's field shifts the lists by one */
  const char *user = as ? f[7] : NULL;
  if (as && ((f[6][0] && f[6][0] != '/') || !user_spec_valid(user))) return send_failed(id, STEP_PROTOCOL, EINVAL, "malformed exec-as");
  int tty = (int)parse_u64(f[2]), with_stdin = (int)parse_u64(f[3]), cols = (int)parse_u64(f[4]), rows = (int)parse_u64(f[5]);
  int argc = (int)parse_u64(f[7 + as]), envc = (int)parse_u64(f[8 + as + argc]);
  if (nfds != (tty ? 0 : 2 + with_stdin)) return send_failed(id, STEP_PROTOCOL, EBADF, "wrong number of fds");
  if (find_rec(id)) return send_failed(id, STEP_PROTOCOL, EEXIST, "duplicate exec id");
  if (stopping) return send_failed(id, STEP_STOPPING, ESHUTDOWN, "the session is stopping");
  struct exec_rec *r = NULL;
  for (int i = 0; i < AGENT_MAX_EXECS && !r; i++)
    if (recs[i].pid == 0) r = &recs[i];
  if (!r) return send_failed(id, STEP_FORK, EAGAIN, "too many commands running through the daemon");
  for (int i = 0; i < argc; i++) argv[i] = f[8 + as + i];
  argv[argc] = NULL;
  for (int i = 0; i < envc; i++) envp[i] = f[9 + as + argc + i];
  envp[envc] = NULL;

  int master = -1, slave = -1;
  if (tty) {
    /* A pty of the session's own devpts: the session owns both ends. */
    int unlock = 0;
    struct winsize ws = {.ws_row = (unsigned short)(rows ? rows : 24), .ws_col = (unsigned short)(cols ? cols : 80)};
    master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) return send_failed(id, STEP_TTY, errno, "open /dev/pts/ptmx");
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCSWINSZ, &ws) < 0 ||
        (slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
      int e = errno;
      close(master);
      return send_failed(id, STEP_TTY, e, "set up the pty");
    }
  }
  int sp[2];
  if (pipe2(sp, O_CLOEXEC) < 0) {
    int e = errno;
    if (tty) close(master), close(slave);
    return send_failed(id, STEP_FORK, e, "pipe2");
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(sp[0]);
    exec_child(sp[1], slave, fds, nfds, with_stdin, f[6], user, argv, envp);
  }
  int e = errno;
  close(sp[1]);
  if (pid < 0) {
    close(sp[0]);
    if (master >= 0) close(master), close(slave);
    return send_failed(id, STEP_FORK, e, "fork");
  }
  snprintf(r->id, sizeof r->id, "%s", id);
  r->pid = pid;
  r->status_fd = sp[0];
  r->t = no_term;
  r->t.master = master;
  r->slave_fd = slave;
  r->failed = 0;
}

static void handle_signal(char **f, int nf) {
  /* signal ID SIGNO: the command's process group, then the command. */
  if (fields_fit(VERB_SIGNAL, f, nf) < 0) return;
  int sig = (int)parse_u64(f[2]);
  struct exec_rec *r = find_rec(f[1]);
  if (!r || r->status_fd >= 0 || r->failed) return;
  kill(-r->pid, sig);
  kill(r->pid, sig);
}

/* quiesce SIGNO: every process of the session but us gets it (and a
 * SIGCONT, for a stopped one); "quiet" follows once none is left, at once if
 * none is. The session stays; a stop then stores its files and ends it. */
static void handle_quiesce(char **f, int nf) {
  if (fields_fit(VERB_QUIESCE, f, nf) < 0) return;
  quiescing = (int)parse_u64(f[1]);
  signal_all(quiescing);
  reap();
}

/* boot ID: start the plan's boot op (once; a repeat answers with its pid). */
static void handle_boot(char **f, int nf) {
  if (fields_fit(VERB_BOOT, f, nf) < 0) return;
  const struct plan_op *op = session_plan ? plan_find(session_plan, OP_BOOT) : NULL;
  if (!op) return send_failed(f[1], STEP_BOOT, EINVAL, "the session was not created with an init to boot");
  if (stopping || quiescing) return send_failed(f[1], STEP_STOPPING, ESHUTDOWN, "the session is stopping");
  if (boot_pid <= 0) {
    enum step step;
    int err = 0;
    char detail[200];
    pid_t pid = boot_start(op->arg[0], op->arg[1], &step, &err, detail, sizeof detail);
    if (pid < 0) return send_failed(f[1], step, err, detail);
    /* From now on our children are forked in systemd's PID namespace and
     * enter its mount namespace: systemd identifies a client of its private
     * bus by its PID (SO_PEERCRED), which must be one it can see, and
     * ps, systemctl and journalctl see the machine systemd runs. */
    if (boot_enter(pid, &boot_mnt, detail, sizeof detail) < 0) {
      err = errno;
      kill(pid, SIGKILL); /* reaped as any child; the create fails and is undone */
      return send_failed(f[1], STEP_BOOT, err, detail);
    }
    boot_pid = pid;
  }
  char pid[16];
  snprintf(pid, sizeof pid, "%d", boot_pid);
  SEND(VERB_STARTED, -1, f[1], pid);
}

static void handle_release(char **f, int nf) {
  /* release ID: the daemon drained this terminal's master. */
  if (fields_fit(VERB_RELEASE, f, nf) < 0) return;
  for (int i = 0; i < AGENT_MAX_EXECS; i++) {
    if ((held[i].fd < 0 && held[i].t.master < 0) || strcmp(held[i].id, f[1])) continue;
    if (held[i].fd >= 0) close(held[i].fd), held[i].fd = -1;
    term_close(&held[i].t);
  }
}

/* keep ID + a memfd: the console's output ring. From now on the console
 * outlives the daemon (drop_conn keeps it, agent_run reads it while no
 * daemon does, and a new connection gets it back). The ring is the daemon's
 * memory, untrusted as anything it sends: its size and header are checked. */
static void handle_keep(char **f, int nf, int *fds, int nfds) {
  if (fields_fit(VERB_KEEP, f, nf) < 0 || nfds != 1) return;
  struct exec_rec *r = find_rec(f[1]);
  struct stat st;
  if (!r || r->failed || r->status_fd >= 0 || r->t.master < 0 || r->t.ring) return;
  if (fstat(fds[0], &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= RING_HEADER || st.st_size > RING_HEADER + RING_MAX) return;
  unsigned char *ring = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
  if (ring == MAP_FAILED) return;
  uint32_t magic;
  uint64_t cap;
  memcpy(&magic, ring, sizeof magic);
  memcpy(&cap, ring + RING_CAPACITY_AT, sizeof cap);
  if (magic != RING_MAGIC || cap != (uint64_t)st.st_size - RING_HEADER) {
    munmap(ring, (size_t)st.st_size);
    return;
  }
  r->t.kept = 1;
  r->t.ring = ring;
  r->t.cap = cap;
  r->t.ring_fd = fds[0];
  fds[0] = -1; /* ours now */
}

/* To a new daemon: every kept console (its master and its ring), then how many. */
static void announce_kept(void) {
  int count = 0;
  for (int i = 0; i < AGENT_MAX_EXECS; i++) {
    struct exec_rec *r = &recs[i];
    if (r->pid <= 0 || !r->t.kept || r->t.master < 0) continue;
    struct winsize ws = {0};
    char pid[16], cols[8], rows[8];
    if (ioctl(r->t.master, TIOCGWINSZ, &ws) < 0 || !ws.ws_col || !ws.ws_row) ws.ws_col = 80, ws.ws_row = 24;
    snprintf(pid, sizeof pid, "%d", r->pid);
    snprintf(cols, sizeof cols, "%u", ws.ws_col > 1000 ? 1000u : ws.ws_col);
    snprintf(rows, sizeof rows, "%u", ws.ws_row > 500 ? 500u : ws.ws_row);
    SEND(VERB_KEPT, r->t.master, r->id, pid, cols, rows);
    SEND(VERB_RING, r->t.ring_fd, r->id);
    count++;
  }
  char n[16];
  snprintf(n, sizeof n, "%d", count);
  SEND(VERB_KEPT_DONE, -1, n);
}

/* write ID DIR LEAF MODE GID CONTENT: replace a secret file of the session
 * (the daemon's refresh-auth), atomically, as the session's root, of group
 * GID (a shared secret's group; 0 otherwise). Only the two secret mounts,
 * only a plain leaf name. */
static void handle_write(char **f, int nf) {
  if (fields_fit(VERB_WRITE, f, nf) < 0) return send_failed(nf > 1 ? f[1] : "", STEP_PROTOCOL, EINVAL, "malformed write");
  const char *id = f[1], *dir = f[2], *leaf = f[3];
  int mode = (int)strtol(f[4], NULL, 8);
  if (strcmp(dir, "/run/enclave/auth") && strcmp(dir, "/run/enclave/env")) return send_failed(id, STEP_WRITE, EPERM, "not a secret directory");
  if (!leaf[0] || leaf[0] == '.' || strlen(leaf) > 128 || strspn(leaf, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != strlen(leaf))
    return send_failed(id, STEP_WRITE, EINVAL, "not a plain file name");
  if (strspn(f[4], "01234567") != strlen(f[4]) || mode > 0777) return send_failed(id, STEP_WRITE, EINVAL, "bad mode");
  struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC, .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
  int dfd = (int)syscall(SYS_openat2, AT_FDCWD, dir, &how, sizeof how);
  if (dfd < 0) return send_failed(id, STEP_WRITE, errno, "open the secret directory");
  int rc = replace_file_at(dfd, leaf, (unsigned)mode, 0, (unsigned)parse_u64(f[5]), f[6], strlen(f[6]));
  int e = errno;
  close(dfd);
  if (rc < 0) return send_failed(id, STEP_WRITE, e, "replace the file");
  SEND(VERB_WRITTEN, -1, id);
}

static void read_conn(void) {
  static char buf[AGENT_MAX_MSG];
  static char *f[AGENT_MAX_FIELDS];
  union {
    char space[CMSG_SPACE(sizeof(int) * AGENT_MAX_FDS)];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {buf, sizeof buf};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space, .msg_controllen = sizeof ctl.space};
  ssize_t n = recvmsg(conn, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  int fds[AGENT_MAX_FDS], nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (nfds < AGENT_MAX_FDS) fds[nfds++] = fd;
      else close(fd);
    }
  }
  if (n <= 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || buf[n - 1] != '\0') {
    for (int i = 0; i < nfds; i++) close(fds[i]);
    if (n <= 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) drop_conn();
    return;
  }
  int nf = 0;
  for (char *p = buf; p < buf + n && nf < AGENT_MAX_FIELDS; p += strlen(p) + 1) f[nf++] = p;
  int verb = VERB_COUNT;
  for (int v = 0; v < VERB_COUNT && verb == VERB_COUNT; v++)
    if (verbs[v].dir == TO_INIT && !strcmp(f[0], verbs[v].name)) verb = v;
  switch (verb) {
    case VERB_EXEC:
    case VERB_EXEC_AS: handle_exec((enum agent_verb)verb, f, nf, fds, nfds); break;
    case VERB_SIGNAL: handle_signal(f, nf); break;
    case VERB_RELEASE: handle_release(f, nf); break;
    case VERB_WRITE: handle_write(f, nf); break;
    case VERB_KEEP: handle_keep(f, nf, fds, nfds); break;
    case VERB_QUIESCE: handle_quiesce(f, nf); break;
    case VERB_BOOT: handle_boot(f, nf); break;
    default: break; /* not a verb the init answers */
  }
  for (int i = 0; i < nfds; i++)
    if (fds[i] >= 0) close(fds[i]);
}

static void on_signal(int sigfd) {
  struct signalfd_siginfo si;
  while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
    for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++) {
      if ((int)si.ssi_signo != stop_signals[i]) continue;
      if (!stopping) stopping = (int)si.ssi_signo;
      signal_all(SIGTERM); /* every process of the session but us */
    }
  }
  reap();
}

static void noop_handler(int sig) { (void)sig; }

void agent_run(int listen_fd, const struct plan *plan) {
  session_plan = plan;
  sigset_t set;
  sigemptyset(&set);
  struct sigaction sa = {.sa_handler = noop_handler};
  /* A PID-ns init drops signals whose disposition is SIG_DFL, so install one. */
  for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) {
    sigaction(handled[i], &sa, NULL);
    sigaddset(&set, handled[i]);
  }
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) _exit(STEP_EXIT_BASE + STEP_READY);
  for (int i = 0; i < AGENT_MAX_EXECS; i++) held[i].fd = -1, held[i].t = no_term, recs[i].t = no_term;
  reap(); /* anything that exited before the signalfd existed */
  static struct pollfd pfd[3 + 2 * AGENT_MAX_EXECS];
  static struct exec_rec *pending[AGENT_MAX_EXECS], *reading[AGENT_MAX_EXECS];
  for (;;) {
    int n = 0, np = 0, nr = 0;
    pfd[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    pfd[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
    int conn_at = -1;
    if (conn >= 0) conn_at = n, pfd[n++] = (struct pollfd){.fd = conn, .events = POLLIN};
    for (int i = 0; i < AGENT_MAX_EXECS; i++) {
      if (recs[i].pid <= 0 || recs[i].status_fd < 0) continue;
      pending[np++] = &recs[i];
      pfd[n++] = (struct pollfd){.fd = recs[i].status_fd, .events = POLLIN};
    }
    /* No daemon: the kept consoles' output goes into their rings, up to a ring's capacity since the daemon left. */
    int kept_at = n;
    for (int i = 0; i < AGENT_MAX_EXECS && conn < 0; i++) {
      struct term *t = &recs[i].t;
      if (recs[i].pid <= 0 || !t->kept || t->master < 0 || t->hup || ring_room(t) == 0) continue;
      reading[nr++] = &recs[i];
      pfd[n++] = (struct pollfd){.fd = t->master, .events = POLLIN};
    }
    if (poll(pfd, (nfds_t)n, -1) < 0) continue;
    if (pfd[0].revents) on_signal(sigfd);
    int base = conn_at >= 0 ? conn_at + 1 : 2;
    for (int i = 0; i < np; i++)
      if (pfd[base + i].revents && pending[i]->status_fd == pfd[base + i].fd) resolve_start(pending[i]);
    for (int i = 0; i < nr; i++) {
      struct term *t = &reading[i]->t;
      if (t->master != pfd[kept_at + i].fd) continue;
      if (!(pfd[kept_at + i].revents & POLLIN)) {
        if (pfd[kept_at + i].revents) t->hup = 1;
        continue;
      }
      static unsigned char chunk[4096];
      size_t want = ring_room(t) < sizeof chunk ? ring_room(t) : sizeof chunk;
      ssize_t got = read(t->master, chunk, want);
      if (got > 0) ring_put(t, chunk, (size_t)got);
    }
    if (conn_at >= 0 && pfd[conn_at].revents && conn == pfd[conn_at].fd) {
      if (pfd[conn_at].revents & POLLIN) read_conn();
      else drop_conn();
    }
    if (pfd[1].revents & POLLIN) {
      /* A restarted daemon reconnects: the newest connection wins. */
      int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0) {
        struct timeval tv = {.tv_sec = 1};
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        drop_conn();
        conn = c;
        announce_kept();
      }
    }
  }
}
