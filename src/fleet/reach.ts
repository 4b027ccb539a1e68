// Reach from anywhere: where a session of the fleet lives, and the calls
// that go there. A session is found by id or by its owner and name among
// the placements in etcd (/enclave/desired/NODE/ID: present from placement
// until the session ends, stopped ones included); a call on it is forwarded
// to that node over the mutual-TLS channel (peerTls.ts). A listing asks
// every live node for its own sessions at once and shows a node that does
// not answer (or whose lease lapsed) with what etcd last knew of its sessions,
// unreachable, and the sessions the fleet declared lost (views.ts).
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { z } from 'zod';
import { sessionSchema, type Session } from '../api/schemas.js';
import { ROWS_IM, rowsDelta, sessionRowsSchema } from '../api/fleetSchemas.js';
import type { SessionListed } from '../api/render.js';
import { eventListSchema, type AuditEvent } from '../api/eventSchemas.js';
import { ApiError } from '../vocab/errors.js';
import { getWithRev } from './etcd.js';
import { downSchema, key, parseValue, prefix, statusSchema, type Desired, type Status } from './keys.js';
import { reportedOrPlaced, unreachableView } from './views.js';
import { PeerCredentials, peerName, type PeerConfig } from './peerTls.js';
import { PeerClient } from './peerClient.js';
import { Members } from './members.js';
import type { Asked, WatchedFleet } from './watched.js';
import { LastAnswers, type ListSchema } from './lastAnswers.js';
import { PublishedLists } from './publishedLists.js';
import { FleetKeys, type Endpoints, type FleetReads } from './fleetReads.js';
import { parsed, peerGet } from './peerGet.js';
import { FLEET_READ_TIMEOUT_MS, fleetOp, within } from './deadline.js';

export interface Located {
  id: string;
  node: string;
  owner_uid: number;
  endpoint: string;
  /** Whether its node holds its lease: a call is refused (after the caller's access check, so a refusal tells nobody else it exists) when not. */
  alive: boolean;
  /** Why a call on it cannot go there (a name two nodes hold, a node gone from the fleet): said only after the access check, for the same reason. */
  refusal?: ApiError;
}

export type SessionRef = { kind: 'id'; id: string } | { kind: 'name'; name: string; owner: number };

const listReply = z.object({ sessions: z.array(sessionSchema) });
/** An etcd read a list waits on: its answer within the list's bound, else `fallback` (the list goes on without it). */
const quick = <T>(p: Promise<T>, fallback: T, onLate?: (e: Error) => void): Promise<T> =>
  within(p, FLEET_READ_TIMEOUT_MS, "the fleet's etcd").catch((e: Error) => (onLate?.(e), fallback));
/** Every node's rows and the lost sessions: a fenced one is also its node's (ended there), shown once, lost, until its owner destroys it. */
function withLost<T extends SessionListed>(rows: ReadonlyArray<T | Session>, lost: Session[]): Array<T | Session> {
  const lostIds = new Set(lost.map((s) => s.id));
  return [...rows.filter((s) => !lostIds.has(s.id)), ...lost];
}
/** Lookups of an ended session (ended()) at once: 4 of the 16 kept-alive connections to each node at most. */
const ENDED_AT_ONCE = 4;

export class Reach {
  readonly client: PeerClient;
  /** This node's TLS material (read again on a reload): the listener serves with it, the client presents it. */
  readonly credentials: PeerCredentials;
  private readonly members: Members;
  private endedInFlight = 0;
  private readonly endedQueue: Array<() => void> = [];
  /** Each node's last list, reused while the node answers that it is unchanged. */
  readonly answers = new LastAnswers();
  /** The lists other nodes write to etcd (listPublisher.ts), as this node last read them. */
  readonly published: PublishedLists;
  /** The fleet's keys as one call reads them (placements, members, lost sessions), each value parsed once. */
  readonly keys: FleetKeys;

  constructor(
    private readonly etcd: Etcd3,
    private readonly watched: WatchedFleet,
    private readonly self: string,
    peer: PeerConfig,
    private readonly log: Logger,
  ) {
    this.credentials = new PeerCredentials(peer, self);
    this.client = new PeerClient(this.credentials);
    this.published = new PublishedLists(log);
    this.keys = new FleetKeys(watched, log);
    this.members = new Members(etcd, log, () => watched.peek(prefix.members)?.[0]);
  }

  /** Whether a verified peer certificate names a member of the fleet (members.ts: as etcd said within a second). */
  async admits(cert: Parameters<typeof peerName>[0]): Promise<string> {
    const name = peerName(cert);
    if (name === undefined) throw new ApiError('forbidden', 'the peer certificate has no common name');
    if (!(await this.members.has(name)) || name === this.self) throw new ApiError('forbidden', `peer '${name.slice(0, 64)}' is not a node of this fleet`);
    return name;
  }

  /** Every other node that holds its lease, with its endpoint (the fleet's event stream asks each). */
  async liveNodes(): Promise<Map<string, string>> {
    const [members, alive] = await this.watched.keys(prefix.members, prefix.alive);
    return new Map([...this.keys.endpoints(members!, alive!)].filter(([n, ep]) => n !== this.self && ep.alive).map(([n, ep]) => [n, ep.endpoint]));
  }

  /** The session on another node that `ref` names, or undefined; a name two nodes hold is a conflict. */
  /** `ended`: an id placed nowhere is also asked of every node (see ended()). */
  async locate(ref: SessionRef, ended = false, reads: FleetReads = this.keys.view()): Promise<Located | undefined> {
    return fleetOp(() => this.locateIn(ref, ended, reads));
  }

  private async locateIn(ref: SessionRef, ended: boolean, reads: FleetReads): Promise<Located | undefined> {
    const found = (await reads.placements).filter(({ node, d }) => node !== this.self && (ref.kind === 'id' ? d.id === ref.id : d.request.name === ref.name && d.owner_uid === ref.owner));
    if (found.length === 0) return ref.kind === 'id' && ended ? this.ended(ref.id, reads) : undefined;
    const { node, d } = found[0]!;
    const ep = (await reads.endpoints).get(node);
    const at = { id: d.id, node, owner_uid: d.owner_uid, endpoint: ep?.endpoint ?? '', alive: ep?.alive ?? false };
    if (found.length > 1) return { ...at, refusal: new ApiError('conflict', `session name '${ref.kind === 'name' ? ref.name : ''}' is held on nodes ${found.map((f) => f.node).join(', ')}: name it by id`) };
    if (!ep) return { ...at, refusal: new ApiError('not_found', `session ${d.id} is placed on node ${node}, which is not a member of the fleet`) };
    return at;
  }

  /**
   * A session placed nowhere but listed by its node: ended there (its
   * placement goes when it ends; its record stays, as on a single daemon).
   * Asked of every node that answers, by id only: a name is free once its
   * session ended, so it names no ended one.
   */
  private async ended(id: string, reads: FleetReads): Promise<Located | undefined> {
    // At most ENDED_AT_ONCE lookups in flight (the rest wait their turn): ids anyone may make up must not take
    // the kept-alive connections every forwarded call and list needs.
    while (this.endedInFlight >= ENDED_AT_ONCE) await new Promise<void>((r) => this.endedQueue.push(r));
    this.endedInFlight++;
    try {
      return await this.endedFrom(id, reads);
    } finally {
      this.endedInFlight--;
      this.endedQueue.shift()?.();
    }
  }

  private async endedFrom(id: string, reads: FleetReads): Promise<Located | undefined> {
    const eps = [...(await reads.endpoints)].filter(([n, ep]) => n !== this.self && ep.alive);
    const asked = eps.map(async ([node, ep]) => {
      const s = await this.getJson(node, ep.endpoint, `/v1/sessions/${id}`, sessionSchema, 2000).catch(() => undefined);
      return s && s.id === id && s.owner_uid !== null ? { id, node, owner_uid: s.owner_uid, endpoint: ep.endpoint, alive: true } : undefined;
    });
    return (await Promise.all(asked)).find((x) => x !== undefined);
  }

  /**
   * Every other node's sessions (all of them: the caller's node filters by its own policy), each with its node:
   * as each node wrote them to etcd (listPublisher.ts), where it did. `all` (ended ones too) asks each node, and
   * so does `ask` (the fleet's event stream: its first list must have every change made before each node's
   * stream began, and a change no caller waited for reaches etcd within cluster.list_interval_ms).
   */
  others(all: boolean, ask = false, asked?: Asked): Promise<Session[]> {
    return this.gather((node, endpoint) => this.getList(node, endpoint, all ? '/v1/sessions?all=1' : '/v1/sessions', listReply, 5000), !all && !ask, asked);
  }

  /** The same with only the list table's columns of each (a text list): a node asked answers with its rows alone. */
  rows(all: boolean, asked?: Asked): Promise<SessionListed[]> {
    const q = all ? '?all=1' : '';
    // A node of an older version has no rows to give (404): its whole list, then.
    return this.gather(async (node, endpoint) => (await this.getList(node, endpoint, `/v1/node/sessions${q}`, sessionRowsSchema, 5000)) ?? this.getList(node, endpoint, `/v1/sessions${q}`, listReply, 5000), !all, asked);
  }

  /** Whether publishedNow() can be made from the copy as it is now (checked before etcd is asked anything). */
  publishedReady(): boolean {
    try {
      const seen = this.watched.peek(prefix.members, prefix.alive, prefix.listing);
      if (!seen) return false;
      const [members, alive, listing] = seen as [Map<string, string>, Map<string, string>, Map<string, string>];
      return this.allWritten(this.keys.endpoints(members, alive), listing) !== undefined;
    } catch {
      return false; // a member record this version cannot read: the usual way says so
    }
  }

  /**
   * Every other node's sessions and the lost ones, as others(false) gives them, from the watched copy as it is
   * now (for WatchedFleet.ahead, which confirms it is current): only when every other node holds its lease and
   * etcd holds its whole list for its registration; else undefined (a node is to be asked, or shown as etcd last
   * knew it: others() does). `runs`: each node's rows as kept (listJson.ts sends one that stands whole as a
   * block); `read`: how many nodes' lists it read from etcd (the caller counts those it uses).
   */
  publishedNow(): { far: Session[]; runs: ReadonlyArray<readonly Session[]>; read: number } | undefined {
    const seen = this.watched.peek(prefix.members, prefix.alive, prefix.lost, prefix.listing, prefix.listed);
    if (!seen) return undefined;
    const [members, alive, lostKeys, listing, listed] = seen as [Map<string, string>, Map<string, string>, Map<string, string>, Map<string, string>, Map<string, string>];
    const eps = this.keys.endpoints(members, alive);
    this.answers.keep(new Set(eps.keys()));
    const others = this.allWritten(eps, listing);
    if (!others) return undefined;
    const written = this.published.of(listed, new Set(others), this.watched.version(prefix.listed));
    const runs = others.map((n) => written.get(n));
    if (!runs.every((r) => r !== undefined)) return undefined; // a row that does not check: its node is asked
    return { far: withLost(runs.flat(), this.keys.lost(lostKeys).map((l) => l.view)), runs, read: written.size };
  }

  /**
   * Every other live node's sessions, each with its node: from etcd when
   * `published` may be used and the node's whole list is there for its
   * registration now, else what `ask` gets of it; a node that does not
   * answer, as etcd last knew it; and the lost sessions.
   */
  private async gather<T extends SessionListed>(ask: (node: string, endpoint: string) => Promise<{ sessions: T[] } | undefined>, published: boolean, asked?: Asked): Promise<Array<T | Session>> {
    // Each node to be asked, as the copy is now, is asked at once: its list is made while etcd answers
    // the read below (members and endpoints rarely change). That read (as fresh as etcd) then says whose
    // answers count, and whose lists are read from etcd; a node it adds is asked then. Every answer is
    // asked after the caller's call arrived, so a write acknowledged before the call is in it; a node
    // writes its list to etcd before it acknowledges a write (listPublisher.ts), so the same holds there.
    const early = new Map<string, { endpoint: string; answer: Promise<{ ok: { sessions: T[] } | undefined } | { err: Error }> }>();
    const seen = this.watched.peek(prefix.members, prefix.alive, prefix.listing);
    let guessed: Endpoints = new Map();
    try {
      if (seen) guessed = this.keys.endpoints(seen[0]!, seen[1]!);
    } catch {
      // A member record this version cannot read: no early asks (the read below says so, as before).
    }
    for (const [node, ep] of guessed) {
      if (node === this.self || !ep.alive || (published && this.written(seen![2]!, node, ep))) continue;
      early.set(node, { endpoint: ep.endpoint, answer: ask(node, ep.endpoint).then((ok) => ({ ok }), (err: Error) => ({ err })) });
    }
    // One read of the fleet (the watched copy), bounded as the pending list is: without etcd a node lists its own sessions, at once.
    const none = { copy: false, maps: [new Map<string, string>(), new Map<string, string>(), new Map<string, string>(), new Map<string, string>(), new Map<string, string>()] };
    const read = await quick(this.watched.readWith(asked, prefix.members, prefix.alive, prefix.lost, prefix.listing, prefix.listed), none, (e) => this.log.warn({ err: e.message }, 'fleet list: this node alone'));
    const [members, alive, lostKeys, listing, listed] = read.maps;
    const eps = this.keys.endpoints(members!, alive!);
    // (A node asked early that is no member now may still leave a copy; the next list drops it.)
    this.answers.keep(new Set(eps.keys()));
    // From the copy alone (one revision: read from etcd, a listing may be newer than the rows read beside it).
    // Its maps change as the watch hears etcd: every read of them is made before the next wait.
    const fromEtcd = new Set(published && read.copy ? [...eps].filter(([n, ep]) => n !== this.self && this.written(listing!, n, ep)).map(([n]) => n) : []);
    const written = fromEtcd.size > 0 ? this.published.of(listed!, fromEtcd, this.watched.version(prefix.listed)) : new Map<string, readonly Session[]>();
    this.published.counts.lists += written.size;
    const lost = this.keys.lost(lostKeys!).map((l) => l.view);
    // Read only when a node does not answer.
    let placed: Promise<Array<{ node: string; d: Desired }>> | undefined;
    const lists = [...eps].filter(([n]) => n !== this.self).map(async ([node, ep]): Promise<Array<T | Session>> => {
      const rows = written.get(node);
      if (rows) return rows as Session[];
      if (ep.alive) {
        try {
          const e = early.get(node);
          const asked = e?.endpoint === ep.endpoint ? await e.answer : { ok: await ask(node, ep.endpoint) };
          if ('err' in asked) throw asked.err;
          const r = asked.ok;
          if (r === undefined) throw new Error(`node ${node} answered no list`);
          // Its rows name it already (kept as they are: the same frozen rows list after list, src/daemon/listJson.ts).
          return r.sessions.map((s) => ('node' in s && s.node === node ? s : { ...s, node }));
        } catch (e) {
          this.log.debug({ node, err: (e as Error).message }, 'fleet list: node did not answer');
        }
      }
      placed ??= quick(this.watched.keys(prefix.desired).then(([d]) => this.keys.placements(d!)), []);
      return quick(this.asKnown(node, (await placed).filter((p) => p.node === node).map((p) => p.d)), []);
    });
    return withLost((await Promise.all(lists)).flat(), lost);
  }

  /** Whether node `n` holds its lease and etcd holds its whole list for its registration: its list is read there, not asked. */
  private written(listing: ReadonlyMap<string, string>, n: string, ep: { alive: boolean; registered_at: string }): boolean {
    return ep.alive && this.published.current(listing, n, ep.registered_at);
  }

  /** The other nodes of `eps`, when every one's list is written (written()); else undefined. */
  private allWritten(eps: Endpoints, listing: ReadonlyMap<string, string>): string[] | undefined {
    const others = [...eps].filter(([n]) => n !== this.self);
    return others.every(([n, ep]) => this.written(listing, n, ep)) ? others.map(([n]) => n) : undefined;
  }

  /**
   * Every other node's audit events for `path` (/v1/events with the query
   * the caller's node built), each tagged with its node, and the nodes that
   * did not answer (unreachable, or not within 5 s).
   */
  async eventsOf(path: string): Promise<{ events: AuditEvent[]; unanswered: string[] }> {
    const none = [new Map<string, string>(), new Map<string, string>()];
    const [members, alive] = await quick(this.watched.keys(prefix.members, prefix.alive), none, (e) => this.log.warn({ err: e.message }, 'fleet events: this node alone'));
    const eps = this.keys.endpoints(members!, alive!);
    const unanswered: string[] = [];
    const parts = [...eps]
      .filter(([n]) => n !== this.self)
      .map(async ([node, ep]) => {
        const r = ep.alive ? await this.getJson(node, ep.endpoint, path, eventListSchema, 5000).catch((e: Error) => void this.log.debug({ node, err: e.message }, 'fleet events: node did not answer')) : undefined;
        if (!r) return void unanswered.push(node);
        return r.events.map((e) => ({ ...e, node }));
      });
    const events = (await Promise.all(parts)).flatMap((x) => x ?? []);
    return { events, unanswered: unanswered.sort() };
  }

  /** A node that does not answer: its sessions as it last reported them, unreachable. */
  private async asKnown(node: string, placed: Desired[]): Promise<Session[]> {
    const down = await this.etcd.get(key.down(node)).string().catch(() => null);
    let since: string | undefined;
    try {
      since = down === null ? undefined : parseValue(downSchema, key.down(node), down).since;
    } catch {
      since = undefined;
    }
    const known = await Promise.all(
      placed.map(async (d) => {
        const v = await this.etcd.get(key.status(d.id)).string().catch(() => null);
        let st: Status | undefined;
        try {
          st = v === null ? undefined : parseValue(statusSchema, key.status(d.id), v);
        } catch {
          st = undefined;
        }
        const s = reportedOrPlaced(st?.session, d, since ?? d.placed_at);
        return s ? [unreachableView({ ...s, owner_uid: d.owner_uid }, node, since)] : [];
      }),
    );
    return known.flat();
  }

  /**
   * A session `ref` names that no node answers for: one on an unreachable
   * node (as last reported), or one declared lost. Undefined when it is on a
   * node that answers (the call is forwarded there) or unknown to the fleet.
   * `fencedOn`: a lost one whose node came back, removed it and answers
   * again: that node still holds its record (ended), for a destroy to release.
   */
  async known(ref: SessionRef, reads: FleetReads = this.keys.view()): Promise<{ view: Session; lost: boolean; fencedOn?: Located } | undefined> {
    return fleetOp(async () => {
      const matches = (id: string, name: string | null | undefined, owner: number) => (ref.kind === 'id' ? id === ref.id : name === ref.name && owner === ref.owner);
      const placed = (await reads.placements).filter(({ node, d }) => node !== this.self && matches(d.id, d.request.name, d.owner_uid));
      if (placed.length > 0) {
        if (placed.length > 1) return undefined; // locate() says which nodes hold the name
        const { node, d } = placed[0]!;
        if ((await reads.endpoints).get(node)?.alive !== false) return undefined;
        const [view] = await this.asKnown(node, [d]);
        return view ? { view, lost: false } : undefined;
      }
      // A name two lost sessions had (a lost one holds none): the newest, as the name's latest meaning.
      const lost = (await reads.lost).filter(({ rec }) => matches(rec.id, rec.name, rec.owner_uid)).sort((a, b) => (a.rec.since < b.rec.since ? 1 : -1));
      if (!lost[0]) return undefined;
      const { rec, view } = lost[0];
      const ep = rec.fenced_at !== undefined && rec.node !== this.self ? (await reads.endpoints).get(rec.node) : undefined;
      const fencedOn = ep?.alive ? { id: rec.id, node: rec.node, owner_uid: rec.owner_uid, endpoint: ep.endpoint, alive: true } : undefined;
      return { view, lost: true, ...(fencedOn ? { fencedOn } : {}) };
    });
  }

  /**
   * Remove a lost session's record (its owner destroyed it). Its status goes
   * only once its node has fenced it: while it says lost, the node, should
   * it come back, still has to find it there and remove the session.
   */
  async forget(id: string): Promise<void> {
    await fleetOp(async () => {
      const st = await getWithRev(this.etcd, key.status(id));
      let fenced = false;
      try {
        fenced = st.value !== null && parseValue(statusSchema, key.status(id), st.value).state === 'fenced';
      } catch {
        fenced = false;
      }
      const drop = this.etcd.delete().key(key.lost(id));
      if (fenced) await this.etcd.if(key.status(id), 'Mod', '==', st.rev).then(drop, this.etcd.delete().key(key.status(id))).commit();
      else await drop.exec();
    });
  }

  /**
   * GET `path` from a node as root (the caller's node filters by its own
   * policy), parsed: undefined on a 404.
   */
  private async getJson<S extends z.ZodType>(node: string, endpoint: string, path: string, schema: S, ms: number): Promise<z.output<S> | undefined> {
    const res = await peerGet(this.client, node, endpoint, path, {}, ms);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new Error(`node ${node} answered ${res.status}`);
    return parsed(node, path, () => schema.parse(JSON.parse(res.body)));
  }

  /**
   * A node's list at `path`, asked with the tag of the last one kept
   * (LastAnswers): unchanged (304), the rows that changed since (226,
   * src/daemon/madeLists.ts), or the whole list; undefined on a 404.
   */
  private async getList<S extends ListSchema>(node: string, endpoint: string, path: string, schema: S, ms: number, whole = false): Promise<z.output<S> | undefined> {
    const kept = whole ? undefined : this.answers.kept(node, path, schema);
    const res = await peerGet(this.client, node, endpoint, path, kept ? { 'if-none-match': kept.etag, 'a-im': ROWS_IM } : {}, ms);
    if (res.status === 404) return undefined;
    if (res.status === 304 && kept) return this.answers.unchanged(kept);
    if (res.status === 226 && kept) {
      // Rows changed since a list this node does not hold: its copy goes, and the whole list is asked for once.
      if (res.headers.im !== ROWS_IM || res.headers['delta-base'] !== kept.etag) {
        this.answers.drop(node, path, kept.etag);
        return this.getList(node, endpoint, path, schema, ms, true);
      }
      return parsed(node, path, () => this.answers.patched(node, path, schema, kept, res.headers.etag, rowsDelta.parse(JSON.parse(res.body))));
    }
    if (res.status !== 200) throw new Error(`node ${node} answered ${res.status}`);
    const value = parsed(node, path, () => schema.parse(JSON.parse(res.body)));
    this.answers.sent(node, path, schema, res.headers.etag, value);
    return value;
  }

  close(): void {
    this.client.close();
  }
}
