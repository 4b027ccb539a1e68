/* enclave-front: the `enclave` command. It parses the line against the
 * command table (front_table.gen.h, generated from src/cli/commandTable.ts)
 * and answers the hot commands itself, straight over the daemon's API:
 *   session exec (-i, -t, -w, -e; without --env-file, -u), attach, show,
 *   list, stop, start, destroy (without --timeout).
 * Their output is the daemon's rendering (?format=text|ids|pretty, made by
 * the TypeScript functions the Node CLI prints with), the exec stream, or
 * the terminal of attach and exec -t (front_tty.c).
 * Everything else, and whatever it is unsure of (a usage error, --help, an
 * unknown flag, a session reference of another owner, a daemon it cannot
 * reach before sending anything), goes to the Node CLI by exec with the same
 * argv and environment, so the answer is the Node CLI's own.
 *   ENCLAVE_FRONT=node     always the Node CLI
 *   ENCLAVE_FRONT=explain  print what it would do (the request, or "node") and exit 0
 *   ENCLAVE_FRONT=modes    (tests) the terminal-mode restore for chunks on stdin (front_tty.c)
 */
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "front.h"
#include "front_table.gen.h"

#define MAX_FLAGS 64
#define MAX_ARGS 16
#define MAX_MULTI 1024

static int explain;
/* SIGPIPE as the caller left it, given back to the Node CLI. */
static struct sigaction old_pipe;
static int pipe_saved;

/* The Node CLI, with this argv: dist/bundle/main.js beside native/build/Release/ (where this binary is built). */
static _Noreturn void to_node(char **argv) {
  if (explain) {
    puts("node");
    exit(0);
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    fprintf(stderr, "enclave: cannot find the Node CLI: /proc/self/exe: %s\n", strerror(errno));
    exit(1);
  }
  self[n] = 0;
  for (int up = 0; up < 4; up++) {
    char *slash = strrchr(self, '/');
    if (!slash) break;
    *slash = 0;
  }
  struct buf cli = {0};
  buf_str(&cli, self);
  buf_str(&cli, "/dist/bundle/main.js");
  int argc = 0;
  while (argv[argc]) argc++;
  char **nargv = calloc((size_t)argc + 2, sizeof *nargv);
  if (!nargv) exit(1);
  nargv[0] = "node";
  nargv[1] = cli.data;
  for (int i = 1; i < argc; i++) nargv[i + 1] = argv[i];
  /* `node` from PATH, as the bundle's #!/usr/bin/env node finds it; with SIGPIPE as we found it (an ignored signal stays ignored across exec). */
  if (pipe_saved) sigaction(SIGPIPE, &old_pipe, NULL);
  execvp("node", nargv);
  fprintf(stderr, "enclave: cannot run the Node CLI (node %s): %s\n", cli.data, strerror(errno));
  exit(1);
}

struct line {
  const struct ft_command *cmd;
  int count[MAX_FLAGS]; /* per flag: the command's, then the global ones */
  const char *value[MAX_FLAGS];
  const char *args[MAX_ARGS];
  size_t nargs;
  /* The values of repeatable flags, in the order given. */
  const char *multi[MAX_MULTI];
  size_t multi_flag[MAX_MULTI], nmulti;
  char **trailing;
  size_t ntrailing;
};

static const struct ft_flag *flag_at(const struct line *l, size_t i) { return i < l->cmd->nflags ? &l->cmd->flags[i] : &ft_global_flags[i - l->cmd->nflags]; }
static size_t nflags(const struct line *l) { return l->cmd->nflags + FT_NGLOBAL_FLAGS; }

static long flag_named(const struct line *l, const char *name, size_t len) {
  for (size_t i = 0; i < nflags(l); i++) {
    const struct ft_flag *f = flag_at(l, i);
    if (strlen(f->name) == len && !strncmp(f->name, name, len)) return (long)i;
    for (const char *const *a = f->aliases; a && *a; a++)
      if (strlen(*a) == len && !strncmp(*a, name, len)) return (long)i;
  }
  return -1;
}

static long flag_short(const struct line *l, char c) {
  for (size_t i = 0; i < nflags(l); i++)
    if (flag_at(l, i)->short_name == c) return (long)i;
  return -1;
}

static int set_value(struct line *l, size_t f, const char *v) {
  l->count[f]++;
  l->value[f] = v;
  if (!flag_at(l, f)->multiple) return 1;
  if (l->nmulti == MAX_MULTI) return 0;
  l->multi_flag[l->nmulti] = f;
  l->multi[l->nmulti++] = v;
  return 1;
}

static int wants_more(const struct line *l) { return l->cmd->nargs > l->nargs || l->cmd->variadic; }

/* The line as src/cli/argv.ts parseLine reads it; 0 where that would be a usage error or --help (the Node CLI says so). */
static int parse(struct line *l, char **rest, size_t n) {
  if (nflags(l) > MAX_FLAGS) return 0;
  for (size_t i = 0; i < n; i++) {
    const char *a = rest[i];
    if (!strcmp(a, "--")) {
      if (l->cmd->trailing) {
        l->trailing = rest + i + 1;
        l->ntrailing = n - i - 1;
      } else
        for (size_t j = i + 1; j < n; j++) {
          if (l->nargs == MAX_ARGS) return 0;
          l->args[l->nargs++] = rest[j];
        }
      break;
    }
    if (!strncmp(a, "--", 2)) {
      const char *eq = strchr(a, '=');
      size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
      long f = flag_named(l, a + 2, len);
      if (f < 0) return 0;
      if (!flag_at(l, (size_t)f)->takes_value) {
        if (eq) return 0;
        l->count[f]++;
        continue;
      }
      const char *v = eq ? eq + 1 : i + 1 < n ? rest[++i] : NULL;
      if (!v || !set_value(l, (size_t)f, v)) return 0;
      continue;
    }
    if (a[0] == '-' && a[1]) {
      for (size_t j = 1; a[j]; j++) {
        long f = flag_short(l, a[j]);
        if (f < 0) return 0;
        if (!flag_at(l, (size_t)f)->takes_value) {
          l->count[f]++;
          continue;
        }
        const char *v = a[j + 1] ? a + j + 1 : i + 1 < n ? rest[++i] : NULL;
        if (!v || !set_value(l, (size_t)f, v)) return 0;
        break;
      }
      continue;
    }
    if (l->cmd->trailing && !wants_more(l)) {
      l->trailing = rest + i;
      l->ntrailing = n - i;
      break;
    }
    if (l->nargs == MAX_ARGS) return 0;
    l->args[l->nargs++] = a;
  }
  for (size_t i = 0; i < nflags(l); i++)
    if (l->count[i] && !strcmp(flag_at(l, i)->name, "help")) return 0;
  if (l->nargs < l->cmd->nrequired) return 0;
  if (!l->cmd->variadic && l->nargs > l->cmd->nargs) return 0;
  if (l->cmd->trailing && l->ntrailing == 0) return 0;
  return 1;
}

/* The command the words name, as commandTable.ts lookup finds it: the longest match, aliases on its last word. */
static const struct ft_command *lookup(char **words, size_t n, size_t *used) {
  const struct ft_command *best = NULL;
  for (size_t c = 0; c < FT_NCOMMANDS; c++) {
    const struct ft_command *cmd = &ft_commands[c];
    size_t k = cmd->nwords;
    if (n < k || (best && best->nwords >= k)) continue;
    int match = 1;
    for (size_t i = 0; i < k && match; i++) {
      int alias = 0;
      for (const char *const *a = cmd->aliases; i == k - 1 && a && *a; a++) alias |= !strcmp(words[i], *a);
      match = !strcmp(words[i], cmd->words[i]) || alias;
    }
    if (match) best = cmd;
  }
  if (best) *used = best->nwords;
  return best;
}

/* Whether only flags named in `ok` (NULL-terminated) were given. */
static int only(const struct line *l, const char *const *ok) {
  for (size_t i = 0; i < nflags(l); i++) {
    if (!l->count[i]) continue;
    int known = 0;
    for (const char *const *o = ok; *o; o++) known |= !strcmp(flag_at(l, i)->name, *o);
    if (!known) return 0;
  }
  return 1;
}

static const char *str(const struct line *l, const char *name) {
  long f = flag_named(l, name, strlen(name));
  return f >= 0 && l->count[f] ? l->value[f] : NULL;
}
static int has(const struct line *l, const char *name) {
  long f = flag_named(l, name, strlen(name));
  return f >= 0 && l->count[f];
}

static int matches(const char *re, const char *s, int flags) {
  regex_t r;
  if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB | flags)) return 0;
  int ok = !regexec(&r, s, 0, NULL, 0);
  regfree(&r);
  return ok;
}

/* A session id or one of the caller's names; UID:NAME and anything else go to the Node CLI (it checks them). */
static int plain_ref(const char *s) { return matches(FT_SESSION_ID_RE, s, 0) || matches(FT_SESSION_NAME_RE, s, 0); }

static int write_out(const char *p, size_t n) {
  while (n) {
    ssize_t w = write(1, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* One request whose reply (expected status `ok`) is printed as it came. A GET that breaks goes to the Node CLI (it can be asked again). */
static int request(char **argv, const char *socket, const char *method, const char *target, int ok) {
  if (explain) {
    printf("front %s %s\n", method, target);
    return 0;
  }
  int fd = net_connect(socket);
  if (fd < 0) to_node(argv);
  struct reply r = {0};
  int rc = http_call(fd, method, target, &r);
  close(fd);
  if (rc) {
    if (!strcmp(method, "GET")) to_node(argv);
    fprintf(stderr, "enclave: cannot reach the daemon at %s: socket hang up\n", socket);
    return 1;
  }
  if (r.status != ok) {
    char msg[4096];
    error_message(&r, msg, sizeof msg);
    size_t m = strlen(msg);
    while (m && strchr(" \t\r\n", msg[m - 1])) msg[--m] = 0;
    fprintf(stderr, "enclave: %s\n", msg);
    return 1;
  }
  return write_out(r.body.data ? r.body.data : "", r.body.len) ? 1 : 0;
}

/* -e as src/cli/envFlags.ts reads it: K=V as given, K alone from here (left out when unset); a name it would refuse goes to the Node CLI, which says why. */
static void add_env(char **argv, struct buf *t, const char *kv) {
  const char *eq = strchr(kv, '=');
  size_t n = eq ? (size_t)(eq - kv) : strlen(kv);
  char name[256];
  if (n == 0 || n >= sizeof name) to_node(argv);
  memcpy(name, kv, n);
  name[n] = 0;
  if (!matches(FT_ENV_NAME_RE, name, 0)) to_node(argv);
  for (const char *const *re = ft_secret_looking; *re; re++)
    if (matches(*re, name, REG_ICASE)) to_node(argv);
  const char *value = eq ? eq + 1 : getenv(name);
  if (!value) return;
  buf_str(t, "env=");
  buf_urlenc(t, name);
  buf_str(t, "%3D");
  buf_urlenc(t, value);
  buf_str(t, "&");
}

/* attach, exec -t: the WebSocket in the caller's terminal (front_tty.c). */
static int tty(char **argv, const char *socket, const char *target, const struct tty_opts *o) {
  if (explain) {
    printf("front WEBSOCKET %s\n", target);
    return 0;
  }
  int fd = net_connect(socket);
  if (fd < 0) to_node(argv);
  return tty_run(fd, target, o);
}

static void session_path(struct buf *b, const char *ref, const char *tail) {
  buf_str(b, "/v1/sessions/");
  buf_urlenc(b, ref);
  buf_str(b, tail);
}

static int run(char **argv, const struct line *l, const char *socket) {
  struct buf t = {0};
  const char *ref = l->nargs ? l->args[0] : NULL;
  switch (l->cmd->hot) {
  case FT_SESSION_LIST: {
    static const char *const ok[] = {"all", "quiet", "json", "socket", NULL};
    if (!only(l, ok)) to_node(argv);
    buf_str(&t, "/v1/sessions?");
    if (has(l, "all")) buf_str(&t, "all=1&");
    buf_str(&t, has(l, "json") ? "format=pretty" : has(l, "quiet") ? "format=ids" : "format=text");
    return request(argv, socket, "GET", t.data, 200);
  }
  case FT_SESSION_SHOW:
  case FT_SESSION_STOP:
  case FT_SESSION_START: {
    static const char *const ok[] = {"json", "socket", NULL};
    if (!only(l, ok) || !plain_ref(ref)) to_node(argv);
    int show = l->cmd->hot == FT_SESSION_SHOW;
    session_path(&t, ref, show ? "" : l->cmd->hot == FT_SESSION_STOP ? "/stop" : "/start");
    buf_str(&t, has(l, "json") ? "?format=pretty" : "?format=text");
    return request(argv, socket, show ? "GET" : "POST", t.data, 200);
  }
  case FT_SESSION_DESTROY: {
    static const char *const ok[] = {"force", "socket", NULL};
    if (!only(l, ok) || !plain_ref(ref)) to_node(argv);
    session_path(&t, ref, has(l, "force") ? "?force=1" : "");
    return request(argv, socket, "DELETE", t.data, 204);
  }
  case FT_SESSION_ATTACH: {
    static const char *const ok[] = {"ro", "detach-keys", "socket", NULL};
    if (!only(l, ok) || !plain_ref(ref)) to_node(argv);
    struct tty_opts o = {.input = 1, .read_only = has(l, "ro")};
    if (!tty_detach_keys(str(l, "detach-keys") ? str(l, "detach-keys") : FT_DEFAULT_DETACH_KEYS, o.keys, sizeof o.keys, &o.nkeys)) to_node(argv);
    session_path(&t, ref, o.read_only ? "/attach?role=ro" : "/attach?role=rw");
    tty_query_size(&t);
    return tty(argv, socket, t.data, &o);
  }
  case FT_SESSION_EXEC: {
    static const char *const ok[] = {"interactive", "workdir", "env", "socket", NULL};
    static const char *const ok_tty[] = {"interactive", "tty", "workdir", "env", "detach-keys", "socket", NULL};
    int tty_on = has(l, "tty");
    if (!only(l, tty_on ? ok_tty : ok) || !plain_ref(ref)) to_node(argv);
    struct tty_opts o = {.input = has(l, "interactive")};
    if (tty_on && !tty_detach_keys(str(l, "detach-keys") ? str(l, "detach-keys") : FT_DEFAULT_DETACH_KEYS, o.keys, sizeof o.keys, &o.nkeys)) to_node(argv);
    session_path(&t, ref, "/exec?");
    for (size_t i = 0; i < l->ntrailing; i++) {
      buf_str(&t, "command=");
      buf_urlenc(&t, l->trailing[i]);
      buf_str(&t, "&");
    }
    long env = flag_named(l, "env", 3);
    for (size_t i = 0; i < l->nmulti; i++)
      if ((long)l->multi_flag[i] == env) add_env(argv, &t, l->multi[i]);
    const char *cwd = str(l, "workdir");
    if (cwd) {
      buf_str(&t, "cwd=");
      buf_urlenc(&t, cwd);
      buf_str(&t, "&");
    }
    buf_str(&t, has(l, "interactive") ? "stdin=1" : "stdin=0");
    if (tty_on) {
      buf_str(&t, "&tty=1");
      tty_query_size(&t);
      return tty(argv, socket, t.data, &o);
    }
    if (explain) {
      printf("front WEBSOCKET %s\n", t.data);
      return 0;
    }
    int fd = net_connect(socket);
    if (fd < 0) to_node(argv);
    int code = 1;
    return ws_exec(fd, t.data, has(l, "interactive"), &code) ? 1 : code;
  }
  case FT_COLD:
    break;
  }
  to_node(argv);
}

int main(int argc, char **argv) {
  const char *mode = getenv("ENCLAVE_FRONT");
  explain = mode && !strcmp(mode, "explain");
  if (mode && !strcmp(mode, "node")) to_node(argv);
  if (mode && !strcmp(mode, "modes")) return tty_modes_check();
  /* A closed stdout is a failed write here, as it is for Node, not a signal. */
  struct sigaction ign = {.sa_handler = SIG_IGN};
  pipe_saved = sigaction(SIGPIPE, &ign, &old_pipe) == 0;
  int i = 1;
  const char *lead_socket = NULL;
  if (argc > 1 && (!strcmp(argv[1], "--socket") || !strncmp(argv[1], "--socket=", 9))) {
    lead_socket = argv[1][8] == '=' ? argv[1] + 9 : argc > 2 ? argv[2] : NULL;
    i = argv[1][8] == '=' ? 2 : 3;
    if (!lead_socket || !*lead_socket) to_node(argv);
  }
  if (i >= argc) to_node(argv);
  size_t used = 0;
  const struct ft_command *cmd = lookup(argv + i, (size_t)(argc - i), &used);
  if (!cmd || cmd->hot == FT_COLD) to_node(argv);
  static struct line l;
  l.cmd = cmd;
  if (!parse(&l, argv + i + used, (size_t)argc - (size_t)i - used)) to_node(argv);
  const char *socket = str(&l, "socket");
  if (!socket) socket = lead_socket;
  if (!socket) socket = getenv("ENCLAVE_SOCKET");
  if (!socket) socket = FT_DEFAULT_SOCKET;
  if (!*socket) to_node(argv);
  return run(argv, &l, socket);
}
