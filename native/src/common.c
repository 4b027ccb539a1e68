#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENCLAVE_STEP_NAME(name, str) str,
static const char *const step_names[] = {ENCLAVE_STEPS(ENCLAVE_STEP_NAME)};
#undef ENCLAVE_STEP_NAME

const char *step_name(enum step s) {
  return (s >= 0 && s < STEP_COUNT) ? step_names[s] : "unknown";
}

int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

void (*fail_cleanup)(void);

void fail_step(int fd, enum step s, int err, const char *fmt, ...) {
  if (fail_cleanup) {
    void (*cleanup)(void) = fail_cleanup;
    fail_cleanup = NULL;
    cleanup();
  }
  char detail[512];
  char line[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  /* One line, tab-separated, so the daemon can parse it without guessing. */
  for (char *c = detail; *c; c++)
    if (*c == '\n' || *c == '\t') *c = ' ';
  int n = snprintf(line, sizeof line, "error\t%s\t%d\t%s\n", step_name(s), err, detail);
  if (fd >= 0 && n > 0) (void)write_all(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
  _exit(STEP_EXIT_BASE + (int)s);
}

int write_file(const char *path, const char *data) {
  int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  size_t len = strlen(data);
  ssize_t n = write(fd, data, len);
  int saved = errno;
  close(fd);
  if (n != (ssize_t)len) {
    errno = n < 0 ? saved : EIO;
    return -1;
  }
  return 0;
}

long long parse_u64(const char *s) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v < 0) return -1;
  return v;
}

int replace_file_at(int dirfd, const char *leaf, unsigned mode, unsigned uid, unsigned gid, const void *data, size_t len) {
  char tmp[NAME_MAX + 1];
  if (snprintf(tmp, sizeof tmp, ".%s.new", leaf) >= (int)sizeof tmp) return errno = ENAMETOOLONG, -1;
  /* A leftover (or something planted) under the temporary name goes first;
   * O_EXCL | O_NOFOLLOW then guarantee the file we fill is our own. */
  if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT) return -1;
  int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  if (write_all(fd, data, len) < 0 || fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0 || renameat(dirfd, tmp, dirfd, leaf) < 0) {
    int e = errno;
    close(fd);
    unlinkat(dirfd, tmp, 0);
    return errno = e, -1;
  }
  close(fd);
  return 0;
}
