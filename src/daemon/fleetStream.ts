// The fleet's event stream: GET /v1/events/stream on any node gives every
// node's events, each with its node. The node the caller reached holds the
// caller's stream; it reads this node's own feed and one stream of each
// other live node, asked over the mutual-TLS channel as the caller (so each
// node applies the caller's scope to what it sends and replays, and counts
// the stream against the caller's share there), and applies the caller's
// policy here again, as the feed does.
//
// Order: each node's events in that node's order; none across nodes.
// Resume: an audit event's id is the reader's place in every node's trail
// (`node-a:120,node-b:44`); sent back as Last-Event-ID, each node replays
// what came after its part (up to the feed's replay limit).
// First event: `sessions`, every node's as the list gives them, read once
// every node's stream has started (so no change between is lost; one made
// meanwhile may come twice). Once it is sent, a node whose stream starts
// (again, or for the first time: it joined, or came back) may hold sessions
// the reader does not know of, or no longer hold some it does, and one that
// left (its lease lapsed) has its sessions unreachable: either way the
// reader's stream ends, and it reconnects with its place and gets the list
// afresh.
import type { ClientRequest } from 'node:http';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AuditEvent } from '../api/eventSchemas.js';
import { STREAM_PLACE, streamEventSchemas } from '../api/eventSchemas.js';
import type { Session } from '../api/schemas.js';
import type { Caller } from '../access/guard.js';
import { auditPasses, auditShown, type EventFeed, type FeedOut } from './feed.js';
import type { SseOut } from './sse.js';
import type { Reach } from '../fleet/reach.js';
import { SseReader } from '../client/sseReader.js';

/** How often the stream looks for nodes that joined, came back, or left. */
const NODES_MS = 10_000;
/** The longest the first event waits for a node's stream to start. */
const START_MS = 5000;
/** The longest pause before a node's stream is asked again. */
const RETRY_MAX_MS = 5000;
const OLDER_RETRY_MS = 60_000;
/** A node's stream silent this long is dead (a node's feed sends a comment every 30 s). */
const SILENT_MS = 75_000;
/** Events held while the first one is made, in number and in bytes: past either, the reader is closed (it reconnects). */
const MAX_HELD = 10_000;
const MAX_HELD_BYTES = 16 * 1024 * 1024;
/** Nodes whose places a reader's place keeps before it drops those of nodes not asked now. */
const MAX_PLACES = 200;
/** An event of this node's own feed, as held bytes (its size is not known here). */
const OWN_EVENT_BYTES = 1024;


/** Each node's last audit event id the reader was given. */
export type Cursor = Map<string, number>;

/** A Last-Event-ID: `node:id,...` (a fleet stream's), or one number (a single node's: this node's place). */
export function parseCursor(text: string, self: string): Cursor | undefined {
  if (/^\d{1,15}$/.test(text)) return new Map([[self, Number(text)]]);
  if (text.length > 20_000 || !STREAM_PLACE.test(text)) return undefined;
  return new Map(
    text.split(',').map((p) => {
      const i = p.lastIndexOf(':');
      return [p.slice(0, i), Number(p.slice(i + 1))] as const;
    }),
  );
}

export const cursorText = (c: Cursor): string =>
  [...c]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([n, id]) => `${n}:${id}`)
    .join(',');

export interface FleetStreamDeps {
  self: string;
  reach: Reach;
  feed: EventFeed;
  /** Whether the caller may see a session (its owner, the policy's session.list). */
  visible: (s: Session) => boolean;
  /** The first event's sessions: what the list gives the caller. */
  sessions: () => Promise<Session[]>;
  log: Logger;
}

interface Peer {
  req?: ClientRequest;
  retry?: NodeJS.Timeout;
  failures: number;
  /** The newest audit id received from it (held ones included): where it is asked again from. */
  received?: number;
}

const parsers = {
  sessions: streamEventSchemas.sessions,
  session: streamEventSchemas.session,
  audit: streamEventSchemas.audit,
} as const;

export class FleetStream {
  /** Before the list is read (a node's stream that starts now is in it), while it is read, then live. */
  private phase: 'starting' | 'listing' | 'live' = 'starting';
  private held: Array<() => void> = [];
  private heldBytes = 0;
  private readonly peers = new Map<string, Peer>();
  private readonly closers: Array<() => void> = [];
  private nodesTimer: NodeJS.Timeout | undefined;
  private scanning = false;
  private closed = false;

  constructor(
    private readonly d: FleetStreamDeps,
    private readonly sub: { caller: Caller; of: number | undefined; reads: boolean },
    private readonly out: SseOut,
    private readonly cursor: Cursor,
  ) {}

  /** The stream, until the reader goes (check the caller's share of streams with the feed first). */
  async start(): Promise<void> {
    this.out.onClose(() => this.close());
    if (this.out.gone) return this.close();
    this.d.feed.attach(this.sub, this.ownPart(), this.cursor.get(this.d.self));
    this.nodesTimer = setInterval(() => void this.scan(), NODES_MS).unref();
    // Every node's stream started (or given up on) before the list is read: nothing between is lost.
    const started = await this.scan();
    await Promise.race([Promise.allSettled(started), new Promise((r) => setTimeout(r, START_MS).unref())]);
    if (this.closed) return;
    this.phase = 'listing';
    const sessions = await this.d.sessions();
    if (this.closed) return;
    // Places of nodes long gone (renamed ones, in a fleet that comes and goes) are kept until they crowd
    // the place (256 at most): then those of the nodes not asked now go.
    if (this.cursor.size > MAX_PLACES) for (const n of this.cursor.keys()) if (n !== this.d.self && !this.peers.has(n)) this.cursor.delete(n);
    this.out.send('sessions', { sessions }, cursorText(this.cursor));
    this.phase = 'live';
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const f of held) f();
    // What was held (bounded above) goes with the list: the backlog bound counts from here.
    this.out.startsHere();
  }

  /** Live: at once; before, held (in order), within bounds. */
  private emit(f: () => void, bytes: number): void {
    if (this.closed) return;
    if (this.phase === 'live') return f();
    this.heldBytes += bytes;
    if (this.held.length >= MAX_HELD || this.heldBytes > MAX_HELD_BYTES) return this.out.end();
    this.held.push(f);
  }

  private audit(node: string, e: AuditEvent): void {
    this.cursor.set(node, e.id);
    if (auditPasses(e, this.sub.of, this.sub.reads)) this.out.send('audit', auditShown({ ...e, node }, this.sub.of), cursorText(this.cursor));
  }

  /**
   * A node's stream started at `id` of its trail (its first event's id: the
   * reader's place there, or the trail's end if that is nearer). The reader's
   * place unless it came with one, or with one further on than the trail
   * goes (a node made anew under its name, a forged place). Set at once,
   * before the events held: those come after that place, so a reader gone
   * before they were sent is replayed them.
   */
  private startsAt(node: string, id: number | undefined): void {
    if (id === undefined) return;
    const was = this.cursor.get(node);
    if (was === undefined || was > id) this.cursor.set(node, id);
  }

  /** This node's feed, already filtered for the caller: its events with the node (its first `sessions` is the list's). */
  private ownPart(): FeedOut {
    const self = this.d.self;
    return {
      send: (event, data, id) => {
        if (event === 'sessions') this.startsAt(self, id);
        else if (event === 'session') this.emit(() => this.out.send('session', { ...(data as Session), node: self }), OWN_EVENT_BYTES);
        else if (event === 'audit' && id !== undefined) this.emit(() => this.audit(self, { ...(data as AuditEvent), id }), OWN_EVENT_BYTES);
      },
      keepAlive: () => this.out.keepAlive(),
      get gone() {
        return false;
      },
      onClose: (f) => this.closers.push(f),
      end: () => this.out.end(),
    };
  }

  /**
   * Asks every live node not asked yet, and lets go of those no longer live;
   * the promises of those asked now, each settled once its stream started or
   * failed. One scan at a time; never throws (etcd may not answer).
   */
  private async scan(): Promise<Array<Promise<void>>> {
    if (this.scanning || this.closed) return [];
    this.scanning = true;
    try {
      const live = await this.d.reach.liveNodes();
      if (this.closed) return [];
      for (const [n, p] of this.peers) if (!live.has(n)) this.left(n, p);
      return [...live].filter(([n]) => !this.peers.has(n)).map(([n, endpoint]) => this.ask(n, endpoint, { failures: 0 }));
    } catch (e) {
      this.d.log.debug({ err: (e as Error).message }, 'fleet event stream: the other nodes not known this time');
      return [];
    } finally {
      this.scanning = false;
    }
  }

  /**
   * `node` no longer holds its lease: let go, and once the reader has its
   * list, its stream ends (it reconnects and gets the list afresh, that
   * node's sessions unreachable as etcd last knew them).
   */
  private left(node: string, p: Peer): void {
    this.forget(node, p);
    if (this.phase !== 'starting') this.out.end();
  }

  private forget(node: string, p: Peer): void {
    clearTimeout(p.retry);
    const req = p.req;
    p.req = undefined;
    req?.destroy();
    this.peers.delete(node);
  }

  /** `node`'s stream, as the caller, from its place; settles once it started or failed (never rejects). */
  private ask(node: string, endpoint: string, peer: Peer): Promise<void> {
    this.peers.set(node, peer);
    return new Promise((settle) => {
      const place = peer.received ?? this.cursor.get(node);
      // The caller's scope goes along (a node asked for another node's caller does not check it again).
      const q = new URLSearchParams();
      if (this.sub.reads) q.set('reads', '1');
      if (this.sub.of !== undefined) q.set('uid', String(this.sub.of));
      const path = `/v1/events/stream${q.size ? `?${q.toString()}` : ''}`;
      const who = { uid: this.sub.caller.uid, gids: this.sub.caller.gids };
      let req: ClientRequest;
      try {
        req = this.d.reach.client.request(node, endpoint, { method: 'GET', path, headers: place === undefined ? {} : { 'last-event-id': String(place) } }, who, true);
      } catch (e) {
        // No node-to-node endpoint (a node without [cluster.peer]): asked again at the next scan.
        this.d.log.debug({ node, err: (e as Error).message }, 'fleet event stream: a node cannot be asked');
        this.peers.delete(node);
        return settle();
      }
      peer.req = req;
      // The start waits START_MS at most for it (start()); the stream itself is given up only when silent.
      req.setTimeout(SILENT_MS, () => req.destroy(new Error(`silent for ${SILENT_MS} ms`)));
      let done = false;
      const ended = (why: string, older = false) => {
        settle();
        if (done) return;
        done = true;
        if (peer.req !== req) return;
        peer.req = undefined;
        this.again(node, peer, why, older);
      };
      req.on('error', (e) => ended(e.message));
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          // A node of a version whose stream is its own (403), or that takes no uid= (400); or one that holds
          // all the streams it takes for other nodes (429): asked again a minute later, not at once.
          const older = res.statusCode === 403 || res.statusCode === 404 || res.statusCode === 400;
          if (older) this.d.log.warn({ node, status: res.statusCode }, 'fleet event stream: a node does not serve its stream to other nodes; its events are left out');
          ended(`answered ${res.statusCode}`, older || res.statusCode === 429);
          return void req.destroy();
        }
        res.setEncoding('utf8');
        const reader = new SseReader((name, data, id) => {
          this.fromNode(node, peer, name, data, id !== undefined && /^\d{1,15}$/.test(id) ? Number(id) : undefined);
          if (name === 'sessions') settle();
        });
        res.on('data', (text: string) => {
          try {
            reader.push(text);
          } catch (e) {
            req.destroy(e as Error);
          }
        });
        res.on('end', () => ended('its stream ended'));
        res.on('error', (e) => ended(e.message));
      });
      req.end();
    });
  }

  /**
   * One event of `node`'s stream (`id`: its SSE id), checked, and passed on
   * as the caller may see it. Its first (`sessions`) is its place in its
   * trail; one that does not parse is left out, with a warning (a newer
   * node's), and the stream goes on past it; a first that does not parse
   * ends the stream (thrown).
   */
  private fromNode(node: string, peer: Peer, name: string, data: string, id: number | undefined): void {
    if (!(name in parsers)) return; // a newer node's kind
    const kind = name as keyof typeof parsers;
    let r;
    try {
      r = parsers[kind].safeParse(JSON.parse(data));
    } catch {
      r = undefined;
    }
    if (!r?.success) {
      if (kind === 'sessions') throw new Error(`node ${node} sent a first event that does not parse`);
      this.d.log.warn({ node, event: name, err: r ? z.prettifyError(r.error).slice(0, 200) : 'not JSON' }, 'fleet event stream: an event of another node left out');
      if (kind === 'audit' && id !== undefined) peer.received = Math.max(peer.received ?? 0, id);
      return;
    }
    peer.failures = 0;
    if (kind === 'sessions') {
      this.startsAt(node, id);
      if (id !== undefined) peer.received = id;
      // Started once the list was being read: the reader's list may not have this node's as they are now.
      if (this.phase !== 'starting') this.out.end();
      return;
    }
    if (kind === 'audit') {
      const e = r.data as AuditEvent;
      // Replayed again by a stream that started over before the held ones were sent: once is enough.
      if (peer.received !== undefined && e.id <= peer.received) return;
      peer.received = e.id;
      return this.emit(() => this.audit(node, e), data.length);
    }
    const s = r.data as Session;
    if (this.d.visible(s)) this.emit(() => this.out.send('session', { ...s, node }), data.length);
  }

  /**
   * `node`'s stream ended: asked again, from where it was, after a pause, while
   * it holds its lease; a node that does not serve its stream to other nodes
   * (`older`: a version before it), or refused it (429), after OLDER_RETRY_MS.
   */
  private again(node: string, peer: Peer, why: string, older = false): void {
    if (this.closed) return;
    this.d.log.debug({ node, why }, 'fleet event stream: a node stream ended');
    const ms = older ? OLDER_RETRY_MS : Math.min(RETRY_MAX_MS, 250 * 2 ** Math.min(peer.failures++, 5));
    peer.retry = setTimeout(() => {
      peer.retry = undefined;
      this.d.reach.liveNodes().then(
        (live) => {
          const endpoint = live.get(node);
          if (this.closed || this.peers.get(node) !== peer) return;
          // Gone from the fleet (or its lease lapsed): let go; asked again once it is back (scan).
          if (endpoint === undefined) return this.left(node, peer);
          void this.ask(node, endpoint, peer);
        },
        () => this.again(node, peer, "the fleet's etcd did not answer"),
      );
    }, ms);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.held = [];
    clearInterval(this.nodesTimer);
    for (const [n, p] of [...this.peers]) this.forget(n, p);
    for (const f of this.closers) f();
  }
}
