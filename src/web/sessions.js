// The session list: one card per session the caller may see, updated in
// place from the event stream (never rebuilt, so a click is never lost to a
// refresh), with CPU and memory in use. Those are the one thing asked for
// again and again: every few seconds, only while the page is visible, one
// round at a time, and from /metrics: one request for every session (its
// per-session series are those the caller may see, as the stats route
// decides), where the stats route would be a request per session and an
// audit event each, and a page left open all day would fill the caller's
// share of the audit trail with them.
import { api } from './api.js';
import { BUSY, ENDED, bytes, el, percent, sessionLabel } from './format.js';

const STATS_EVERY_MS = 5000;

/** The per-session series the cards show, by session id. */
function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    const m = /^enclave_session_(cpu_seconds_total|memory_bytes|memory_limit_bytes)\{session="([^"]+)"\} (\S+)$/.exec(line);
    if (!m) continue;
    if (!out.has(m[2])) out.set(m[2], {});
    out.get(m[2])[m[1]] = Number(m[3]);
  }
  return out;
}

export class SessionList {
  /**
   * @param {HTMLElement} root the <ul>
   * @param {{ attach(s): void, stop(s): void, start(s): void, destroy(s): void, changed(s): void }} actions
   */
  constructor(root, empty, count, actions) {
    this.root = root;
    this.empty = empty;
    this.count = count;
    this.actions = actions;
    /** id -> { session, card, parts } */
    this.items = new Map();
    this.timer = null;
    this.polling = false;
    /** The last scrape: when, and each session's CPU seconds then (CPU % is the difference). */
    this.lastScrape = null;
  }

  /** The whole list, as the stream sends it at each (re)connection. */
  replaceAll(sessions) {
    const ids = new Set(sessions.map((s) => s.id));
    for (const id of [...this.items.keys()]) if (!ids.has(id)) this.remove(id);
    for (const s of sessions) this.upsert(s);
  }

  get(id) {
    return this.items.get(id)?.session;
  }

  upsert(s) {
    if (ENDED.has(s.state)) {
      this.remove(s.id);
      this.actions.changed(s);
      return;
    }
    let item = this.items.get(s.id);
    if (!item) {
      item = this.card(s);
      this.items.set(s.id, item);
      this.root.append(item.card);
    }
    item.session = s;
    this.fill(item);
    this.actions.changed(s);
    this.counted();
  }

  remove(id) {
    const item = this.items.get(id);
    if (!item) return;
    item.card.remove();
    this.items.delete(id);
    this.counted();
  }

  clear() {
    for (const id of [...this.items.keys()]) this.remove(id);
  }

  counted() {
    this.count.textContent = this.items.size ? `(${this.items.size})` : '';
    this.empty.hidden = this.items.size > 0;
  }

  card(s) {
    const p = {
      name: el('span', { class: 'name' }),
      state: el('span', { class: 'state' }),
      meta: el('div', { class: 'meta' }),
      ports: el('div', { class: 'ports' }),
      cpu: el('span', { class: 'cpu', title: 'CPU, 100% = one CPU' }),
      memBar: el('span', { class: 'bar' }),
      mem: el('span', { class: 'mem' }),
      error: el('div', { class: 'last-error' }),
    };
    const act = (name, label, cls) => (p[name] = el('button', { type: 'button', class: cls, 'data-act': name, text: label, onclick: () => this.actions[name](this.items.get(s.id).session) }));
    p.stats = el('div', { class: 'stats' }, p.cpu, el('span', { class: 'meter' }, p.memBar), p.mem);
    const card = el(
      'li',
      { class: 'session', 'data-id': s.id },
      el('div', { class: 'title' }, el('span', { class: 'dot' }), p.name, p.state),
      p.meta,
      p.ports,
      p.stats,
      p.error,
      el('div', { class: 'actions' }, act('attach', 'Attach'), act('stop', 'Stop'), act('start', 'Start'), act('destroy', 'Destroy', 'danger')),
    );
    return { session: s, card, parts: p, stats: null };
  }

  fill(item) {
    const { session: s, card, parts: p } = item;
    card.dataset.state = s.state;
    card.dataset.name = s.name || '';
    p.name.textContent = sessionLabel(s);
    p.name.title = s.id;
    p.state.textContent = s.state;
    const addr = s.network.mode === 'none' ? 'no network' : s.network.address || 'no address';
    p.meta.textContent = [s.name ? s.id : null, `uid ${s.owner_uid ?? '?'}`, addr, s.profile, `${s.limits.memory_mb} MiB`].filter(Boolean).join(' · ');
    p.meta.title = p.meta.textContent;
    p.ports.textContent = s.network.published.map((x) => `${x.host_ip}:${x.host_port} → ${x.session_port}`).join('  ');
    p.ports.hidden = s.network.published.length === 0;
    p.error.textContent = s.last_error || (s.state === 'stopped' && s.stopped_because ? `stopped: ${s.stopped_because}` : '');
    p.error.hidden = !p.error.textContent;
    const running = s.state === 'running';
    const busy = BUSY.has(s.state);
    p.attach.hidden = !running;
    p.stop.hidden = !running;
    // A strict session has no layer to store: the daemon refuses its stop (409).
    p.stop.disabled = s.profile === 'strict';
    p.stop.title = s.profile === 'strict' ? 'a strict session has nothing to store: destroy it instead' : 'end its processes, keep its files';
    p.start.hidden = s.state !== 'stopped';
    p.destroy.disabled = s.state === 'destroying';
    for (const b of [p.attach, p.stop, p.start]) if (busy) b.hidden = true;
    p.stats.hidden = !running;
    if (!running) item.stats = null;
    this.fillStats(item);
  }

  fillStats(item) {
    const st = item.stats;
    const p = item.parts;
    p.cpu.textContent = `CPU ${st && st.cpuPercent !== null ? percent(st.cpuPercent) : '…'}`;
    const used = st ? st.used : null;
    const limit = st ? st.limit : null;
    p.mem.textContent = st ? `${bytes(used)} / ${bytes(limit)}` : 'memory …';
    p.memBar.style.width = used !== null && limit ? `${Math.min(100, (100 * used) / limit).toFixed(1)}%` : '0';
  }

  /** Stats every few seconds while the page is visible (the second a second after the first: CPU % needs two). */
  startStats() {
    this.stopStats();
    const tick = async () => {
      if (document.visibilityState === 'visible' && !this.polling) {
        this.polling = true;
        try {
          await this.refreshStats();
        } finally {
          this.polling = false;
        }
      }
      this.timer = setTimeout(tick, this.lastScrape && this.lastScrape.n > 1 ? STATS_EVERY_MS : 1000);
    };
    tick();
  }

  stopStats() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  async refreshStats() {
    if (![...this.items.values()].some((i) => i.session.state === 'running')) return;
    let series;
    try {
      series = parseMetrics(await api.text('/metrics'));
    } catch {
      return; // the daemon restarts: the next round will tell
    }
    const now = performance.now();
    const before = this.lastScrape;
    this.lastScrape = { at: now, cpu: new Map(), n: (before ? before.n : 0) + 1 };
    for (const item of this.items.values()) {
      const m = series.get(item.session.id);
      if (item.session.state !== 'running' || !m) {
        item.stats = null;
      } else {
        const cpu = m.cpu_seconds_total;
        const prev = before ? before.cpu.get(item.session.id) : undefined;
        if (cpu !== undefined) this.lastScrape.cpu.set(item.session.id, cpu);
        // 100% is one CPU, as limits.cpu_percent counts it.
        const cpuPercent = cpu !== undefined && prev !== undefined && now > before.at && cpu >= prev ? ((cpu - prev) / ((now - before.at) / 1000)) * 100 : null;
        item.stats = { cpuPercent: cpuPercent ?? item.stats?.cpuPercent ?? null, used: m.memory_bytes ?? null, limit: m.memory_limit_bytes ?? null };
      }
      this.fillStats(item);
    }
  }
}
