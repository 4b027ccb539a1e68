/*
 * A session plan, parsed and validated against the op table (ops.h).
 *
 * Wire format on enclave-init's stdin (built by src/isolation/plan.ts):
 *   enclave-plan<TAB>1
 *   <phase><TAB><op>[<TAB><arg>]...          one line per op, phases in order
 *   end[<TAB><blob length>]...
 *   <blob bytes, concatenated>
 * Blobs carry file contents (secrets among them) so that they never appear
 * in argv, on the host disk, or in the plan the daemon stores.
 */
#ifndef ENCLAVE_PLAN_H
#define ENCLAVE_PLAN_H

#include "ops.h"

#include <stddef.h>

#define PLAN_MAX_BYTES (1024 * 1024)
#define PLAN_MAX_OPS 512
#define PLAN_MAX_ARGS 5
#define PLAN_MAX_BLOBS 64

struct plan_op {
  enum op_id id;
  const char *arg[PLAN_MAX_ARGS];
};

struct plan {
  struct plan_op op[PLAN_MAX_OPS];
  int nops;
  const unsigned char *blob[PLAN_MAX_BLOBS];
  size_t blob_len[PLAN_MAX_BLOBS];
  int nblobs;
};

/* Parse and validate buf (len bytes; modified in place). 0, or -1 with a
 * message in err. Nothing is executed. */
int plan_parse(char *buf, size_t len, struct plan *out, char *err, size_t errlen);

/* The first op with this id, or NULL. */
const struct plan_op *plan_find(const struct plan *p, enum op_id id);

/* A volume op that mounts its volume read-only (its F argument holds "ro"). */
int plan_volume_ro(const struct plan_op *op);

/* Decode a validated X argument into bytes; returns the length. */
size_t plan_hex_decode(const char *hex, unsigned char *out, size_t cap);

/* `enclave-init --ops`: the phases, steps and op table, one per line. */
int plan_print_table(int fd);

#endif
