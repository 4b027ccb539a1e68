/*
 * The last steps before a session process runs untrusted code: rlimits, an
 * empty capability set in every sense (bounding, ambient, inheritable,
 * permitted, effective) locked by securebits, no_new_privs, and the seccomp
 * filter the daemon built, which the session plan carries.
 */
#ifndef ENCLAVE_HARDEN_H
#define ENCLAVE_HARDEN_H

#include <stddef.h>

/* A seccomp program larger than this is refused. */
#define MAX_BPF_INSNS 4096

struct bpf_blob {
  unsigned char *data;
  size_t len;
};

/* "NOFILE" etc. -> RLIMIT_*; -1 if unknown. */
int rlimit_resource(const char *name);

/* setrlimit from the three strings; -1 with errno on failure. */
int apply_rlimit(const char *name, const char *soft, const char *hard);

/* keep == 0: drop every capability, lock it that way, set no_new_privs.
 * Otherwise keep exactly those (bounding, permitted, effective) with ordinary
 * root semantics, locked, and no no_new_privs: the seccomp filter must
 * already be loaded. full: the system profile's whole set, whose securebits
 * stay unset and unlocked (runc sets keep-caps itself, which a lock
 * refuses); only the capabilities this kernel has are kept. */
int drop_privileges(unsigned long long keep, int full, const char **failed);

/* Install the filter. Must be last: after it, the rules apply to us too. */
int load_seccomp(const struct bpf_blob *prog);

#endif
