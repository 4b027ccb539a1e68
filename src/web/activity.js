// The activity pane: the audit trail as it happens (the event stream's
// `audit` events, after the last few from GET /v1/events), newest first.
// What the caller may see of it is the daemon's decision, as in the list.
import { clock, el } from './format.js';

const KEEP = 100;

export class Activity {
  constructor(root) {
    this.root = root;
    /** The last event id seen of each node ('' on a single daemon): ids are per node. */
    this.last = new Map();
  }

  clear() {
    this.root.replaceChildren();
    this.last = new Map();
  }

  /** Where the stream resumes from: the last id (a single daemon), or each node's (NODE:ID,... in a fleet); '' before any. */
  place() {
    const nodes = [...this.last].filter(([n]) => n !== '').sort(([a], [b]) => (a < b ? -1 : 1));
    if (nodes.length) return nodes.map(([n, id]) => `${n}:${id}`).join(',');
    return this.last.has('') ? String(this.last.get('')) : '';
  }

  add(e) {
    const node = e.node || '';
    if (e.id <= (this.last.get(node) ?? 0)) return; // a replay of what we have
    this.last.set(node, e.id);
    const who = e.via === 'kernel' ? 'kernel' : e.via === 'daemon' ? 'daemon' : `uid ${e.caller_uid}`;
    const what = e.session_name || e.session_id || '';
    const line = el(
      'li',
      { class: `ev ${e.decision}`, title: `${e.time} · ${e.via} · rule ${e.rule}` },
      el('span', { class: 'time', text: clock(e.time) }),
      el('span', { class: 'who', text: who }),
      el('span', { class: 'action', text: e.action }),
      what ? el('span', { class: 'what', text: what }) : null,
      e.decision === 'deny' ? el('span', { class: 'denied', text: 'denied' }) : null,
      e.detail ? el('span', { class: 'detail', text: e.detail }) : null,
    );
    this.root.prepend(line);
    while (this.root.children.length > KEEP) this.root.lastElementChild.remove();
  }
}
