/* The native front end of the `enclave` command (front.c): the hot commands
 * straight to the daemon's API, everything else to the Node CLI. */
#ifndef ENCLAVE_FRONT_H
#define ENCLAVE_FRONT_H
#include <stddef.h>
#include <stdint.h>

/* A growing byte buffer. */
struct buf {
  char *data;
  size_t len, cap;
};
void buf_add(struct buf *b, const void *p, size_t n);
void buf_str(struct buf *b, const char *s);
/* Percent-encoded as a URL query value or path segment (every byte but A-Z a-z 0-9 - _ . ~). */
void buf_urlenc(struct buf *b, const char *s);
void buf_free(struct buf *b);

/* front_json.c: just enough JSON to read the API's error body and an exec status. */
struct jv {
  const char *p, *end; /* one value, p at its first byte */
};
/* The value of `key` in object `obj`; 0 if obj is no object or has no such key (or is malformed). */
int json_member(struct jv obj, const char *key, struct jv *out);
/* The i-th element of array `arr`; 0 if none. */
int json_index(struct jv arr, size_t i, struct jv *out);
/* A string value decoded into out (NUL-terminated, cut at cap-1); 0 if it is no string. */
int json_string(struct jv v, char *out, size_t cap);
int json_is(struct jv v, char kind); /* '{' '[' '"' 'n' (number) 't'/'f' 'z' (null) */
/* Whole text is one JSON value. */
int json_parse(const char *text, size_t len, struct jv *out);

/* front_net.c */
enum { NET_UNREACHABLE = -1, NET_BROKEN = -2 };
/* A connected stream socket to the daemon, or NET_UNREACHABLE (nothing sent: the Node CLI may retry it all). */
int net_connect(const char *path);
struct reply {
  int status;
  struct buf body;
};
/* Send one request (Connection: close) and read the whole reply; NET_BROKEN if it broke after sending. */
int http_call(int fd, const char *method, const char *target, struct reply *r);
/* The exec WebSocket: 0 and *code set when the stream ran to its end; the CLI's message on stderr otherwise (returns 1). */
int ws_exec(int fd, const char *target, int stdin_on, int *code);
/* The one-line message of an error reply, as the Node CLI words it. */
void error_message(const struct reply *r, char *out, size_t cap);

#endif
