/* `session attach` and `session exec -t` in the front end: the attach
 * protocol (src/api/protocol.ts) over the daemon's socket, as the Node CLI's
 * src/cli/attachClient.ts speaks it. One poll loop carries a keystroke to the
 * socket and its echo to the terminal: no other process, no thread, no copy
 * of the output but the kernel's (it is written from where it was read).
 *   - raw mode on the caller's terminal (libuv's, as Node sets it), with -i/attach
 *     when stdin is a terminal; SIGWINCH -> a resize frame;
 *   - the detach keys (held while a prefix of them is typed, as DetachMatcher);
 *   - the modes a program left switched on (alternate screen, hidden cursor,
 *     mouse...) followed through the output (src/cli/terminalModes.ts, its table
 *     generated into front_table.gen.h) and switched off on every way out: the
 *     end, a detach, the daemon gone, SIGINT/SIGTERM/SIGHUP/SIGQUIT (restored,
 *     then the signal's own death). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "front.h"
#include "front_table.gen.h"

#define STDIN_CHUNK (64u * 1024)
/* Input queued for the socket beyond this: stdin is not read. */
#define HIGH_WATER (1u << 20)
/* Acknowledge what reached the terminal every this many bytes (attachClient.ts). */
#define ACK_EVERY (256u * 1024)
#define MAX_IOV 64

/* ---- terminal modes (src/cli/terminalModes.ts) -------------------------- */

struct modes {
  /* Modes away from their default, in the order they changed (the order restoreSequence writes them). */
  int mode[FT_NDEC_MODES];
  unsigned char on[FT_NDEC_MODES];
  size_t n;
  int keypad_app;
  unsigned char carry[FT_MODES_MAX_CARRY];
  size_t ncarry;
};

static void modes_set(struct modes *m, long mode, int on) {
  int def = -1;
  for (size_t i = 0; i < FT_NDEC_MODES; i++)
    if (ft_dec_modes[i].mode == mode) def = ft_dec_modes[i].on_by_default;
  if (def < 0) return;
  size_t at = 0;
  while (at < m->n && m->mode[at] != mode) at++;
  if (on == def) { /* back at its default: no longer changed */
    if (at == m->n) return;
    memmove(m->mode + at, m->mode + at + 1, (m->n - at - 1) * sizeof *m->mode);
    memmove(m->on + at, m->on + at + 1, m->n - at - 1);
    m->n--;
    return;
  }
  if (at == m->n) m->mode[m->n++] = (int)mode; /* a Map's set: a new key goes last, an old one keeps its place */
  m->on[at] = (unsigned char)on;
}

/* Byte k of the text the TypeScript parses: the carry, then this chunk. */
static unsigned char text_at(const unsigned char *carry, size_t c, const unsigned char *p, size_t k) { return k < c ? carry[k] : p[k - c]; }

static void modes_feed(struct modes *m, const unsigned char *p, size_t n) {
  if (!m->ncarry && !memchr(p, 0x1b, n)) return; /* most output: no escape at all */
  unsigned char carry[FT_MODES_MAX_CARRY];
  size_t c = m->ncarry, len = c + n, i = 0;
  memcpy(carry, m->carry, c);
  m->ncarry = 0;
  for (;;) {
    size_t esc = i;
    while (esc < c && carry[esc] != 0x1b) esc++;
    if (esc >= c) {
      const unsigned char *e = esc - c < n ? memchr(p + (esc - c), 0x1b, n - (esc - c)) : NULL;
      if (!e) return;
      esc = c + (size_t)(e - p);
    }
    if (esc + 1 >= len) goto keep;
    unsigned char next = text_at(carry, c, p, esc + 1);
    if (next == '=') m->keypad_app = 1;
    else if (next == '>') m->keypad_app = 0;
    else if (next == 'c') { /* RIS: the terminal is back to its defaults */
      m->n = 0;
      m->keypad_app = 0;
    }
    if (!(next == '[' && esc + 2 < len && text_at(carry, c, p, esc + 2) == '?')) {
      if (next == '[' && esc + 2 == len) goto keep;
      i = esc + 1;
      continue;
    }
    size_t j = esc + 3;
    while (j < len && ((text_at(carry, c, p, j) >= '0' && text_at(carry, c, p, j) <= '9') || text_at(carry, c, p, j) == ';')) j++;
    if (j >= len) goto keep;
    unsigned char final = text_at(carry, c, p, j);
    if (final == 'h' || final == 'l') {
      long v = 0;
      for (size_t k = esc + 3; k <= j; k++) {
        unsigned char ch = text_at(carry, c, p, k);
        if (ch >= '0' && ch <= '9') v = v > 100000000 ? v : v * 10 + (ch - '0');
        else {
          modes_set(m, v, final == 'h');
          v = 0;
        }
      }
    }
    i = j + 1;
    continue;
  keep: /* a sequence cut by the chunk's end, kept for the next one if short */
    if (len - esc <= FT_MODES_MAX_CARRY) {
      for (size_t k = esc; k < len; k++) m->carry[k - esc] = text_at(carry, c, p, k);
      m->ncarry = len - esc;
    }
    return;
  }
}

/* The bytes that put every changed mode back to its default (empty when nothing changed). */
static void modes_restore(const struct modes *m, struct buf *out) {
  char seq[32];
  for (size_t a = 0; a < FT_NALT_SCREENS; a++)
    for (size_t i = 0; i < m->n; i++)
      if (m->mode[i] == ft_alt_screens[a] && m->on[i]) {
        snprintf(seq, sizeof seq, "%s%dl", FT_CSI_Q, m->mode[i]);
        buf_str(out, seq);
      }
  for (size_t i = 0; i < m->n; i++) {
    int alt = 0;
    for (size_t a = 0; a < FT_NALT_SCREENS; a++) alt |= m->mode[i] == ft_alt_screens[a];
    if (alt) continue;
    snprintf(seq, sizeof seq, "%s%d%c", FT_CSI_Q, m->mode[i], m->on[i] ? 'l' : 'h');
    buf_str(out, seq);
  }
  if (m->keypad_app) buf_str(out, FT_KEYPAD_NORMAL);
  if (out->len) buf_str(out, FT_SGR_RESET);
}

/* ---- the caller's terminal --------------------------------------------- */

static struct termios saved;
static int raw_on, stdout_tty;
static struct modes modes;
static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t fatal_sig, winched;

static int write_fd(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) {
      if (fatal_sig) return -1;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { /* a caller's non-blocking terminal: wait for it */
      struct pollfd pf = {.fd = fd, .events = POLLOUT};
      if (poll(&pf, 1, -1) < 0 && errno == EINTR && fatal_sig) return -1;
      continue;
    }
    if (w <= 0) return -1;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* As Node's setRawMode(false) and the client's restore(): the terminal's settings as found, then the modes switched off. */
static void restore(void) {
  if (raw_on) {
    tcsetattr(0, TCSADRAIN, &saved);
    raw_on = 0;
  }
  if (!stdout_tty) return;
  struct buf undo = {0};
  modes_restore(&modes, &undo);
  if (undo.len) {
    write_fd(1, undo.data, undo.len);
    memset(&modes, 0, sizeof modes); /* what it wrote is the defaults */
  }
  buf_free(&undo);
}

/* libuv's UV_TTY_MODE_RAW, which Node's stdin.setRawMode(true) sets. */
static void raw_mode(void) {
  if (tcgetattr(0, &saved)) return;
  struct termios t = saved;
  t.c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
  t.c_oflag |= ONLCR;
  t.c_cflag |= CS8;
  t.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  if (!tcsetattr(0, TCSADRAIN, &t)) raw_on = 1;
}

static void on_signal(int sig) {
  int e = errno;
  if (sig == SIGWINCH) winched = 1;
  else if (!fatal_sig) fatal_sig = sig;
  (void)!write(sig_pipe[1], "", 1);
  errno = e;
}

static const int fatal_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

static void catch_signals(void) {
  if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK)) return;
  /* SIGWINCH restarts what it interrupts; the others interrupt a write to a terminal that does not drain, so they end us still. */
  struct sigaction wa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
  sigaction(SIGWINCH, &wa, NULL);
  struct sigaction fa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
  for (size_t i = 0; i < sizeof fatal_signals / sizeof *fatal_signals; i++) {
    struct sigaction old;
    /* An ignored signal (nohup) stays ignored. */
    if (!sigaction(fatal_signals[i], NULL, &old) && old.sa_handler != SIG_IGN) sigaction(fatal_signals[i], &fa, NULL);
  }
}

/* terminalSize(): 0x0 (a terminal that reports none) is 80x24; at most what the API allows. */
static void term_size(int *cols, int *rows) {
  struct winsize ws = {0};
  if (ioctl(1, TIOCGWINSZ, &ws)) ws.ws_col = ws.ws_row = 0;
  *cols = ws.ws_col ? (ws.ws_col > 1000 ? 1000 : ws.ws_col) : 80;
  *rows = ws.ws_row ? (ws.ws_row > 500 ? 500 : ws.ws_row) : 24;
}

void tty_query_size(struct buf *t) {
  if (!isatty(1)) return;
  int cols, rows;
  term_size(&cols, &rows);
  char q[64];
  snprintf(q, sizeof q, "&cols=%d&rows=%d", cols, rows);
  buf_str(t, q);
}

/* ---- detach keys (parseDetachKeys, DetachMatcher) ---------------------- */

int tty_detach_keys(const char *spec, unsigned char *keys, size_t cap, size_t *n) {
  *n = 0;
  const char *p = spec;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    while (len && strchr(" \t\n\v\f\r", *p)) p++, len--;
    while (len && strchr(" \t\n\v\f\r", p[len - 1])) len--;
    char k[8];
    if (len == 0 || len >= sizeof k || *n == cap) return 0; /* the Node CLI says what is wrong */
    for (size_t i = 0; i < len; i++) {
      unsigned char ch = (unsigned char)p[i];
      if (ch < 0x20 || ch > 0x7e) return 0;
      k[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    k[len] = 0;
    if (len == 6 && !strncmp(k, "ctrl-", 5) && strchr("abcdefghijklmnopqrstuvwxyz@[\\]^_", k[5])) keys[(*n)++] = (unsigned char)((k[5] >= 'a' && k[5] <= 'z' ? k[5] - 32 : k[5]) & 0x1f);
    else if (len == 1) keys[(*n)++] = (unsigned char)k[0];
    else return 0;
    if (!end) return 1;
    p = end + 1;
  }
}

/* ---- the loop ----------------------------------------------------------- */

struct session {
  struct ws w;
  int have_code, code;
  long long offset, acked;
  struct iovec iov[MAX_IOV];
  size_t niov;
  size_t pending; /* bytes in iov */
  int out_dead;
};

static void ack(struct session *s, size_t n) {
  s->offset += (long long)n;
  if (s->offset - s->acked < ACK_EVERY) return;
  s->acked = s->offset;
  char num[32];
  int len = snprintf(num, sizeof num, "%lld", s->offset);
  static const unsigned char ch = FT_CH_ACK;
  ws_frame(&s->w, 2, &ch, 1, num, (size_t)len);
}

/* Write the output gathered from this read to the terminal in one call, then acknowledge it. */
static void flush_out(struct session *s) {
  if (!s->niov) return;
  struct iovec *v = s->iov;
  size_t left = s->niov;
  while (left && !s->out_dead) {
    ssize_t w = writev(1, v, (int)left);
    if (w < 0 && errno == EINTR && !fatal_sig) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd pf = {.fd = 1, .events = POLLOUT};
      poll(&pf, 1, -1);
      continue;
    }
    if (w <= 0) {
      s->out_dead = 1;
      break;
    }
    size_t done = (size_t)w;
    while (left && done >= v->iov_len) done -= v->iov_len, v++, left--;
    if (left) {
      v->iov_base = (char *)v->iov_base + done;
      v->iov_len -= done;
    }
  }
  ack(s, s->pending);
  s->niov = s->pending = 0;
}

static void sink(void *ctx, unsigned char *p, size_t n, int stable) {
  struct session *s = ctx;
  unsigned char ch = p[0];
  p++, n--;
  if (ch == FT_CH_STDOUT) {
    modes_feed(&modes, p, n);
    if (s->niov == MAX_IOV) flush_out(s);
    s->iov[s->niov++] = (struct iovec){.iov_base = p, .iov_len = n};
    s->pending += n;
    if (!stable) flush_out(s);
  } else if (ch == FT_CH_SNAPSHOT) {
    /* The screen as it is now, drawn on a cleared terminal; not part of the offset. */
    flush_out(s);
    modes_feed(&modes, p, n);
    static const char clear[] = "\033[0m\033[H\033[2J";
    if (write_fd(1, clear, sizeof clear - 1) || write_fd(1, p, n)) s->out_dead = 1;
  } else if (ch == FT_CH_EVENTS) {
    struct jv root, type, off;
    char t[16];
    if (json_parse((const char *)p, n, &root) && json_member(root, "type", &type) && json_string(type, t, sizeof t) && !strcmp(t, "hello") && json_member(root, "offset", &off) && json_is(off, 'n'))
      s->offset = s->acked = strtoll(off.p, NULL, 10);
  } else if (ch == FT_CH_STATUS) {
    struct outcome o;
    read_status((const char *)p, n, &o);
    s->have_code = o.have;
    s->code = o.code;
  }
}

static void send_resize(struct session *s) {
  int cols, rows;
  term_size(&cols, &rows);
  char j[64];
  int len = snprintf(j, sizeof j, "{\"Width\":%d,\"Height\":%d}", cols, rows);
  static const unsigned char ch = FT_CH_RESIZE;
  ws_frame(&s->w, 2, &ch, 1, j, (size_t)len);
}

int tty_run(int fd, const char *target, const struct tty_opts *o) {
  static struct session s;
  stdout_tty = isatty(1);
  /* exec -t without -i reads nothing: the terminal stays as it is and Ctrl-C ends this client (the terminal restored first). */
  int tty = o->input && isatty(0);
  if (ws_open(&s.w, fd, target, FT_ATTACH_PROTOCOL, "attach failed")) return 1;
  /* From here the terminal is ours to put back: a signal ends the loop first (before, it ends us as it would). */
  catch_signals();
  if (tty) raw_mode();
  unsigned char *in = malloc(STDIN_CHUNK + 16), *keep = malloc(STDIN_CHUNK + 16);
  if (!in || !keep) {
    restore();
    return 1;
  }
  int closed = ws_frames(&s.w, sink, &s), reading = o->input, detached = 0, gone = 0;
  flush_out(&s);
  ws_compact(&s.w);
  size_t held = 0; /* how much of the detach keys was typed so far */
  while (closed == 0 && !fatal_sig && !s.out_dead) {
    if (winched) {
      winched = 0;
      send_resize(&s);
    }
    if (ws_flush(&s.w)) {
      gone = 1;
      break;
    }
    struct pollfd p[3] = {{.fd = fd, .events = POLLIN | (s.w.out.len ? POLLOUT : 0)}, {.fd = sig_pipe[0], .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    nfds_t np = reading && s.w.out.len < HIGH_WATER ? 3 : 2;
    if (poll(p, np, -1) < 0) continue;
    if (p[1].revents) {
      char drain[64];
      while (read(sig_pipe[0], drain, sizeof drain) > 0) continue;
    }
    if (np == 3 && p[2].revents) {
      ssize_t n = read(0, in, STDIN_CHUNK);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) reading = 0; /* stdin's end: nothing more is sent, the session goes on */
      else {
        /* DetachMatcher.feed: a prefix of the keys is held back until it is the keys (detach) or is not (sent as typed). */
        const unsigned char *send = in;
        size_t nsend = (size_t)n;
        if (o->nkeys && (held || memchr(in, o->keys[0], (size_t)n))) {
          nsend = 0;
          send = keep;
          for (ssize_t i = 0; i < n && !detached; i++) {
            unsigned char b = in[i];
            if (b == o->keys[held]) {
              if (++held == o->nkeys) detached = 1;
            } else {
              memcpy(keep + nsend, o->keys, held);
              nsend += held;
              held = 0;
              if (b == o->keys[0]) held = 1;
              else keep[nsend++] = b;
            }
          }
        }
        static const unsigned char ch0 = FT_CH_STDIN;
        if (nsend && !o->read_only) ws_frame(&s.w, 2, &ch0, 1, send, nsend);
        if (detached) {
          static const unsigned char bye[] = {1000 >> 8, 1000 & 255, 'd', 'e', 't', 'a', 'c', 'h', 'e', 'd'};
          ws_frame(&s.w, 8, NULL, 0, bye, sizeof bye);
          reading = 0;
        }
      }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      int r = ws_read(&s.w);
      if (r <= 0) {
        gone = 1;
        break;
      }
      closed = ws_frames(&s.w, sink, &s);
      flush_out(&s);
      ws_compact(&s.w);
    }
  }
  if (closed == 1) ws_flush(&s.w); /* our close reply, best effort */
  restore();
  if (fatal_sig) {
    /* The signal's own end, the terminal put back first. */
    int sig = fatal_sig;
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(128 + sig);
  }
  if (detached) {
    write_fd(1, FT_DETACHED_MESSAGE, sizeof FT_DETACHED_MESSAGE - 1);
    return 0;
  }
  if (s.have_code) return s.code;
  if (s.out_dead) return 1;
  if (closed == 1)
    fprintf(stderr, "enclave: the console connection closed (%d%s%s)\n", s.w.close_code, s.w.close_reason[0] ? ": " : "", s.w.close_reason);
  else {
    (void)gone;
    fprintf(stderr, "enclave: the console connection closed (1006)\n");
  }
  return 1;
}

/* ENCLAVE_FRONT=modes (tests): stdin is chunks, each a 4-byte big-endian length and its bytes, fed as
 * output would be; stdout gets the restore sequence, which test/unit/frontModes.test.ts compares with
 * src/cli/terminalModes.ts's for the same chunks. */
int tty_modes_check(void) {
  struct buf all = {0};
  char chunk[65536];
  ssize_t n;
  while ((n = read(0, chunk, sizeof chunk)) > 0) buf_add(&all, chunk, (size_t)n);
  struct modes m = {0};
  size_t at = 0;
  while (at + 4 <= all.len) {
    const unsigned char *h = (const unsigned char *)all.data + at;
    size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    if (at + 4 + len > all.len) return 2;
    modes_feed(&m, h + 4, len);
    at += 4 + len;
  }
  struct buf out = {0};
  modes_restore(&m, &out);
  return out.len && write_fd(1, out.data, out.len) ? 1 : 0;
}
