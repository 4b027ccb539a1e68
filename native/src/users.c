#include "users.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One of the two files, read a line at a time through a fixed buffer. */
struct db {
  const char *path;
  int fd;   /* -1: the file does not exist (read as empty) */
  int eof;
  size_t off, len; /* unread bytes: buf[off..len) */
  long lines;
  size_t total;
  char buf[USER_LINE_MAX + 2]; /* a longest line, its newline, a NUL */
};
static struct db db; /* one file at a time; the child has one thread */

static int fail(char *why, size_t cap, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *why, size_t cap, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, cap, fmt, ap);
  va_end(ap);
  errno = err;
  return -1;
}

/* A uid or gid: 1 to 10 digits, at most 4294967294 ((uid_t)-1 means "unchanged" to the kernel). */
static int parse_id(const char *s, unsigned *out) {
  size_t n = strlen(s);
  if (n == 0 || n > 10 || strspn(s, "0123456789") != n) return -1;
  unsigned long long v = 0;
  for (size_t i = 0; i < n; i++) v = v * 10 + (unsigned)(s[i] - '0');
  if (v > 4294967294ULL) return -1;
  *out = (unsigned)v;
  return 0;
}

/* A user or group name as the API takes one (SESSION_USER, src/vocab/names.ts): [A-Za-z_][A-Za-z0-9_.-]*. */
static int valid_name(const char *s, size_t n) {
  if (n == 0 || n > USER_NAME_MAX) return 0;
  if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_')) return 0;
  for (size_t i = 1; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return 0;
  }
  return 1;
}

static int valid_part(const char *s, size_t n) {
  char num[11];
  unsigned id;
  if (n > 0 && n <= 10 && s[0] >= '0' && s[0] <= '9') {
    memcpy(num, s, n);
    num[n] = '\0';
    return parse_id(num, &id) == 0;
  }
  return valid_name(s, n);
}

int user_spec_valid(const char *spec) {
  size_t len = strnlen(spec, 2 * USER_NAME_MAX + 2);
  const char *colon = memchr(spec, ':', len);
  if (len > 2 * USER_NAME_MAX + 1) return 0;
  if (!colon) return valid_part(spec, len);
  return valid_part(spec, (size_t)(colon - spec)) && valid_part(colon + 1, len - (size_t)(colon - spec) - 1);
}

static int db_open(struct db *d, const char *path, char *why, size_t cap) {
  d->path = path;
  d->eof = 0;
  d->off = d->len = d->total = 0;
  d->lines = 0;
  /* O_NONBLOCK: a FIFO put there must not block the open (it is refused below). */
  d->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (d->fd < 0) {
    if (errno != ENOENT) return fail(why, cap, errno, "cannot open the session's %s", path);
    d->eof = 1; /* none: no entries, as runc reads a missing file */
    return 0;
  }
  struct stat st;
  if (fstat(d->fd, &st) < 0) return fail(why, cap, errno, "cannot stat the session's %s", path);
  if (!S_ISREG(st.st_mode)) return fail(why, cap, 0, "the session's %s is not a regular file", path);
  return 0;
}

static void db_close(struct db *d) {
  if (d->fd >= 0) close(d->fd);
  d->fd = -1;
}

/* The next line, NUL-terminated, without its newline: 1; 0 at the end; -1 (why set) past a bound or on a read error. */
static int db_next(struct db *d, char **line, char *why, size_t cap) {
  for (;;) {
    char *start = d->buf + d->off;
    char *nl = memchr(start, '\n', d->len - d->off);
    if (nl || (d->eof && d->len > d->off)) {
      char *end = nl ? nl : d->buf + d->len;
      if ((size_t)(end - start) > USER_LINE_MAX) break;
      *end = '\0';
      d->off = nl ? (size_t)(nl - d->buf) + 1 : d->len;
      if (++d->lines > USER_LINES_MAX) return fail(why, cap, 0, "the session's %s has over %d lines", d->path, USER_LINES_MAX);
      *line = start;
      return 1;
    }
    if (d->eof) return 0;
    memmove(d->buf, start, d->len - d->off);
    d->len -= d->off;
    d->off = 0;
    if (d->len > USER_LINE_MAX) break;
    ssize_t n = read(d->fd, d->buf + d->len, sizeof d->buf - 1 - d->len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(why, cap, errno, "cannot read the session's %s", d->path);
    if (n == 0) d->eof = 1;
    d->len += (size_t)n;
    d->total += (size_t)n;
    if (d->total > USER_BYTES_MAX) return fail(why, cap, 0, "the session's %s is over %d MiB", d->path, USER_BYTES_MAX >> 20);
  }
  return fail(why, cap, 0, "the session's %s has a line over %d bytes", d->path, USER_LINE_MAX);
}

/* Split line at ':' into exactly n fields: n, or another count for a malformed line. */
static int split(char *line, char **f, int n) {
  int k = 0;
  f[k++] = line;
  for (char *p = line; *p; p++) {
    if (*p != ':') continue;
    if (k == n) return n + 1;
    *p = '\0';
    f[k++] = p + 1;
  }
  return k;
}

/* Whether a group line's member list (comma-separated) names name. */
static int member(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len == n && !memcmp(p, name, n)) return 1;
    if (!comma) break;
    p = comma + 1;
  }
  return 0;
}

/* First line of /etc/passwd whose name (or uid, for a numeric spec) matches: 1 found, 0 none, -1 error. */
static int find_passwd(const char *user, int numeric, unsigned uid_arg, struct exec_user *u, char *why, size_t cap) {
  if (db_open(&db, "/etc/passwd", why, cap) < 0) return db_close(&db), -1;
  char *line, *f[8];
  int r;
  while ((r = db_next(&db, &line, why, cap)) > 0) {
    unsigned uid, gid;
    /* Malformed lines are skipped, as glibc's files backend skips them. */
    if (split(line, f, 7) != 7 || parse_id(f[2], &uid) < 0 || parse_id(f[3], &gid) < 0) continue;
    if (numeric ? uid != uid_arg : strcmp(f[0], user) != 0) continue;
    if (strlen(f[0]) > USER_NAME_MAX || strlen(f[5]) > USER_HOME_MAX) continue;
    u->uid = uid;
    u->gid = gid;
    snprintf(u->name, sizeof u->name, "%s", f[0]);
    snprintf(u->home, sizeof u->home, "%s", f[5][0] ? f[5] : "/");
    r = 1;
    break;
  }
  int e = errno;
  db_close(&db);
  errno = e;
  return r;
}

/*
 * /etc/group: with an explicit group, its gid (1 found, 0 none); else every
 * group listing u->name, after u->gid (0).
 */
static int scan_groups(const char *group, int numeric, unsigned gid_arg, struct exec_user *u, char *why, size_t cap) {
  if (db_open(&db, "/etc/group", why, cap) < 0) return db_close(&db), -1;
  if (!group) u->groups[u->ngroups++] = u->gid;
  char *line, *f[5];
  int r, found = 0;
  while ((r = db_next(&db, &line, why, cap)) > 0) {
    unsigned gid;
    if (split(line, f, 4) != 4 || parse_id(f[2], &gid) < 0) continue;
    if (group) {
      if (numeric ? gid != gid_arg : strcmp(f[0], group) != 0) continue;
      u->gid = gid;
      found = 1;
      break;
    }
    if (!member(f[3], u->name)) continue;
    int seen = 0;
    for (int i = 0; i < u->ngroups && !seen; i++) seen = u->groups[i] == gid;
    if (seen) continue;
    if (u->ngroups == USER_GROUPS_MAX) {
      r = fail(why, cap, 0, "user '%s' is in over %d groups of the session's /etc/group", u->name, USER_GROUPS_MAX);
      break;
    }
    u->groups[u->ngroups++] = gid;
  }
  int e = errno;
  db_close(&db);
  errno = e;
  return r < 0 ? -1 : found;
}

int user_resolve(const char *spec, struct exec_user *u, char *why, size_t cap) {
  if (!user_spec_valid(spec)) return fail(why, cap, EINVAL, "not NAME, UID, NAME:GROUP or UID:GID");
  char user[USER_NAME_MAX + 1], group[USER_NAME_MAX + 1];
  const char *colon = strchr(spec, ':');
  size_t ulen = colon ? (size_t)(colon - spec) : strlen(spec);
  memcpy(user, spec, ulen);
  user[ulen] = '\0';
  if (colon) snprintf(group, sizeof group, "%s", colon + 1);
  unsigned uid_arg = 0, gid_arg = 0;
  int u_num = parse_id(user, &uid_arg) == 0, g_num = colon && parse_id(group, &gid_arg) == 0;

  memset(u, 0, sizeof *u);
  u->home[0] = '/';
  int found = find_passwd(user, u_num, uid_arg, u, why, cap);
  if (found < 0) return -1;
  if (!found) {
    /* A number with no line runs as that uid, gid 0, home / (as docker's does). */
    if (!u_num) return fail(why, cap, 0, "no user '%s' in the session's /etc/passwd", user);
    u->uid = uid_arg;
  }
  if (!colon && !u->name[0]) return 0;
  found = scan_groups(colon ? group : NULL, g_num, gid_arg, u, why, cap);
  if (found < 0) return -1;
  if (colon && !found) {
    if (!g_num) return fail(why, cap, 0, "no group '%s' in the session's /etc/group", group);
    u->gid = gid_arg;
  }
  return 0;
}
