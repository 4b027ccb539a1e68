#include "harden.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>


static const struct {
  const char *name;
  int resource;
} rlimits[] = {
    {"NOFILE", RLIMIT_NOFILE}, {"NPROC", RLIMIT_NPROC}, {"CORE", RLIMIT_CORE},
    {"FSIZE", RLIMIT_FSIZE},   {"STACK", RLIMIT_STACK}, {"MEMLOCK", RLIMIT_MEMLOCK},
};

int rlimit_resource(const char *name) {
  for (size_t i = 0; i < sizeof rlimits / sizeof rlimits[0]; i++)
    if (!strcmp(rlimits[i].name, name)) return rlimits[i].resource;
  return -1;
}

static int parse_limit(const char *s, rlim_t *out) {
  if (!strcmp(s, "unlimited")) {
    *out = RLIM_INFINITY;
    return 0;
  }
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || end == s) return -1;
  *out = (rlim_t)v;
  return 0;
}

int apply_rlimit(const char *name, const char *soft, const char *hard) {
  int res = rlimit_resource(name);
  struct rlimit rl;
  if (res < 0 || parse_limit(soft, &rl.rlim_cur) < 0 || parse_limit(hard, &rl.rlim_max) < 0 || rl.rlim_cur > rl.rlim_max) {
    errno = EINVAL;
    return -1;
  }
  return setrlimit(res, &rl);
}

int drop_privileges(unsigned long long keep, int full, const char **failed) {
  /* Securebits first (needs CAP_SETPCAP). Strict: uid 0 gains nothing from
   * exec or setuid. Keeping: ordinary root semantics (root's exec gets the
   * bounding set; a setuid away from 0 clears every capability), and the
   * session cannot change either. Both lock what they chose. */
  unsigned long bits = keep ? SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED
                            : SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED |
                                  SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (full) {
    /* An older kernel has fewer capabilities than the set names: keep what it has. */
    for (int cap = 0; cap < 64; cap++)
      if ((keep & (1ULL << cap)) && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) keep &= ~(1ULL << cap);
    bits = 0;
  }
  if ((bits || prctl(PR_GET_SECUREBITS, 0, 0, 0, 0) != 0) && prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0) return *failed = "PR_SET_SECUREBITS", -1;
  for (int cap = 0; cap < 64; cap++) {
    if ((keep & (1ULL << cap))) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) break; /* past the kernel's last capability */
      return *failed = "PR_CAPBSET_DROP", -1;
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) return *failed = "PR_CAP_AMBIENT_CLEAR_ALL", -1;
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  for (int i = 0; i < 2; i++) data[i].permitted = data[i].effective = (unsigned)(keep >> (32 * i));
  if (syscall(SYS_capset, &hdr, data) < 0) return *failed = "capset", -1;
  /* Keeping capabilities goes with setuid programs (su, sudo) working, as in
   * Docker's default: no no_new_privs, and the filter was loaded before this,
   * with CAP_SYS_ADMIN of the session's namespace. */
  if (!keep && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return *failed = "PR_SET_NO_NEW_PRIVS", -1;
  return 0;
}

int load_seccomp(const struct bpf_blob *prog) {
  struct sock_fprog fprog = {
      .len = (unsigned short)(prog->len / sizeof(struct sock_filter)),
      .filter = (struct sock_filter *)prog->data,
  };
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog);
}
