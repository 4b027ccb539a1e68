/* The front end's wire: HTTP/1.1 over the daemon's Unix socket, one request
 * per connection, and the exec WebSocket (v5.channel.k8s.io: one channel
 * byte, then the payload), as the Node CLI speaks them
 * (src/client/transport.ts, src/client/exec.ts). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "front.h"

/* Bounds on what the daemon may send: a reply, one WebSocket message. */
#define MAX_REPLY (256u << 20)
#define MAX_MESSAGE (16u << 20)
/* Input queued for the socket beyond this: stdin is not read (the Node client's high water). */
#define HIGH_WATER (1u << 20)
#define STDIN_CHUNK (64u * 1024)
/* Room for at least this much per read of the socket: a flood arrives in 64 KiB frames, read several at a time. */
#define WS_READ (256u * 1024)

/* Room for n more bytes and the NUL; out of memory ends the front end (it holds nothing to undo). */
void buf_reserve(struct buf *b, size_t n) {
  if (b->len + n + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n + 1) cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) {
    static const char oom[] = "enclave: out of memory\n";
    (void)!write(2, oom, sizeof oom - 1);
    _exit(1);
  }
  d[b->len] = 0;
  b->data = d;
  b->cap = cap;
}

void buf_add(struct buf *b, const void *p, size_t n) {
  buf_reserve(b, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
}

void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

void buf_urlenc(struct buf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~') buf_add(b, p, 1);
    else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      buf_add(b, e, 3);
    }
  }
}

void buf_free(struct buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int net_connect(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) return NET_UNREACHABLE;
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return NET_UNREACHABLE;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return NET_UNREACHABLE;
  }
  return fd;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Where the head ends (past the blank line) in b, or 0. */
static size_t head_end(const struct buf *b) {
  const char *e = b->len ? memmem(b->data, b->len, "\r\n\r\n", 4) : NULL;
  return e ? (size_t)(e - b->data) + 4 : 0;
}

static int status_of(const char *head) {
  int st = 0;
  if (sscanf(head, "HTTP/1.%*[01] %3d", &st) != 1) return 0;
  return st;
}

/* The value of header `name` (lowercase) in head, as a number; -1 if absent. */
static long long header_num(const char *head, size_t len, const char *name) {
  size_t n = strlen(name);
  for (const char *p = head; p && p < head + len; p = memchr(p, '\n', (size_t)(head + len - p)), p = p ? p + 1 : NULL) {
    if ((size_t)(head + len - p) > n + 1 && !strncasecmp(p, name, n) && p[n] == ':') return strtoll(p + n + 1, NULL, 10);
  }
  return -1;
}

/* Read the rest of a reply whose head ends at `he` in b: Content-Length bytes, or to EOF. */
static int read_body(int fd, struct buf *b, size_t he, struct reply *r) {
  long long want = header_num(b->data, he, "content-length");
  char chunk[65536];
  while (want < 0 || b->len - he < (size_t)want) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return NET_BROKEN;
    if (n == 0) {
      if (want >= 0) return NET_BROKEN;
      break;
    }
    if (b->len + (size_t)n > MAX_REPLY) return NET_BROKEN;
    buf_add(b, chunk, (size_t)n);
  }
  size_t blen = want >= 0 ? (size_t)want : b->len - he;
  buf_add(&r->body, b->data + he, blen);
  return 0;
}

static int read_head(int fd, struct buf *b, size_t *he) {
  char chunk[4096];
  while (!(*he = head_end(b))) {
    if (b->len > 65536) return NET_BROKEN;
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return NET_BROKEN;
    buf_add(b, chunk, (size_t)n);
  }
  return 0;
}

int http_call(int fd, const char *method, const char *target, struct reply *r) {
  struct buf req = {0}, in = {0};
  buf_str(&req, method);
  buf_str(&req, " ");
  buf_str(&req, target);
  buf_str(&req, " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
  if (strcmp(method, "GET")) buf_str(&req, "Content-Length: 0\r\n");
  buf_str(&req, "\r\n");
  int rc = write_all(fd, req.data, req.len) ? NET_BROKEN : 0;
  buf_free(&req);
  size_t he = 0;
  if (!rc) rc = read_head(fd, &in, &he);
  if (!rc) {
    r->status = status_of(in.data);
    rc = r->status ? read_body(fd, &in, he, r) : NET_BROKEN;
  }
  buf_free(&in);
  return rc;
}

void error_message(const struct reply *r, char *out, size_t cap) {
  struct jv root, err, code, msg, x;
  int ok = r->body.len && json_parse(r->body.data, r->body.len, &root) && json_member(root, "error", &err) && json_member(err, "code", &code) && json_is(code, '"') &&
           json_member(err, "message", &msg) && json_is(msg, '"');
  /* The rest of the API's error body, as errorBodySchema checks it. */
  if (ok && json_member(err, "field", &x)) ok = json_is(x, '"');
  if (ok && json_member(err, "step", &x)) ok = json_is(x, '"');
  if (ok && json_member(err, "errno", &x)) ok = json_is(x, 'n');
  if (!ok || !json_string(msg, out, cap)) snprintf(out, cap, "the daemon answered HTTP %d", r->status);
}

/* ---- the WebSocket (front_tty.c speaks attach over it too) ------------- */

static uint32_t mask_key(struct ws *w) {
  /* xorshift64, seeded from getrandom: the mask only has to be unpredictable to a proxy, of which there is none on a Unix socket. */
  w->rnd ^= w->rnd << 13;
  w->rnd ^= w->rnd >> 7;
  w->rnd ^= w->rnd << 17;
  return (uint32_t)w->rnd;
}

void ws_frame(struct ws *w, int op, const unsigned char *lead, size_t nlead, const void *p, size_t n) {
  size_t total = nlead + n;
  unsigned char h[14];
  size_t hl = 2;
  h[0] = (unsigned char)(0x80 | op);
  if (total < 126) h[1] = (unsigned char)(0x80 | total);
  else if (total < 65536) {
    h[1] = 0x80 | 126;
    h[2] = (unsigned char)(total >> 8);
    h[3] = (unsigned char)total;
    hl = 4;
  } else {
    h[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)total >> (56 - 8 * i));
    hl = 10;
  }
  uint32_t k = mask_key(w);
  unsigned char key[4] = {(unsigned char)(k >> 24), (unsigned char)(k >> 16), (unsigned char)(k >> 8), (unsigned char)k};
  memcpy(h + hl, key, 4);
  buf_add(&w->out, h, hl + 4);
  size_t at = w->out.len;
  buf_add(&w->out, lead, nlead);
  buf_add(&w->out, p, n);
  for (size_t i = 0; i < total; i++) w->out.data[at + i] ^= (char)key[i & 3];
}

int ws_flush(struct ws *w) {
  while (w->out_at < w->out.len) {
    ssize_t n = write(w->fd, w->out.data + w->out_at, w->out.len - w->out_at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    if (n <= 0) return -1;
    w->out_at += (size_t)n;
  }
  w->out.len = w->out_at = 0;
  return 0;
}

int ws_read(struct ws *w) {
  buf_reserve(&w->in, WS_READ);
  ssize_t n;
  do n = read(w->fd, w->in.data + w->in.len, w->in.cap - w->in.len - 1);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
  if (n <= 0) return n == 0 ? 0 : -1;
  w->in.len += (size_t)n;
  return w->in.len - w->in_at > MAX_MESSAGE + 16 ? -1 : 1;
}

/* One whole message from the daemon. Returns 1 once the close frame came. */
static int ws_message(struct ws *w, int op, unsigned char *p, size_t n, int stable, ws_sink sink, void *ctx) {
  if (op == 8) { /* close: answer it, then we are done */
    w->close_code = n >= 2 ? p[0] << 8 | p[1] : 1005;
    size_t r = n > 2 ? n - 2 : 0;
    if (r >= sizeof w->close_reason) r = sizeof w->close_reason - 1;
    if (r) memcpy(w->close_reason, p + 2, r);
    w->close_reason[r] = 0;
    ws_frame(w, 8, NULL, 0, p, n >= 2 ? 2 : 0);
    return 1;
  }
  if (op == 9) ws_frame(w, 10, NULL, 0, p, n); /* ping: pong, or the daemon ends us as gone */
  if ((op != 1 && op != 2) || n == 0) return 0; /* the Node client reads a channel byte off either kind */
  sink(ctx, p, n, stable);
  return 0;
}

int ws_frames(struct ws *w, ws_sink sink, void *ctx) {
  int closed = 0;
  while (!closed) {
    const unsigned char *b = (const unsigned char *)w->in.data + w->in_at;
    size_t have = w->in.len - w->in_at;
    if (have < 2) break;
    uint64_t len = b[1] & 0x7f;
    size_t hl = 2;
    if (len == 126) {
      if (have < 4) break;
      len = (uint64_t)b[2] << 8 | b[3];
      hl = 4;
    } else if (len == 127) {
      if (have < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++) len = len << 8 | b[2 + i];
      hl = 10;
    }
    int masked = b[1] & 0x80;
    if (len > MAX_MESSAGE) return -1;
    if (have < hl + (masked ? 4 : 0) + len) break;
    unsigned char *payload = (unsigned char *)w->in.data + w->in_at + hl + (masked ? 4 : 0);
    if (masked)
      for (uint64_t i = 0; i < len; i++) payload[i] ^= b[hl + (i & 3)];
    int op = b[0] & 0x0f, fin = b[0] & 0x80;
    w->in_at += hl + (masked ? 4 : 0) + len;
    if (op >= 8) closed = ws_message(w, op, payload, len, 1, sink, ctx); /* control frames come whole, between fragments */
    else {
      if (op != 0) w->msg_op = op;
      if (fin && w->msg.len == 0) closed = ws_message(w, w->msg_op, payload, len, 1, sink, ctx);
      else {
        if (w->msg.len + len > MAX_MESSAGE) return -1;
        buf_add(&w->msg, payload, len);
        if (fin) {
          closed = ws_message(w, w->msg_op, (unsigned char *)w->msg.data, w->msg.len, 0, sink, ctx);
          w->msg.len = 0;
        }
      }
    }
  }
  return closed;
}

void ws_compact(struct ws *w) {
  if (!w->in_at) return;
  memmove(w->in.data, w->in.data + w->in_at, w->in.len - w->in_at);
  w->in.len -= w->in_at;
  w->in_at = 0;
}

void ws_free(struct ws *w) {
  buf_free(&w->in);
  buf_free(&w->out);
  buf_free(&w->msg);
}

int ws_open(struct ws *w, int fd, const char *target, const char *protocol, const char *fail) {
  memset(w, 0, sizeof *w);
  w->fd = fd;
  if (getrandom(&w->rnd, sizeof w->rnd, GRND_NONBLOCK) != sizeof w->rnd || !w->rnd) w->rnd = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull + 1;
  unsigned char nonce[16];
  for (int i = 0; i < 16; i += 4) {
    uint32_t k = mask_key(w);
    memcpy(nonce + i, &k, 4);
  }
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char key[25];
  for (int i = 0, o = 0; i < 16; i += 3) {
    unsigned v = (unsigned)nonce[i] << 16 | (i + 1 < 16 ? (unsigned)nonce[i + 1] << 8 : 0) | (i + 2 < 16 ? nonce[i + 2] : 0);
    key[o++] = b64[v >> 18 & 63];
    key[o++] = b64[v >> 12 & 63];
    key[o++] = i + 1 < 16 ? b64[v >> 6 & 63] : '=';
    key[o++] = i + 2 < 16 ? b64[v & 63] : '=';
  }
  key[24] = 0;
  struct buf req = {0};
  buf_str(&req, "GET ");
  buf_str(&req, target);
  buf_str(&req, " HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
  buf_str(&req, key);
  buf_str(&req, "\r\nSec-WebSocket-Protocol: ");
  buf_str(&req, protocol);
  buf_str(&req, "\r\n\r\n");
  int broken = write_all(fd, req.data, req.len);
  buf_free(&req);
  size_t he = 0;
  if (broken || read_head(fd, &w->in, &he)) {
    /* Sent, so not handed to the Node CLI again: as its client says when the socket fails under it. */
    fprintf(stderr, "enclave: %s: socket hang up\n", fail);
    return 1;
  }
  int status = status_of(w->in.data);
  if (status != 101) {
    struct reply r = {.status = status};
    char msg[4096];
    if (read_body(fd, &w->in, he, &r)) r.body.len = 0;
    error_message(&r, msg, sizeof msg);
    buf_free(&r.body);
    fprintf(stderr, "enclave: %s\n", msg);
    return 1;
  }
  /* The accept key is not checked: the peer is the daemon's own socket, not something a cache could answer for. */
  w->in_at = he;
  ws_compact(w);
  /* Never block on the socket: the daemon may stop reading input until its output is read. */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return 0;
}

/* ---- exec without a terminal ------------------------------------------- */

static int out_write(int fd, const char *p, size_t n, int *dead) {
  if (*dead) return 0;
  if (write_all(fd, p, n)) *dead = 1; /* stdout gone: the exec ends (below); stderr gone: the rest of it is dropped */
  return 0;
}

/* Channel 3: the kubelet's status, checked as execStatusSchema and read as exitCodeOf and reasonOf (src/api/frames.ts, src/cli/execClient.ts). */
void read_status(const char *p, size_t n, struct outcome *o) {
  struct jv root, st, x, details, causes, cause, reason, msg;
  char text[1024], m[1024];
  o->have = 0;
  o->reason[0] = 0;
  if (!json_parse(p, n, &root) || !json_member(root, "status", &st) || !json_string(st, text, sizeof text)) return;
  if (strcmp(text, "Success") && strcmp(text, "Failure")) return;
  if (json_member(root, "message", &x) && !json_is(x, '"')) return;
  if (json_member(root, "reason", &x) && !json_is(x, '"')) return;
  int has_causes = json_member(root, "details", &details) && json_member(details, "causes", &causes);
  if (json_member(root, "details", &details) && !json_is(details, '{')) return;
  if (has_causes && !json_is(causes, '[')) return;
  for (size_t i = 0; has_causes && json_index(causes, i, &cause); i++)
    if (!json_member(cause, "reason", &reason) || !json_is(reason, '"') || !json_member(cause, "message", &msg) || !json_is(msg, '"')) return;
  if (!strcmp(text, "Success")) {
    o->have = 1;
    o->code = 0;
    return;
  }
  int seen = 0;
  for (size_t i = 0; has_causes && json_index(causes, i, &cause); i++) {
    json_member(cause, "reason", &reason);
    json_member(cause, "message", &msg);
    json_string(reason, text, sizeof text);
    json_string(msg, m, sizeof m);
    if (!strcmp(text, "ExitCode") && !seen++) {
      char *e;
      long v = strtol(m, &e, 10);
      if (*m >= '0' && *m <= '9' && !*e && v >= 0 && v <= 255) {
        o->have = 1;
        o->code = (int)v;
      }
    } else if (!strcmp(text, "OOMKilled") && !o->reason[0]) snprintf(o->reason, sizeof o->reason, "%s", m);
  }
}

struct exec_ctx {
  struct outcome o;
  int dead1, dead2;
};

static void exec_sink(void *ctx, unsigned char *p, size_t n, int stable) {
  (void)stable;
  struct exec_ctx *x = ctx;
  if (p[0] == 1) out_write(1, (const char *)p + 1, n - 1, &x->dead1);
  else if (p[0] == 2) out_write(2, (const char *)p + 1, n - 1, &x->dead2);
  else if (p[0] == 3) read_status((const char *)p + 1, n - 1, &x->o);
}

int ws_exec(int fd, const char *target, int stdin_on, int *code) {
  struct ws w;
  if (ws_open(&w, fd, target, "v5.channel.k8s.io", "exec connection failed")) return 1;
  struct exec_ctx x = {0};
  int closed = 0, stdin_open = stdin_on;
  static const unsigned char eof[2] = {255, 0};
  closed = ws_frames(&w, exec_sink, &x);
  ws_compact(&w);
  char *chunk = malloc(STDIN_CHUNK);
  while (closed == 0 && chunk && !x.dead1) {
    if (ws_flush(&w)) break;
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN | (w.out.len ? POLLOUT : 0)}, {.fd = 0, .events = POLLIN}};
    int np = stdin_open && w.out.len < HIGH_WATER ? 2 : 1;
    if (poll(p, (nfds_t)np, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (np == 2 && p[1].revents) {
      ssize_t n = read(0, chunk, STDIN_CHUNK);
      if (n > 0) {
        static const unsigned char ch0 = 0;
        ws_frame(&w, 2, &ch0, 1, chunk, (size_t)n);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        stdin_open = 0;
        ws_frame(&w, 2, eof, 2, NULL, 0);
      }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      int r = ws_read(&w);
      if (r <= 0) break;
      closed = ws_frames(&w, exec_sink, &x);
      ws_compact(&w);
    }
  }
  free(chunk);
  if (closed == 1) ws_flush(&w); /* our close reply, best effort */
  if (x.dead1 && closed != 1) {
    /* Whoever read our stdout went away (`| head -1`): end as the Node CLI does, with 1; closing the socket ends the command. */
    *code = 1;
    return 0;
  }
  ws_free(&w);
  if (!x.o.have) {
    fprintf(stderr, "enclave: the exec stream ended without an exit status\n");
    return 1;
  }
  if (x.o.reason[0]) fprintf(stderr, "enclave: %s\n", x.o.reason);
  *code = x.o.code;
  return 0;
}
