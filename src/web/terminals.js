// Consoles in tabs: one xterm.js terminal and one attach WebSocket
// (v1.attach.enclave.dev, binary frames, channel byte first) per open
// session, any number at once; the tab shown follows its pane both ways
// (the fit addon on a ResizeObserver, the size sent to the daemon). Output is
// acknowledged once xterm has rendered it, and a dropped connection (a
// network blip, a daemon restart) resumes from its offset. The WebSocket is
// admitted by the sign-in cookie and the page's Origin: no ticket, no token.
import { ATTACH_PROTOCOL as PROTOCOL, Channel as CH } from '/protocol.js';
import { el, sessionLabel } from './format.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
/** Keys typed while (re)connecting are sent once connected, up to this much. */
const MAX_TYPED_AHEAD = 64 * 1024;

function frame(ch, bytes) {
  const out = new Uint8Array(bytes.length + 1);
  out[0] = ch;
  out.set(bytes, 1);
  return out;
}

class Tab {
  constructor(set, session) {
    this.set = set;
    this.id = session.id;
    this.offset = 0;
    this.ws = null;
    this.ended = false;
    this.closed = false;
    this.retryMs = 500;
    this.retry = null;
    /** Input typed before the WebSocket was open. */
    this.typedAhead = [];
    this.host = el('div', { class: 'term-host', 'data-id': session.id, hidden: true });
    this.label = el('span', { class: 'tab-label' });
    this.tab = el(
      'div',
      { class: 'tab', role: 'tab', 'data-id': session.id, onclick: () => set.activate(this.id) },
      this.label,
      el('button', { type: 'button', class: 'tab-close', title: 'close this console (the shell keeps running)', text: '×', onclick: (e) => (e.stopPropagation(), set.close(this.id)) }),
    );
    this.rename(session);
    this.term = new Terminal({ convertEol: false, scrollback: 5000, fontSize: 14, cursorBlink: true, theme: { background: '#0b0d11' } });
    this.fit = new FitAddon.FitAddon();
    this.term.loadAddon(this.fit);
    this.term.onData((s) => this.input(enc.encode(s)));
    this.term.onBinary((s) => this.input(Uint8Array.from(s, (c) => c.charCodeAt(0))));
    this.term.onResize(({ cols, rows }) => {
      this.host.dataset.size = `${rows}x${cols}`; // as stty prints it, for whoever looks
      this.send(CH.resize, enc.encode(JSON.stringify({ Width: cols, Height: rows })));
    });
  }

  rename(session) {
    this.label.textContent = sessionLabel(session);
    this.tab.title = session.id;
  }

  send(ch, bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && !this.ended) this.ws.send(frame(ch, bytes));
  }

  /** Keystrokes: sent now, or once the connection is up (none is lost to a click that came just before). */
  input(bytes) {
    if (this.ended) return;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return this.send(CH.stdin, bytes);
    if (this.typedAhead.reduce((n, b) => n + b.length, 0) + bytes.length <= MAX_TYPED_AHEAD) this.typedAhead.push(bytes);
  }

  /** Mount once shown (xterm measures its cell size then), fit, connect. */
  mount() {
    this.term.open(this.host);
    this.resize();
    this.host.dataset.size = `${this.term.rows}x${this.term.cols}`;
    this.connect();
  }

  /** Fit the terminal to its pane; a changed size goes to the daemon (onResize). */
  resize() {
    if (this.host.hidden || !this.host.clientWidth || !this.host.clientHeight) return;
    this.fit.fit();
  }

  connect(resume) {
    clearTimeout(this.retry);
    const q = new URLSearchParams({ role: 'rw', cols: String(this.term.cols), rows: String(this.term.rows) });
    if (resume !== undefined) q.set('resume', String(resume));
    const ws = new WebSocket(`ws://${location.host}/v1/sessions/${encodeURIComponent(this.id)}/attach?${q}`, [PROTOCOL]);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      this.retryMs = 500;
      this.tab.classList.remove('lost', 'ended');
      this.host.dataset.attached = '';
      this.set.status(this.id, 'attached');
      for (const b of this.typedAhead.splice(0)) this.send(CH.stdin, b);
    };
    ws.onmessage = (ev) => this.receive(new Uint8Array(ev.data));
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      delete this.host.dataset.attached;
      if (this.closed || this.ended) return;
      this.tab.classList.add('lost');
      // 1006: the daemon went (a restart) or the network; 4008: we fell behind. Both resume.
      this.set.status(this.id, `connection lost (${ev.code}); resuming…`);
      this.retry = setTimeout(() => this.connect(this.offset), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 5000);
    };
  }

  receive(data) {
    const ch = data[0];
    const payload = data.subarray(1);
    if (ch === CH.stdout) {
      // Ack once xterm has taken the bytes: the daemon never runs ahead of us.
      this.term.write(payload, () => {
        this.offset += payload.length;
        this.send(CH.ack, enc.encode(String(this.offset)));
      });
    } else if (ch === CH.snapshot) {
      this.term.write(payload); // the screen as the daemon's mirror has it; not part of the offset
    } else if (ch === CH.events) {
      const e = JSON.parse(dec.decode(payload));
      if (e.type === 'hello') {
        if (!e.resumed) this.term.reset();
        this.offset = e.offset;
      } else if (e.type === 'viewers') this.set.status(this.id, `attached, ${e.viewers} viewer${e.viewers === 1 ? '' : 's'}`);
    } else if (ch === CH.status) {
      this.ended = true;
      this.tab.classList.add('ended');
      const st = JSON.parse(dec.decode(payload));
      this.set.status(this.id, `the shell ended: ${st.status === 'Success' ? 'exit 0' : st.message}`);
    }
  }

  /** The session ended or was stopped: the console is gone; the screen stays to read. */
  end(why) {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.retry);
    this.tab.classList.add('ended');
    this.set.status(this.id, why);
    if (this.ws) this.ws.close();
  }

  dispose() {
    this.closed = true;
    clearTimeout(this.retry);
    if (this.ws) this.ws.close();
    this.term.dispose();
    this.host.remove();
    this.tab.remove();
  }
}

export class TerminalTabs {
  constructor(tabBar, pane, placeholder, onStatus) {
    this.tabBar = tabBar;
    this.pane = pane;
    this.placeholder = placeholder;
    this.onStatus = onStatus;
    this.tabs = new Map();
    this.active = null;
    this.messages = new Map();
    // The pane's size, not the window's: the sidebar, the tab bar and the status line take their share.
    let pending = false;
    new ResizeObserver(() => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        this.tabs.get(this.active)?.resize();
      });
    }).observe(pane);
  }

  /** Open (or show) a session's console. */
  open(session) {
    let t = this.tabs.get(session.id);
    if (t && t.ended) {
      this.close(session.id); // a console that ended: attach again in a fresh tab
      t = undefined;
    }
    if (!t) {
      t = new Tab(this, session);
      this.tabs.set(session.id, t);
      this.tabBar.append(t.tab);
      this.pane.append(t.host);
      this.activate(session.id);
      t.mount();
    } else this.activate(session.id);
    t.term.focus();
  }

  activate(id) {
    const t = this.tabs.get(id);
    if (!t) return;
    this.active = id;
    for (const [k, x] of this.tabs) {
      x.host.hidden = k !== id;
      x.tab.classList.toggle('active', k === id);
      x.tab.setAttribute('aria-selected', String(k === id));
    }
    this.placeholder.hidden = true;
    if (t.term.element) {
      t.resize(); // it may have been hidden while the window changed
      t.term.focus();
    }
    this.onStatus(this.messages.get(id) || '');
  }

  close(id) {
    const t = this.tabs.get(id);
    if (!t) return;
    t.dispose();
    this.tabs.delete(id);
    this.messages.delete(id);
    if (this.active === id) {
      this.active = null;
      const next = [...this.tabs.keys()].pop();
      if (next) this.activate(next);
      else {
        this.placeholder.hidden = false;
        this.onStatus('');
      }
    }
  }

  closeAll() {
    for (const id of [...this.tabs.keys()]) this.close(id);
  }

  /** What the list learnt of a session: the tab's name, or the end of its console. */
  sessionChanged(s) {
    const t = this.tabs.get(s.id);
    if (!t) return;
    t.rename(s);
    if (s.state !== 'running') t.end(`${sessionLabel(s)} is ${s.state}: its console is gone`);
  }

  status(id, text) {
    const line = `${this.tabs.get(id)?.label.textContent ?? id}: ${text}`;
    this.messages.set(id, line);
    if (id === this.active) this.onStatus(line);
  }
}
