// The fleet's event stream: GET /v1/events/stream on any node gives every
// node's events, each with its node. The node the caller reached holds the
// caller's stream; it reads this node's own feed and one stream of each
// other live node (asked as root over the mutual-TLS channel, as its lists
// are), and applies the caller's policy here, as the feed does: sessions the
// caller may see, audit events of its scope.
//
// Order: each node's events in that node's order; none across nodes.
// Resume: an audit event's id is the reader's place in every node's trail
// (`node-a:120,node-b:44`); sent back as Last-Event-ID, each node replays
// what came after its part (up to the feed's replay limit).
// First event: `sessions`, every node's as the list gives them, read once
// every node's stream has started (so no change between is lost; one made
// meanwhile may come twice). A node whose stream ends is asked again, with
// its place, while it holds its lease; one that joins is asked within
// NODES_MS; the sessions of a node asked again come as `session` events.
import type { ClientRequest } from 'node:http';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AuditEvent } from '../api/eventSchemas.js';
import { streamEventSchemas } from '../api/eventSchemas.js';
import type { Session } from '../api/schemas.js';
import type { Caller } from '../access/guard.js';
import { auditPasses, auditShown, type EventFeed, type FeedOut } from './feed.js';
import type { SseOut } from './sse.js';
import type { Reach } from '../fleet/reach.js';
import { SseReader } from '../fleet/sseReader.js';

/** How often the stream looks for nodes that joined (or came back). */
const NODES_MS = 10_000;
/** The longest wait for a node's stream to start, and between asking a node again. */
const START_MS = 5000;
const RETRY_MAX_MS = 5000;
/** Events held while the first one is made: past this, the reader is closed (it reconnects). */
const MAX_HELD = 10_000;

const NODE = '[a-z0-9][a-z0-9-]{0,62}';
const CURSOR = new RegExp(`^${NODE}:\\d{1,15}(,${NODE}:\\d{1,15}){0,63}$`);

/** Each node's last audit event id the reader was given. */
export type Cursor = Map<string, number>;

/** A Last-Event-ID: `node:id,...` (a fleet stream's), or one number (a single node's: this node's place). */
export function parseCursor(text: string, self: string): Cursor | undefined {
  if (/^\d{1,15}$/.test(text)) return new Map([[self, Number(text)]]);
  if (text.length > 8192 || !CURSOR.test(text)) return undefined;
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
  /** Its stream started at least once: a later start's sessions come as `session` events. */
  started: boolean;
}

const parsers = {
  sessions: streamEventSchemas.sessions,
  session: streamEventSchemas.session,
  audit: streamEventSchemas.audit,
} as const;

export class FleetStream {
  private held: Array<() => void> | undefined = [];
  private readonly peers = new Map<string, Peer>();
  private readonly closers: Array<() => void> = [];
  private nodesTimer: NodeJS.Timeout | undefined;
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
    this.d.feed.attach(this.sub, this.ownPart(), this.cursor.get(this.d.self));
    // Every node's stream started (or given up on) before the list is read: nothing between is lost.
    const started = await this.findNodes().catch((e: Error) => (this.d.log.warn({ err: e.message }, 'fleet event stream: no other node'), []));
    await Promise.race([Promise.allSettled(started), new Promise((r) => setTimeout(r, START_MS).unref())]);
    this.nodesTimer = setInterval(() => void this.findNodes().catch(() => undefined), NODES_MS).unref();
    const sessions = await this.d.sessions();
    if (this.closed) return;
    this.out.send('sessions', { sessions }, cursorText(this.cursor));
    const held = this.held ?? [];
    this.held = undefined;
    for (const f of held) f();
  }

  /** After the first event, at once; before it, held (in order). */
  private emit(f: () => void): void {
    if (this.closed) return;
    if (this.held === undefined) return f();
    if (this.held.length >= MAX_HELD) return this.out.end();
    this.held.push(f);
  }

  private audit(node: string, e: AuditEvent): void {
    this.cursor.set(node, e.id);
    if (auditPasses(e, this.sub.of, this.sub.reads)) this.out.send('audit', auditShown({ ...e, node }, this.sub.of), cursorText(this.cursor));
  }

  /**
   * A node's stream started at `id` of its trail (its first event's id): the
   * reader's place there unless it came with one. Set at once, before the
   * events held: those come after that place, so a reader gone before they
   * were sent is replayed them.
   */
  private startsAt(node: string, id: number | undefined): void {
    if (id !== undefined && !this.cursor.has(node)) this.cursor.set(node, id);
  }

  /** This node's feed, already filtered for the caller: its events with the node (its first `sessions` is the list's). */
  private ownPart(): FeedOut {
    const self = this.d.self;
    return {
      send: (event, data, id) => {
        if (event === 'sessions') this.startsAt(self, id);
        else if (event === 'session') this.emit(() => this.out.send('session', { ...(data as Session), node: self }));
        else if (event === 'audit' && id !== undefined) this.emit(() => this.audit(self, { ...(data as AuditEvent), id }));
      },
      keepAlive: () => this.out.keepAlive(),
      get gone() {
        return false;
      },
      onClose: (f) => this.closers.push(f),
      end: () => this.out.end(),
    };
  }

  /** Asks every live node not asked yet; the promises of those asked now, settled once each stream started or failed. */
  private async findNodes(): Promise<Array<Promise<void>>> {
    const live = await this.d.reach.liveNodes();
    if (this.closed) return [];
    return [...live].filter(([n]) => !this.peers.has(n)).map(([n, endpoint]) => this.ask(n, endpoint, { failures: 0, started: false }));
  }

  private ask(node: string, endpoint: string, peer: Peer): Promise<void> {
    this.peers.set(node, peer);
    return new Promise((settle) => {
      const place = this.cursor.get(node);
      const path = `/v1/events/stream${this.sub.reads ? '?reads=1' : ''}`;
      const req = this.d.reach.client.request(node, endpoint, { method: 'GET', path, headers: place === undefined ? {} : { 'last-event-id': String(place) } }, { uid: 0, gids: [] }, true);
      peer.req = req;
      const slow = setTimeout(() => req.destroy(new Error(`no stream within ${START_MS} ms`)), START_MS);
      const ended = (why: string) => {
        clearTimeout(slow);
        settle();
        if (peer.req !== req) return;
        peer.req = undefined;
        this.again(node, peer, why);
      };
      req.on('error', (e) => ended(e.message));
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return req.destroy(new Error(`answered ${res.statusCode}`));
        }
        res.setEncoding('utf8');
        const reader = new SseReader((name, data, id) => {
          this.fromNode(node, peer, name, data);
          if (name === 'sessions') {
            this.startsAt(node, id !== undefined && /^\d{1,15}$/.test(id) ? Number(id) : undefined);
            clearTimeout(slow);
            settle();
          }
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

  /** One event of `node`'s stream, checked, and passed on as the caller may see it. */
  private fromNode(node: string, peer: Peer, name: string, data: string): void {
    if (!(name in parsers)) return; // a newer node's kind
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      throw new Error(`node ${node} sent a ${name} event that is not JSON`);
    }
    const kind = name as keyof typeof parsers;
    const r = parsers[kind].safeParse(json);
    if (!r.success) throw new Error(`node ${node} sent a ${name} event of the wrong shape: ${z.prettifyError(r.error).slice(0, 200)}`);
    peer.failures = 0;
    if (kind === 'audit') return this.emit(() => this.audit(node, r.data as AuditEvent));
    const sessions = kind === 'session' ? [r.data as Session] : peer.started ? (r.data as { sessions: Session[] }).sessions : [];
    peer.started = true;
    for (const s of sessions) if (this.d.visible(s)) this.emit(() => this.out.send('session', { ...s, node }));
  }

  /** `node`'s stream ended: asked again, with its place, after a pause, while it holds its lease. */
  private again(node: string, peer: Peer, why: string): void {
    if (this.closed) return;
    this.d.log.debug({ node, why }, 'fleet event stream: a node stream ended');
    const ms = Math.min(RETRY_MAX_MS, 250 * 2 ** Math.min(peer.failures++, 5));
    peer.retry = setTimeout(() => {
      peer.retry = undefined;
      void this.d.reach
        .liveNodes()
        .then((live) => {
          const endpoint = live.get(node);
          if (this.closed) return;
          // Gone from the fleet (or its lease lapsed): forgotten; asked again once it is back (findNodes).
          if (endpoint === undefined) return void this.peers.delete(node);
          void this.ask(node, endpoint, peer);
        })
        .catch(() => this.again(node, peer, "the fleet's etcd did not answer"));
    }, ms);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.held = undefined;
    clearInterval(this.nodesTimer);
    for (const p of this.peers.values()) {
      clearTimeout(p.retry);
      p.req?.destroy();
    }
    this.peers.clear();
    for (const f of this.closers) f();
  }
}
