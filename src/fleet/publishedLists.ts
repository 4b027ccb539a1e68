// Other nodes' lists as they wrote them to etcd (listPublisher.ts), read
// from the watched copy. Each row is parsed and checked once, when its
// value changes, and kept frozen, so listJson.ts serializes it once; a
// node's rows are sorted once, and the same array serves every list until
// one of them changes. A node with a row that does not check (another
// writer, a newer version) is not given (logged once a value): it is asked.
import type { Logger } from 'pino';
import { sessionSchema, type Session } from '../api/schemas.js';
import { deepFreeze } from '../vocab/frozen.js';
import { listingSchema, prefix } from './keys.js';
import { ParsedValues } from './parsedValues.js';

interface Row {
  value: string;
  /** undefined: the value does not check. */
  session: Session | undefined;
}

export class PublishedLists {
  private readonly rows = new Map<string, Row>();
  /** Each node's rows as the last list sorted them, and the values they were made of. */
  private readonly sorted = new Map<string, { values: string[]; sessions: readonly Session[] }>();
  /** Each node's listing record as parsed last. */
  private readonly listings = new ParsedValues(listingSchema);
  /** The last answer of of(), and the version of the copy's listed part and the nodes it was made for. */
  private last: { version: number; asked: string; out: Map<string, readonly Session[]> } | undefined;
  /** Lists of other nodes read here and answered with (the daemon's /metrics): counted by the list that used them. */
  readonly counts = { lists: 0 };

  constructor(private readonly log: Logger) {}

  /** Whether etcd holds `node`'s whole list for the registration its member record names (`registeredAt`). */
  current(listing: ReadonlyMap<string, string>, node: string, registeredAt: string): boolean {
    this.listings.keepOnly(listing);
    const v = listing.get(`${prefix.listing}${node}`);
    if (v === undefined) return false;
    try {
      return this.listings.get(`${prefix.listing}${node}`, v).registered_at === registeredAt;
    } catch {
      return false;
    }
  }

  /**
   * Each node's sessions in `listed` (the copy's /enclave/listed/ keys, as
   * they are now), in the order the node lists them (created, then id):
   * only `nodes` are made, and a node with a row that does not check is left
   * out (its caller asks it).
   */
  of(listed: ReadonlyMap<string, string>, nodes: ReadonlySet<string>, version?: number): Map<string, readonly Session[]> {
    // The copy's listed part as it was at the last list (its version: watched.ts), for the same nodes: the same answer.
    const asked = [...nodes].sort().join(' ');
    if (version !== undefined && this.last?.version === version && this.last.asked === asked) return this.last.out;
    const out = this.made(listed, nodes);
    this.last = version === undefined ? undefined : { version, asked, out };
    return out;
  }

  private made(listed: ReadonlyMap<string, string>, nodes: ReadonlySet<string>): Map<string, readonly Session[]> {
    const byNode = new Map<string, { values: string[]; rows: Session[] }>();
    let seen = 0;
    const bad = new Set<string>();
    for (const [k, value] of listed) {
      const slash = k.indexOf('/', prefix.listed.length);
      const node = k.slice(prefix.listed.length, slash);
      if (!nodes.has(node)) continue;
      let got = byNode.get(node);
      if (!got) byNode.set(node, (got = { values: [], rows: [] }));
      seen++;
      const row = this.row(k, value, node, k.slice(slash + 1));
      if (!row) {
        bad.add(node);
        continue;
      }
      got.values.push(value);
      got.rows.push(row);
    }
    const out = new Map<string, readonly Session[]>();
    for (const node of nodes) {
      if (bad.has(node)) continue;
      const got = byNode.get(node);
      const before = this.sorted.get(node);
      if (!got) {
        out.set(node, []);
        continue;
      }
      // Unchanged: the same values in the same order (a key written again keeps its place in the copy; a changed
      // value is a new string), so the same frozen rows. A key deleted and written again moves: sorted again.
      if (before && before.values.length === got.values.length && got.values.every((v, i) => before.values[i] === v)) {
        out.set(node, before.sessions);
        continue;
      }
      const sessions = Object.freeze(got.rows.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : 1)));
      this.sorted.set(node, { values: got.values, sessions });
      out.set(node, sessions);
    }
    // Rows of keys gone from etcd (their sessions ended, their nodes no longer asked): forgotten.
    if (this.rows.size > seen) for (const k of this.rows.keys()) if (!listed.has(k) || !nodes.has(k.slice(prefix.listed.length, k.indexOf('/', prefix.listed.length)))) this.rows.delete(k);
    for (const n of this.sorted.keys()) if (!nodes.has(n)) this.sorted.delete(n);
    return out;
  }

  private row(k: string, value: string, node: string, id: string): Session | undefined {
    const kept = this.rows.get(k);
    if (kept && kept.value === value) return kept.session;
    let session: Session | undefined;
    try {
      const s = sessionSchema.parse(JSON.parse(value));
      if (s.id !== id || s.node !== node) throw new Error(`it is session ${s.id.slice(0, 64)} of node ${String(s.node).slice(0, 64)}`);
      session = deepFreeze(s);
    } catch (e) {
      this.log.warn({ key: k.slice(0, 200), err: (e as Error).message.slice(0, 300) }, "fleet list: a listed row does not check; its node is asked for its list instead");
    }
    this.rows.set(k, { value, session });
    return session;
  }
}
