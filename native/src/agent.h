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
 * datagrams of NUL-terminated fields: the verb, then the verb's fields as
 * AGENT_VERBS below lists them (both directions). agent.c checks what the
 * daemon sends against that table before it acts, and
 * native/tools/gen-contract.mjs turns the same table into the daemon's
 * encoder and validating decoder (src/native/contract.gen.ts).
 *
 * Every command's environment is the daemon's ENV entries, then the plan's
 * exec-phase ops: env NAME VALUE, and env-file NAME PATH (a secret file the
 * session holds, read right before execve, so a refreshed file is what the
 * next command sees).
 *
 * exec-as is exec run as another user of the session (docker's exec -u):
 * the forked child resolves USER against the session's /etc/passwd and
 * /etc/group (users.h) and sets its groups, gid and uid before its cwd and
 * execve; HOME, USER and LOGNAME come from passwd unless the daemon's ENV
 * has them, and an empty CWD is that HOME. A verb of its own rather than a
 * new exec field: an init of an older version (a session that outlived a
 * daemon upgrade) still runs plain execs, and answers exec-as with nothing,
 * never by running the command as root.
 */
#ifndef ENCLAVE_AGENT_H
#define ENCLAVE_AGENT_H

/* Limits of the channel. */
#define AGENT_MAX_MSG (128 * 1024)   /* the largest message the init reads (an exec: its argv, env, cwd and framing) */
#define AGENT_MAX_FIELDS 8200        /* the most fields of one message the init reads */
#define AGENT_MAX_FDS 3              /* the most fds one message to the init carries */
#define AGENT_MAX_ID 64              /* the longest exec id */
#define AGENT_MAX_FIELD 400          /* the longest field the init sends (a longer one is cut) */
#define AGENT_MAX_EXECS 256          /* commands running through the daemon at once */
#define AGENT_MAX_EXPORT (64 * 1024) /* the largest file an env-file op exports (a token, a key) */
#define AGENT_NUM_MAX 9999999999LL   /* numbers on the wire have at most ten digits */
#define AGENT_MAX_CWD 4096           /* the longest cwd of an exec-as ("": the user's HOME) */
#define AGENT_MAX_USER 65            /* the longest user of an exec-as: NAME[:GROUP] or UID[:GID] (users.h) */

/*
 * A console's output ring: a memfd the daemon makes and maps, and hands the
 * init with "keep". The init keeps it, with its own copy of the console's
 * pty master, so the console outlives the daemon: while no daemon is
 * connected the init reads the master into the ring (at most its capacity
 * since the daemon left, then it stops reading and the shell's writes
 * block), and the next daemon gets both back ("kept", "ring") and maps the
 * ring to show the screen. Layout: a header, then the bytes; `written` is
 * the running offset of the next byte (data at written % capacity).
 */
#define RING_MAGIC 0x52434e45       /* "ENCR", little-endian, at offset 0 (u32) */
#define RING_HEADER 64              /* bytes before the data */
#define RING_CAPACITY_AT 8          /* u64: the data's size */
#define RING_WRITTEN_AT 16          /* u64: bytes ever written */
#define RING_MAX (256 * 1024 * 1024) /* the largest ring the init maps */

/*
 * Field kinds, and what the reader of a field requires of it. lo and hi are
 * the field's bounds in its verb's row. The init reads no negative number.
 */
#define AGENT_FIELD_KINDS(X)                                                              \
  X(ID, "an exec id: 1 to AGENT_MAX_ID bytes")                                            \
  X(FLAG, "0 or 1")                                                                       \
  X(NUM, "a decimal number (optionally negative) of at most ten digits, within [lo, hi]") \
  X(PATH, "an absolute path")                                                             \
  X(TEXT, "text of at most hi characters")                                                \
  X(LIST, "a count within [lo, what the message holds], then that many text fields")      \
  X(MODE, "octal permission bits, checked by the verb's handler")                         \
  X(BYTES, "any bytes but NUL (a file's content)")

/* Who sends a verb. */
enum agent_direction { TO_INIT, TO_DAEMON };

/*
 * The verbs, both directions: name, direction, the fds a message carries,
 * and its fields F(name, kind, lo, hi) in order.
 */
#define AGENT_VERBS(X)                                                                                    \
  X(EXEC, "exec", TO_INIT, "stdin (if stdin), stdout and stderr; none with tty",                          \
    F("id", ID, 0, 0) F("tty", FLAG, 0, 1) F("stdin", FLAG, 0, 1) F("cols", NUM, 0, 1000)                 \
    F("rows", NUM, 0, 500) F("cwd", PATH, 0, 0) F("argv", LIST, 1, 0) F("env", LIST, 0, 0))              \
  X(EXEC_AS, "exec-as", TO_INIT, "as exec", /* exec as another user; cwd "": the user's HOME */           \
    F("id", ID, 0, 0) F("tty", FLAG, 0, 1) F("stdin", FLAG, 0, 1) F("cols", NUM, 0, 1000)                 \
    F("rows", NUM, 0, 500) F("cwd", TEXT, 0, AGENT_MAX_CWD) F("user", TEXT, 0, AGENT_MAX_USER)             \
    F("argv", LIST, 1, 0) F("env", LIST, 0, 0))                                                           \
  X(SIGNAL, "signal", TO_INIT, "", F("id", ID, 0, 0) F("signo", NUM, 1, 64))                              \
  X(RELEASE, "release", TO_INIT, "", F("id", ID, 0, 0)) /* a tty command's master is drained */           \
  X(KEEP, "keep", TO_INIT, "the console's output ring (a memfd)", F("id", ID, 0, 0)) /* outlive the daemon */ \
  X(QUIESCE, "quiesce", TO_INIT, "", F("signo", NUM, 1, 64)) /* signal every process but the init; "quiet" when none is left */ \
  X(BOOT, "boot", TO_INIT, "", F("id", ID, 0, 0)) /* start the plan's boot op (systemd); "started ID PID" or "failed" */ \
  X(WRITE, "write", TO_INIT, "", /* refresh a secret file */                                               \
    F("id", ID, 0, 0) F("dir", TEXT, 0, AGENT_MAX_MSG) F("leaf", TEXT, 0, AGENT_MAX_MSG)                   \
    F("mode", MODE, 0, 0777) F("gid", NUM, 0, 65535) F("content", BYTES, 0, 0))                          \
  X(STARTED, "started", TO_DAEMON, "the pty master, with tty", F("id", ID, 0, 0) F("pid", NUM, 2, AGENT_NUM_MAX)) \
  X(FAILED, "failed", TO_DAEMON, "",                                                                      \
    F("id", ID, 0, 0) F("step", TEXT, 0, 32) F("errno", NUM, -AGENT_NUM_MAX, AGENT_NUM_MAX)              \
    F("detail", TEXT, 0, AGENT_MAX_FIELD))                                                                \
  X(EXITED, "exited", TO_DAEMON, "", F("id", ID, 0, 0) F("code", NUM, -1, 255) F("signal", NUM, 0, 64))   \
  X(WRITTEN, "written", TO_DAEMON, "", F("id", ID, 0, 0))                                                 \
  X(ENDING, "ending", TO_DAEMON, "", F("code", NUM, 129, 192)) /* the session is stopping; the init exits with CODE */ \
  X(KEPT, "kept", TO_DAEMON, "the console's pty master", /* to a new connection, per kept console */       \
    F("id", ID, 0, 0) F("pid", NUM, 2, AGENT_NUM_MAX) F("cols", NUM, 1, 1000) F("rows", NUM, 1, 500))         \
  X(RING, "ring", TO_DAEMON, "the console's output ring", F("id", ID, 0, 0))                              \
  X(KEPT_DONE, "kept-done", TO_DAEMON, "", F("count", NUM, 0, AGENT_MAX_EXECS)) /* every kept console sent */ \
  X(QUIET, "quiet", TO_DAEMON, "", F("signo", NUM, 1, 64)) /* no process but the init is left (after quiesce SIGNO) */

#define AGENT_KIND_ENUM(id, what) FIELD_##id,
enum agent_kind { AGENT_FIELD_KINDS(AGENT_KIND_ENUM) };
#undef AGENT_KIND_ENUM

#define AGENT_VERB_ENUM(id, name, dir, fds, fields) VERB_##id,
enum agent_verb { AGENT_VERBS(AGENT_VERB_ENUM) VERB_COUNT };
#undef AGENT_VERB_ENUM

struct plan;
__attribute__((noreturn)) void agent_run(int listen_fd, const struct plan *plan);

#endif
