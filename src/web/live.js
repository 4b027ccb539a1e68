// Live updates: the daemon's event stream (GET /v1/events/stream,
// server-sent events), opened once per page. At each (re)connection it
// sends the whole list, so nothing is missed while it was away; the browser
// reconnects by itself (a daemon restart) and says from which audit event
// (Last-Event-ID). Nothing is asked for again and again.

export class Live {
  /** @param {{ sessions(list): void, session(s): void, audit(e): void, state(text, ok): void, place(): string, lost(): Promise<boolean> }} on */
  constructor(on) {
    this.on = on;
    this.es = null;
    this.retry = null;
    this.retryMs = 3000;
    /** The last event id the daemon gave ('' before any). */
    this.place = '';
  }

  open(after) {
    this.close();
    const es = new EventSource(`/v1/events/stream${after ? `?after=${encodeURIComponent(after)}` : ''}`);
    this.es = es;
    // The place the daemon gave last (an event id; in a fleet, each node's): where a reopen resumes.
    const placed = (m) => m.lastEventId && (this.place = m.lastEventId);
    es.addEventListener('sessions', (m) => (placed(m), this.on.sessions(JSON.parse(m.data).sessions)));
    es.addEventListener('session', (m) => this.on.session(JSON.parse(m.data)));
    es.addEventListener('audit', (m) => (placed(m), this.on.audit(JSON.parse(m.data))));
    es.onopen = () => {
      this.retryMs = 3000;
      this.on.state('live', true);
    };
    es.onerror = async () => {
      if (this.es !== es) return;
      if (es.readyState === EventSource.CONNECTING) return this.on.state('reconnecting…', false);
      // Closed for good: an error status. Signed out (401), not allowed (403), or something to retry, less and less often.
      this.on.state('offline', false);
      es.close();
      if (!(await this.on.lost())) return;
      this.retry = setTimeout(() => this.open(this.place || this.on.place()), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 60_000);
    };
  }

  close() {
    clearTimeout(this.retry);
    if (this.es) this.es.close();
    this.es = null;
  }
}
