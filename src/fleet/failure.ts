// Failure: what the fleet does about a node it cannot hear, and what that
// node does when it is back.
//
// Every registered node judges the others once a second. A member without
// its alive key (its lease lapsed: the daemon died, stopped, or lost etcd)
// is unreachable: the first node to see it writes /enclave/down/NODE with
// the time. Its sessions may well still run; nothing is done to them. Once
// it has been down for cluster.grace_s, a node declares its sessions lost:
// in transactions that hold only while the node is still not alive, each
// placement under /enclave/desired/NODE/ goes and /enclave/status/ID says
// lost. A session a drain was copying to it is not lost (its files are on
// the node it was leaving): only what etcd holds of its copy there goes
// (placement, report), the move left for that node to undo. A node that
// comes back within the grace carries on.
//
// A node that comes back (a new lease: after a restart, or after etcd was
// out of reach past the TTL) fences before it creates anything: it puts its
// alive key first, so no one declares more of its sessions lost, then stops
// and removes every session it holds that the fleet declared lost and no
// longer assigns to it, marks each fenced, ends its copies of moves here the
// fleet released while it was away, ends its old copy of each that a
// drain moved to another node (committed while it was away: the others
// remove such a move's record past the grace), and clears its down key.
// Only then does its worker make what is placed on it (open()). Every 30 s
// after, it ends again any old copy of a stopped session placed elsewhere
// whose end failed.
//
// "Down since" is the clock of the node that saw it first: nodes' clocks are
// assumed within a small part of the grace of each other.
import type { Etcd3, IOperation } from 'etcd3';
import type { Logger } from 'pino';
import { getPrefix, getWithRev, type ClusterConfig } from './etcd.js';
import { desiredSchema, downSchema, idOfKey, key, lostSchema, parseValue, prefix, statusSchema, type Desired, type Lost, type Status } from './keys.js';
import { placedNodes, placementsAndMoves, readFleet } from './placement.js';
import { reportedOrPlaced } from './views.js';
import type { Registry } from './registry.js';
import { every, type Every } from './every.js';
import { AwayMoves, moveOf, uncommittedTo } from './awayMoves.js';
import type { SessionState } from '../api/schemas.js';

/** What fencing needs of this node's own sessions. */
export interface FenceTarget {
  /** Ids of the sessions this node holds that have not ended (running, stopped, any state between). */
  held(): string[];
  /** A session's state here (undefined: none by this id). */
  stateOf(id: string): SessionState | undefined;
  /** Stop and remove a session here; `why` is kept as the reason it ended. */
  remove(id: string, why: string): Promise<void>;
  /** End this node's old copy of a session that moved to node `to` (src/fleet/move.ts), a move on its trail. */
  forget(id: string, to: string): Promise<void>;
  /**
   * End this node's copy of a move here that never committed, with what the
   * move's kit made for it here (as an undo ends it: worker.ts discard),
   * marked as the copy of `livesOn` (a later move here makes it again).
   */
  discard(id: string, livesOn: string): Promise<void>;
}

/** Where sessions are placed, and the moves recorded (Failure.placements). */
interface Placements {
  /** Session id to the nodes it is placed on. */
  where: Map<string, string[]>;
  /** Sessions of a move from or to this node. */
  mine: Set<string>;
  /** Sessions of another node's move, to the node it moves from. */
  elsewhere: Map<string, string>;
}

/** Sessions per transaction: 3 operations each (placement, status, lost record), under etcd's default of 128. */
const CHUNK = 32;

export class Failure {
  /** The registration (Registry.generation) this node fenced for. */
  private fencedFor = -1;
  /** The failure checks, and the old copies' sweep. */
  private readonly loops: Every[] = [];
  private closed = false;
  /** The drain's moves of nodes away past the grace (awayMoves.ts). */
  private readonly away: AwayMoves;

  constructor(
    private readonly etcd: Etcd3,
    private readonly c: ClusterConfig,
    private readonly registry: Registry,
    private readonly target: FenceTarget,
    private readonly log: Logger,
    /** How often old copies are looked for again (endOldCopies). */
    private readonly sweepMs = 30_000,
  ) {
    this.away = new AwayMoves(etcd, c.node, target, log);
  }

  /** Registered under a live lease and fenced since: only then does this node create, or judge others. */
  open(): boolean {
    return this.registry.live && this.fencedFor === this.registry.generation;
  }

  async start(): Promise<void> {
    await this.fence();
    if (this.closed) return;
    this.loops.push(
      every(
        1000,
        () => (this.registry.live && this.fencedFor !== this.registry.generation ? this.fence() : this.judge()),
        (e) => this.log.debug({ err: e.message }, 'fleet: failure check not done this time'),
      ),
      // Its own loop: the judging goes on while an old copy ends.
      every(this.sweepMs, () => (this.open() ? this.endOldCopies() : Promise.resolve()), (e) => this.log.debug({ err: e.message }, 'fleet: old copies not looked for this time')),
    );
  }

  /** Remove what the fleet declared lost while this node was away (see the top of this file). */
  async fence(): Promise<void> {
    const gen = this.registry.generation;
    if (!this.registry.live) return;
    const me = this.c.node;
    // This node's placements, by their keys alone (a value holds a whole create request).
    const [statuses, here] = await Promise.all([getPrefix(this.etcd, prefix.status), this.etcd.getAll().prefix(key.desiredOf(me)).keys()]);
    const placedHere = new Set(here.map(idOfKey));
    const lost = new Map<string, Status>();
    for (const [k, v] of statuses) {
      try {
        const s = parseValue(statusSchema, k, v);
        if (s.node === me && s.state === 'lost') lost.set(s.id, s);
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'ignoring a session status that does not parse');
      }
    }
    for (const id of this.target.held()) {
      if (placedHere.has(id)) continue;
      const s = lost.get(id);
      if (s) {
        this.log.warn({ session: id, lost_since: s.since }, 'fencing: the fleet declared this session lost while this node was away; removing it here');
        await this.target.remove(id, `fenced: node ${me} was unreachable past the fleet's grace (cluster.grace_s = ${this.c.grace_s}) and the fleet declared the session lost`);
        await this.markFenced(s);
        lost.delete(id);
      }
    }
    await this.away.endReleased(placedHere);
    await this.endOldCopies();
    // Ended here by an earlier fence whose mark etcd did not take: tried again, that fence no longer finds
    // the session held, so it is marked here (else the fleet kept it lost, and its status, for good).
    for (const [id, s] of lost) {
      const state = placedHere.has(id) ? undefined : this.target.stateOf(id);
      if (state === 'failed' || state === 'destroyed') await this.markFenced(s);
    }
    await this.etcd.delete().key(key.down(me));
    if (this.registry.generation === gen) this.fencedFor = gen;
  }

  /**
   * Where each session is placed (/enclave/desired/NODE/ID, keys alone: a
   * value holds a whole create request; on two nodes while a move copies
   * it), the moves from or to this node (its Mover's, or the fleet's past
   * the grace, to finish), and where another node's move of a session says
   * it lives now (its `from`).
   */
  private async placements(): Promise<Placements> {
    const me = this.c.node;
    // At one revision: read apart, a move could begin and end between them, and its copy here look old.
    const { where, moves } = await placementsAndMoves(this.etcd);
    const mine = new Set<string>();
    const elsewhere = new Map<string, string>();
    for (const [k, v] of moves) {
      const id = idOfKey(k);
      const rec = moveOf(k, v);
      if (rec === null || rec.from === me || rec.to === me) mine.add(id);
      else elsewhere.set(id, rec.from);
    }
    return { where, mine, elsewhere };
  }

  /**
   * End this node's old copy of each stopped session it holds that is
   * placed on other nodes alone, with no move from or to here recorded: a
   * drain moved it away (committed: until then its placement here stays)
   * and this node went away before it ended its old copy, its record since
   * removed by the fleet (AwayMoves.finishFrom); or an end of it that failed
   * before. It may be moving on between two others. Run at the fence and
   * every `sweepMs` after.
   * The sessions are taken before the fleet is read (at one revision: a
   * copy made after the read began is not among them), and each is read
   * again just before it ends: a move of it may have begun since.
   */
  async endOldCopies(): Promise<void> {
    await this.away.endMarked();
    const me = this.c.node;
    const held = this.target.held().filter((id) => this.target.stateOf(id) === 'stopped');
    const { where, mine, elsewhere } = await this.placements();
    for (const id of held) {
      const at = where.get(id) ?? [];
      if (at.length === 0 || at.includes(me) || mine.has(id)) continue;
      // Read again: placed here again, moving from or to here, or moved on meanwhile (the node it lives on now is named).
      const [now, rec] = await Promise.all([placedNodes(this.etcd, id), this.etcd.get(key.move(id)).string()]);
      const move = rec === null ? undefined : moveOf(key.move(id), rec);
      if (now.length === 0 || now.includes(me) || move === null || move?.from === me || move?.to === me || this.target.stateOf(id) !== 'stopped') continue;
      const to = move?.from ?? elsewhere.get(id) ?? now[0]!;
      this.log.warn({ session: id, node: to }, 'this session moved to another node; ending the old copy here');
      // Not a reason to stay closed; left, it stays stopped (a start is refused: placed elsewhere) until the next try.
      await this.target.forget(id, to).catch((e: Error) => this.log.error({ session: id, err: e.message }, 'cannot end the old copy of a moved session; trying again later'));
    }
  }

  /**
   * The fleet's account of a session this node fenced: `fenced`, and its
   * owner's record says so. If the owner destroyed the record meanwhile
   * nothing is left to tell anyone, and the status goes as well.
   */
  private async markFenced(s: Status): Promise<void> {
    const at = new Date().toISOString();
    const k = key.lost(s.id);
    const r = await getWithRev(this.etcd, k);
    if (r.value !== null) {
      const shown: Lost = { ...parseValue(lostSchema, k, r.value), fenced_at: at };
      const fenced: Status = { ...s, state: 'fenced', since: at };
      const done = await this.etcd.if(k, 'Mod', '==', r.rev).then(this.etcd.put(k).value(JSON.stringify(shown)), this.etcd.put(key.status(s.id)).value(JSON.stringify(fenced))).commit();
      // Failed its compare because this very transaction, sent again (etcd.ts), applied: done.
      if (done.succeeded || (await this.etcd.get(key.status(s.id)).string()) === JSON.stringify(fenced)) return;
    }
    await this.etcd.delete().key(key.status(s.id));
  }

  /** Mark members without a lease down, and declare the sessions of those down past the grace lost. */
  private async judge(): Promise<void> {
    if (!this.open()) return;
    const [fleet, downs] = await Promise.all([readFleet(this.etcd), getPrefix(this.etcd, prefix.down)]);
    for (const n of fleet) {
      const name = n.member.name;
      if (name === this.c.node) continue;
      const dk = key.down(name);
      const dv = downs.get(dk);
      if (n.alive) {
        if (dv !== undefined) await this.etcd.if(key.alive(name), 'Version', '>', 0).then(this.etcd.delete().key(dk)).commit();
        continue;
      }
      if (dv === undefined) {
        const since = new Date().toISOString();
        // Only while it is a member: one removed since it was read (nodeRemoval.ts) is not marked down again.
        const r = await this.etcd.if(key.alive(name), 'Version', '==', 0).and(dk, 'Version', '==', 0).and(key.member(name), 'Version', '>', 0).then(this.etcd.put(dk).value(JSON.stringify({ since, seen_by: this.c.node }))).commit();
        if (r.succeeded) this.log.warn({ node: name, grace_s: this.c.grace_s }, 'node unreachable (its lease lapsed): its sessions are lost if it is not back within the grace');
        continue;
      }
      const d = parseValue(downSchema, dk, dv);
      if (Date.now() - Date.parse(d.since) >= this.c.grace_s * 1000) {
        // One read of the moves for the three (a record that changes after it is read fails their compares).
        const moves = await getPrefix(this.etcd, prefix.move);
        await this.away.releaseTo(name, moves);
        await this.declareLost(name, moves);
        await this.emptyAlloc(name);
        await this.away.finishFrom(name, moves);
      }
    }
  }

  /**
   * Nothing counts against a node while it is away past the grace; it
   * recounts what it holds when back. Written only when it is not empty
   * yet (each round: a write whose answer was lost, or a release that took
   * its last placement, leaves no sign of its own).
   */
  private async emptyAlloc(node: string): Promise<void> {
    const empty = JSON.stringify({ sessions: {} });
    await this.etcd.if(key.alive(node), 'Version', '==', 0).and(key.alloc(node), 'Value', '!=', empty).then(this.etcd.put(key.alloc(node)).value(empty)).commit();
  }

  private async declareLost(node: string, moves: ReadonlyMap<string, string>): Promise<void> {
    // A session a move to that node was copying is not lost: its files are where it came from (AwayMoves.releaseTo).
    const moving = new Set(uncommittedTo(node, moves).map(([, , rec]) => rec.id));
    const desired = [...(await getPrefix(this.etcd, key.desiredOf(node)))].filter(([k]) => !moving.has(idOfKey(k)));
    if (desired.length === 0) return;
    const statuses = await getPrefix(this.etcd, prefix.status);
    const since = new Date().toISOString();
    let count = 0;
    for (let i = 0; i < desired.length; i += CHUNK) {
      const ops: IOperation[] = [];
      let inChunk = 0;
      for (const [k, v] of desired.slice(i, i + CHUNK)) {
        ops.push(this.etcd.delete().key(k));
        let d: Desired;
        try {
          d = parseValue(desiredSchema, k, v);
        } catch {
          continue; // an unreadable placement: it goes, there is nothing to report under
        }
        const id = d.id;
        const old = statuses.get(key.status(id));
        let session: unknown;
        try {
          session = old === undefined ? undefined : parseValue(statusSchema, key.status(id), old).session;
        } catch {
          session = undefined;
        }
        const lost: Status = { id, node, state: 'lost', since, ...(session === undefined ? {} : { session }) };
        ops.push(this.etcd.put(key.status(id)).value(JSON.stringify(lost)));
        // What its owner is shown; none when nothing of it is known to show (a placement older than its limits, never reported).
        const last = reportedOrPlaced(session, d, since);
        const shown: Lost | undefined = last && { id, node, owner_uid: d.owner_uid, name: d.request.name ?? null, since, session: last };
        if (shown) ops.push(this.etcd.put(key.lost(id)).value(JSON.stringify(shown)));
        inChunk++;
      }
      // Only while it is still away (back in between, it keeps what is left), and only placements still
      // there: this chunk sent again (etcd.ts) after its first send applied must not bring back a lost
      // record its owner removed meanwhile.
      const txn = this.etcd.if(key.alive(node), 'Version', '==', 0);
      for (const [k] of desired.slice(i, i + CHUNK)) txn.and(k, 'Version', '>', 0);
      const r = await txn.then(...ops).commit();
      if (r.succeeded) {
        count += inChunk;
        continue;
      }
      if ((await this.etcd.get(key.alive(node)).string()) !== null) return;
      // A placement of this chunk went meanwhile (or this chunk, sent again, applied): the next tick reads what is left.
    }
    this.log.warn({ node, sessions: count, grace_s: this.c.grace_s }, 'node unreachable past the grace: its sessions are lost');
  }

  close(): void {
    this.closed = true;
    for (const l of this.loops) l.stop();
  }
}
