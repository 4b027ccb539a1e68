/* Just enough JSON for the front end: walk a reply in place (no tree), find
 * an object's member, an array's element, decode a string. Every step is
 * bounded by the value's end; malformed input reads as "not there". */
#include <string.h>

#include "front.h"

#define MAX_DEPTH 64

static const char *ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* The end of the string whose opening quote is at p, past its closing quote; NULL if malformed. */
static const char *skip_string(const char *p, const char *end) {
  for (p++; p < end; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') return p + 1;
    if (c < 0x20) return NULL;
    if (c == '\\') {
      if (++p >= end) return NULL;
      if (*p == 'u') {
        for (int i = 0; i < 4; i++)
          if (++p >= end || !strchr("0123456789abcdefABCDEF", *p) || !*p) return NULL;
      } else if (!strchr("\"\\/bfnrt", *p) || !*p) return NULL;
    }
  }
  return NULL;
}

static const char *skip_value(const char *p, const char *end, int depth);

static const char *skip_container(const char *p, const char *end, int depth, char close) {
  if (depth > MAX_DEPTH) return NULL;
  p = ws(p + 1, end);
  if (p < end && *p == close) return p + 1;
  for (;;) {
    if (close == '}') {
      if (p >= end || *p != '"' || !(p = skip_string(p, end))) return NULL;
      p = ws(p, end);
      if (p >= end || *p != ':') return NULL;
      p = ws(p + 1, end);
    }
    if (!(p = skip_value(p, end, depth + 1))) return NULL;
    p = ws(p, end);
    if (p >= end) return NULL;
    if (*p == close) return p + 1;
    if (*p != ',') return NULL;
    p = ws(p + 1, end);
  }
}

static const char *skip_value(const char *p, const char *end, int depth) {
  if (p >= end) return NULL;
  switch (*p) {
  case '{': return skip_container(p, end, depth, '}');
  case '[': return skip_container(p, end, depth, ']');
  case '"': return skip_string(p, end);
  case 't': return end - p >= 4 && !memcmp(p, "true", 4) ? p + 4 : NULL;
  case 'f': return end - p >= 5 && !memcmp(p, "false", 5) ? p + 5 : NULL;
  case 'n': return end - p >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL;
  default: {
    const char *q = p;
    if (q < end && *q == '-') q++;
    if (q >= end || *q < '0' || *q > '9') return NULL;
    while (q < end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' || *q == '+' || *q == '-')) q++;
    return q;
  }
  }
}

int json_parse(const char *text, size_t len, struct jv *out) {
  const char *end = text + len, *p = ws(text, end);
  const char *q = skip_value(p, end, 0);
  if (!q || ws(q, end) != end) return 0;
  out->p = p;
  out->end = q;
  return 1;
}

int json_is(struct jv v, char kind) {
  if (v.p >= v.end) return 0;
  char c = *v.p;
  if (kind == 'n') return c == '-' || (c >= '0' && c <= '9');
  if (kind == 'z') return c == 'n';
  return c == kind;
}

int json_member(struct jv obj, const char *key, struct jv *out) {
  if (!json_is(obj, '{')) return 0;
  const char *p = ws(obj.p + 1, obj.end), *end = obj.end;
  size_t klen = strlen(key);
  while (p < end && *p == '"') {
    const char *k = p, *ke = skip_string(p, end);
    if (!ke) return 0;
    p = ws(ke, end);
    if (p >= end || *p != ':') return 0;
    p = ws(p + 1, end);
    const char *ve = skip_value(p, end, 1);
    if (!ve) return 0;
    /* Keys are compared as written: the API's keys have no escapes. */
    if ((size_t)(ke - k - 2) == klen && !memcmp(k + 1, key, klen)) {
      out->p = p;
      out->end = ve;
      return 1;
    }
    p = ws(ve, end);
    if (p < end && *p == ',') p = ws(p + 1, end);
  }
  return 0;
}

int json_index(struct jv arr, size_t i, struct jv *out) {
  if (!json_is(arr, '[')) return 0;
  const char *p = ws(arr.p + 1, arr.end), *end = arr.end;
  for (size_t n = 0; p < end && *p != ']'; n++) {
    const char *ve = skip_value(p, end, 1);
    if (!ve) return 0;
    if (n == i) {
      out->p = p;
      out->end = ve;
      return 1;
    }
    p = ws(ve, end);
    if (p < end && *p == ',') p = ws(p + 1, end);
  }
  return 0;
}

static unsigned hex4(const char *p) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v = v * 16 + (unsigned)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
  }
  return v;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) return (size_t)(o[0] = (char)cp, 1);
  if (cp < 0x800) return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
  if (cp < 0x10000) return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[2] = (char)(0x80 | (cp & 0x3f)), 3;
  return o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f)), o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f)), 4;
}

int json_string(struct jv v, char *out, size_t cap) {
  if (!json_is(v, '"') || cap == 0) return 0;
  size_t n = 0;
  /* v was skipped as a whole value, so every escape below is complete. */
  for (const char *p = v.p + 1; p < v.end - 1; p++) {
    char tmp[4];
    size_t k = 1;
    if (*p != '\\') tmp[0] = *p;
    else {
      p++;
      switch (*p) {
      case 'b': tmp[0] = '\b'; break;
      case 'f': tmp[0] = '\f'; break;
      case 'n': tmp[0] = '\n'; break;
      case 'r': tmp[0] = '\r'; break;
      case 't': tmp[0] = '\t'; break;
      case 'u': {
        unsigned cp = hex4(p + 1);
        p += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && p + 6 < v.end && p[1] == '\\' && p[2] == 'u') {
          unsigned lo = hex4(p + 3);
          if (lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
          }
        }
        if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd; /* a lone surrogate, as JavaScript would print it */
        k = put_utf8(tmp, cp);
        break;
      }
      default: tmp[0] = *p;
      }
    }
    if (n + k >= cap) break;
    memcpy(out + n, tmp, k);
    n += k;
  }
  out[n] = 0;
  return 1;
}
