/*
 * The last steps before a session process runs untrusted code: rlimits, an
 * empty capability set in every sense (bounding, ambient, inheritable,
 * permitted, effective) locked by securebits, no_new_privs, and the seccomp
 * filter the daemon built. Shared by enclave-init and enclave-enter.
 */
#ifndef ENCLAVE_HARDEN_H
#define ENCLAVE_HARDEN_H

#include <stddef.h>

struct bpf_blob {
  unsigned char *data;
  size_t len;
};

/* "NOFILE" etc. -> RLIMIT_*; -1 if unknown. */
int rlimit_resource(const char *name);

/* setrlimit from the three strings; -1 with errno on failure. */
int apply_rlimit(const char *name, const char *soft, const char *hard);

/* Read a seccomp program (struct sock_filter array) from a file. */
int read_bpf(const char *path, struct bpf_blob *out);

/* Drop every capability and lock it that way; set no_new_privs. */
int drop_privileges(const char **failed);

/* Install the filter. Must be last: after it, the rules apply to us too. */
int load_seccomp(const struct bpf_blob *prog);

#endif
