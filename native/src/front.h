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
/* The WebSocket to the daemon (client side: masked frames, never blocking on the socket). */
struct ws {
  int fd;
  struct buf out; /* frames not yet written */
  size_t out_at;
  struct buf in; /* bytes read; in_at: where the first frame not yet parsed starts */
  size_t in_at;
  struct buf msg; /* a message's fragments so far */
  int msg_op;
  uint64_t rnd;
  int close_code; /* of the daemon's close frame (1005: none given) */
  char close_reason[128];
};
/* Room for n more bytes. */
void buf_reserve(struct buf *b, size_t n);
/* The upgrade to `protocol`; 0 when open, else the CLI's message on stderr (`fail`: what failed, for a broken socket) and 1. */
int ws_open(struct ws *w, int fd, const char *target, const char *protocol, const char *fail);
/* Queue one masked frame: `lead` then `p`. */
void ws_frame(struct ws *w, int op, const unsigned char *lead, size_t nlead, const void *p, size_t n);
/* Write what the socket takes now; -1 when it is gone. */
int ws_flush(struct ws *w);
/* Read what the socket has (large reads, straight into w->in): 1 read or nothing yet, 0 at its end, -1 broken. */
int ws_read(struct ws *w);
/* A data message: p[0] its channel. `stable`: p stays valid until ws_compact (else use it now). */
typedef void (*ws_sink)(void *ctx, unsigned char *p, size_t n, int stable);
/* Parse the whole frames read (answering close and ping); 1 once the close frame came, -1 on a protocol error. */
int ws_frames(struct ws *w, ws_sink sink, void *ctx);
/* Drop what was parsed (the sink's stable pointers go stale). */
void ws_compact(struct ws *w);
void ws_free(struct ws *w);
/* An exec status (channel 3), checked as execStatusSchema and read as exitCodeOf and reasonOf. */
struct outcome {
  int have;
  int code;
  char reason[1024];
};
void read_status(const char *p, size_t n, struct outcome *o);

/* The exec WebSocket: 0 and *code set when the stream ran to its end; the CLI's message on stderr otherwise (returns 1). */
int ws_exec(int fd, const char *target, int stdin_on, int *code);
/* The one-line message of an error reply, as the Node CLI words it. */
void error_message(const struct reply *r, char *out, size_t cap);

/* front_tty.c: attach and exec -t. */
struct tty_opts {
  int input;     /* read stdin (attach; exec -i): raw mode when it is a terminal */
  int read_only; /* attach --ro: typed keys are not sent (the detach keys still work) */
  unsigned char keys[16];
  size_t nkeys;
};
/* "ctrl-p,ctrl-q" as parseDetachKeys reads it; 0 for anything else (the Node CLI says what is wrong). */
int tty_detach_keys(const char *spec, unsigned char *keys, size_t cap, size_t *n);
/* "&cols=C&rows=R" when stdout is a terminal (terminalSize: 0 is 80x24, at most 1000x500). */
void tty_query_size(struct buf *t);
/* The attach protocol on `target` until its end; the exit code (the command's, 0 on detach, 1 on failure, its message on stderr). */
int tty_run(int fd, const char *target, const struct tty_opts *o);
/* ENCLAVE_FRONT=modes (tests): the restore sequence for the chunks on stdin. */
int tty_modes_check(void);

#endif
