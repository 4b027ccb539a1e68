/*
 * The op table's one definition, and the plan parser: every argument of
 * every op is checked against its kind before the helper acts on any of
 * them, so a plan the daemon got wrong fails whole, not half-executed.
 */
#include "plan.h"

#include "harden.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ENCLAVE_OP_DEF(id, name, args, argnames, phase, step, flags) {name, args, phase, step, flags},
const struct op_def op_defs[OP_COUNT] = {ENCLAVE_OPS(ENCLAVE_OP_DEF)};
#undef ENCLAVE_OP_DEF

#define ENCLAVE_PHASE_NAME(id, name) name,
const char *const phase_names[PHASE_COUNT] = {ENCLAVE_PHASES(ENCLAVE_PHASE_NAME)};
#undef ENCLAVE_PHASE_NAME

static int failf(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static int all_of(const char *s, const char *set) { return *s && strspn(s, set) == strlen(s); }

#define DIGITS "0123456789"
#define HEX DIGITS "abcdef"

static int clean_relative(const char *s) {
  if (!*s || *s == '/' || strlen(s) >= PATH_MAX) return 0;
  const char *c = s;
  for (;;) {
    const char *slash = strchr(c, '/');
    size_t n = slash ? (size_t)(slash - c) : strlen(c);
    if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return 0;
    if (!slash) return 1;
    c = slash + 1;
  }
}

static int check_arg(char kind, const char *a, int nblobs) {
  switch (kind) {
    case 'A': return a[0] == '/' && (a[1] == '\0' || clean_relative(a + 1));
    case 'R': return clean_relative(a);
    case 'T': return *a && strlen(a) < PATH_MAX;
    case 'N': return all_of(a, DIGITS) && strlen(a) <= 18;
    case 'M': return all_of(a, "01234567") && strlen(a) <= 4;
    case 'F': {
      if (!strcmp(a, "-")) return 1;
      char copy[64];
      if (strlen(a) >= sizeof copy) return 0;
      strcpy(copy, a);
      char *save = NULL;
      for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save))
        if (strcmp(f, "nosuid") && strcmp(f, "nodev") && strcmp(f, "noexec") && strcmp(f, "ro")) return 0;
      return a[0] != ',' && a[strlen(a) - 1] != ',' && !strstr(a, ",,");
    }
    case 'D': return all_of(a, DIGITS "abcdefghijklmnopqrstuvwxyz_=,.") && strlen(a) < 256;
    case 'I': return all_of(a, DIGITS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.-") && strlen(a) < 16;
    case 'E': {
      unsigned v[6];
      char tail;
      return strlen(a) == 17 && sscanf(a, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) == 6;
    }
    case 'P': {
      struct in_addr x;
      return inet_pton(AF_INET, a, &x) == 1;
    }
    case 'G': return !strcmp(a, "allow") || !strcmp(a, "deny");
    case 'H': {
      size_t n = strlen(a);
      return n >= 1 && n <= 63 && all_of(a, DIGITS "abcdefghijklmnopqrstuvwxyz-") && a[0] != '-' && a[n - 1] != '-';
    }
    case 'L': return rlimit_resource(a) >= 0;
    case 'V': return !strcmp(a, "unlimited") || (all_of(a, DIGITS) && strlen(a) <= 19);
    case 'K': return all_of(a, HEX) && strlen(a) <= 16 && ((strtoull(a, NULL, 16) & ~CAPS_KEEP_MAX) == 0 || strtoull(a, NULL, 16) == CAPS_SYSTEM);
    case 'X': {
      size_t n = strlen(a);
      return all_of(a, HEX) && n % 16 == 0 && n / 16 <= MAX_BPF_INSNS;
    }
    case 'B': return all_of(a, DIGITS) && strlen(a) <= 3 && atoi(a) < nblobs;
    case 'W': return strlen(a) < 32768;
    case 'S': return strlen(a) <= 128 && !(a[0] >= '0' && a[0] <= '9') && all_of(a, DIGITS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_");
    default: return 0;
  }
}

#define ENCLAVE_KIND_NAME(letter, what) [letter] = what,
static const char *const kind_names[128] = {ENCLAVE_ARG_KINDS(ENCLAVE_KIND_NAME)};
#undef ENCLAVE_KIND_NAME

static int find_op(const char *name) {
  for (int i = 0; i < OP_COUNT; i++)
    if (!strcmp(op_defs[i].name, name)) return i;
  return -1;
}

static int find_phase(const char *name) {
  for (int i = 0; i < PHASE_COUNT; i++)
    if (!strcmp(phase_names[i], name)) return i;
  return -1;
}

int plan_parse(char *buf, size_t len, struct plan *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  char *p = buf, *end = buf + len;
  int line_no = 0, last_phase = 0, seen_end = 0;
  int count[OP_COUNT] = {0};
  while (p < end && !seen_end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return failf(err, errlen, "line %d: no newline before the end of the plan", line_no + 1);
    *nl = '\0';
    if (memchr(p, '\0', (size_t)(nl - p))) return failf(err, errlen, "line %d: NUL byte", line_no + 1);
    line_no++;
    char *f[PLAN_MAX_ARGS + 2];
    int nf = 0;
    for (char *c = p;; ) {
      if (nf == PLAN_MAX_ARGS + 2) return failf(err, errlen, "line %d: too many fields", line_no);
      f[nf++] = c;
      char *tab = strchr(c, '\t');
      if (!tab) break;
      *tab = '\0';
      c = tab + 1;
    }
    p = nl + 1;
    if (line_no == 1) {
      if (nf != 2 || strcmp(f[0], "enclave-plan") || strcmp(f[1], "1")) return failf(err, errlen, "the plan must start with 'enclave-plan<TAB>1'");
      continue;
    }
    if (!strcmp(f[0], "end")) {
      if (nf - 1 > PLAN_MAX_BLOBS) return failf(err, errlen, "more than %d blobs", PLAN_MAX_BLOBS);
      size_t total = 0;
      for (int i = 1; i < nf; i++) {
        if (!all_of(f[i], DIGITS) || strlen(f[i]) > 7) return failf(err, errlen, "end: blob length '%s' is not a number", f[i]);
        out->blob_len[i - 1] = (size_t)atol(f[i]);
        total += out->blob_len[i - 1];
      }
      if (total != (size_t)(end - p)) return failf(err, errlen, "end: blobs declare %zu bytes, %zu follow", total, (size_t)(end - p));
      out->nblobs = nf - 1;
      for (int i = 0; i < out->nblobs; i++) {
        out->blob[i] = (const unsigned char *)p;
        p += out->blob_len[i];
      }
      seen_end = 1;
      break;
    }
    int ph = find_phase(f[0]);
    if (ph < 0) return failf(err, errlen, "line %d: unknown phase '%s'", line_no, f[0]);
    if (nf < 2) return failf(err, errlen, "line %d: no op", line_no);
    int id = find_op(f[1]);
    if (id < 0) return failf(err, errlen, "line %d: unknown op '%s'", line_no, f[1]);
    const struct op_def *d = &op_defs[id];
    if ((int)d->phase != ph) return failf(err, errlen, "line %d: %s runs in phase %s, not %s", line_no, d->name, phase_names[d->phase], f[0]);
    if (ph < last_phase) return failf(err, errlen, "line %d: phase %s after phase %s", line_no, f[0], phase_names[last_phase]);
    last_phase = ph;
    int arity = (int)strlen(d->args);
    if (nf - 2 != arity) return failf(err, errlen, "line %d: %s takes %d arguments, got %d", line_no, d->name, arity, nf - 2);
    if (out->nops == PLAN_MAX_OPS) return failf(err, errlen, "more than %d ops", PLAN_MAX_OPS);
    if ((d->flags & OP_FIRST) && out->nops != 0) return failf(err, errlen, "line %d: %s must be the first op", line_no, d->name);
    if (out->nops > 0 && ph != PHASE_EXEC && (op_defs[out->op[out->nops - 1].id].flags & OP_LAST)) return failf(err, errlen, "line %d: nothing may follow %s", line_no, op_defs[out->op[out->nops - 1].id].name);
    struct plan_op *op = &out->op[out->nops++];
    op->id = (enum op_id)id;
    for (int i = 0; i < arity; i++) op->arg[i] = f[i + 2];
    count[id]++;
    if ((d->flags & OP_ONCE) && count[id] > 1) return failf(err, errlen, "line %d: %s may appear once", line_no, d->name);
  }
  if (!seen_end) return failf(err, errlen, "the plan has no 'end' line");
  /* Blob references are checked once the blob count is known. */
  for (int i = 0; i < out->nops; i++) {
    const struct op_def *d = &op_defs[out->op[i].id];
    for (int a = 0; d->args[a]; a++) {
      if (!check_arg(d->args[a], out->op[i].arg[a], out->nblobs))
        return failf(err, errlen, "op %d (%s): argument %d '%.40s' is not %s", i + 1, d->name, a + 1, out->op[i].arg[a], kind_names[(int)d->args[a]]);
    }
  }
  for (int id = 0; id < OP_COUNT; id++)
    if ((op_defs[id].flags & OP_REQUIRED) && count[id] == 0) return failf(err, errlen, "the plan has no %s op", op_defs[id].name);
  /* A layered root: layers exist for every index used, the root is built
   * before anything is mounted on it, and an upper layer needs a root. */
  if (count[OP_LAYER] > MAX_LAYERS) return failf(err, errlen, "more than %d layers", MAX_LAYERS);
  if (count[OP_VOLUME] > MAX_VOLUMES) return failf(err, errlen, "more than %d volumes", MAX_VOLUMES);
  if ((count[OP_OVERLAY] || count[OP_UPPER]) && !count[OP_ROOT]) return failf(err, errlen, "overlay and upper need a root op");
  if (count[OP_ROOT] && count[OP_HIDE]) return failf(err, errlen, "a layered root has nothing of the host to hide");
  /* Staged over the new root, which only a layered root does not read; only read-only volumes are. */
  int ro_volumes = 0;
  for (int i = 0; i < out->nops; i++) ro_volumes += plan_volume_ro(&out->op[i]);
  if (count[OP_STAGE_VOLUMES] && (!count[OP_ROOT] || !ro_volumes)) return failf(err, errlen, "stage-volumes needs a layered root and a read-only volume");
  int root_seen = 0;
  for (int i = 0; i < out->nops; i++) {
    const struct plan_op *o = &out->op[i];
    if (o->id == OP_ROOT || o->id == OP_OVERLAY) {
      long long n = parse_u64(o->arg[o->id == OP_ROOT ? 0 : 1]);
      if (n < 0 || n >= count[OP_LAYER]) return failf(err, errlen, "op %d (%s): no layer %lld", i + 1, op_defs[o->id].name, n);
    }
    if (o->id == OP_VOLUME_AT) {
      long long n = parse_u64(o->arg[1]);
      if (n < 0 || n >= count[OP_VOLUME]) return failf(err, errlen, "op %d (volume-at): no volume %lld", i + 1, n);
    }
    if (o->id == OP_ROOT) root_seen = 1;
    else if (count[OP_ROOT] && !root_seen && op_defs[o->id].phase == PHASE_MOUNT && o->id != OP_UPPER)
      return failf(err, errlen, "op %d (%s): before the root is built", i + 1, op_defs[o->id].name);
  }
  /* Every capability (system): its root may mount and remount, and the kernel
   * locks only flags of mounts copied or propagated in, not of those moved in.
   * So no read-only volume but a staged one (propagated in: a bind of one
   * moved in could be remounted read-write), and a
   * layered root has a writable layer (else the root would be an idmapped
   * host layer, remountable too). The daemon refuses both before (plan.ts). */
  const struct plan_op *caps = plan_find(out, OP_CAPS);
  if (caps && strtoull(caps->arg[0], NULL, 16) == CAPS_SYSTEM) {
    if (ro_volumes && !count[OP_STAGE_VOLUMES]) return failf(err, errlen, "a plan keeping every capability mounts a volume read-only only staged (stage-volumes)");
    if (count[OP_ROOT] && !count[OP_UPPER]) return failf(err, errlen, "a layered root keeping every capability needs a writable layer");
  }
  return 0;
}

int plan_volume_ro(const struct plan_op *op) { return op->id == OP_VOLUME && strstr(op->arg[1], "ro") != NULL; }

const struct plan_op *plan_find(const struct plan *p, enum op_id id) {
  for (int i = 0; i < p->nops; i++)
    if (p->op[i].id == id) return &p->op[i];
  return NULL;
}

size_t plan_hex_decode(const char *hex, unsigned char *out, size_t cap) {
  size_t n = strlen(hex) / 2;
  if (n > cap) n = cap;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (unsigned char)v;
  }
  return n;
}

int plan_print_table(int fd) {
  char line[256];
  for (int i = 0; i < PHASE_COUNT; i++) {
    int n = snprintf(line, sizeof line, "phase\t%s\n", phase_names[i]);
    if (write_all(fd, line, (size_t)n) < 0) return -1;
  }
  for (int i = 0; i < STEP_COUNT; i++) {
    int n = snprintf(line, sizeof line, "step\t%s\t%d\n", step_name((enum step)i), STEP_EXIT_BASE + i);
    if (write_all(fd, line, (size_t)n) < 0) return -1;
  }
  for (int i = 0; i < OP_COUNT; i++) {
    const struct op_def *d = &op_defs[i];
    int f = d->flags;
    int n = snprintf(line, sizeof line, "op\t%s\t%s\t%s\t%s\t%s%s%s%s%s\n", d->name, d->args[0] ? d->args : "-", phase_names[d->phase],
                     step_name(d->step), f & OP_ONCE ? "once," : "", f & OP_REQUIRED ? "required," : "",
                     f & OP_ALLOW_NOTEXIST ? "allow-notexist," : "", f & OP_LAST ? "last," : "", f & OP_FIRST ? "first," : "");
    if (write_all(fd, line, (size_t)n) < 0) return -1;
  }
  return 0;
}
