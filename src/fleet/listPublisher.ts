// This node's list in etcd: one key a session (/enclave/listed/NODE/ID, the
// session as this node's list shows it) and, once every one of them is
// there, /enclave/listing/NODE naming the registration it was written in.
// Another node lists this node's sessions from its watched copy of those
// keys, behind the one revision read every list makes (watched.ts), instead
// of asking this node: a list then costs no round trip to any other node
// and no work on them. A call that changed what the list shows is answered
// only once the change is written (settled(), from the dispatcher), so a
// write acknowledged before a list began is in that list, as when every
// node was asked; a change no caller waits for (a session exiting, a
// console's viewers) is written within `interval` ms (cluster.list_interval_ms) while etcd takes writes.
// Kubernetes' kubelet writes a pod's status the same way, for every reader
// to read from the API server's watch cache. Only what changed is written:
// each row's JSON is compared with what etcd holds (read back, in one
// transaction, at the first run and after a run that failed).
//
// A run that fails (etcd refused a write or did not answer within RUN_MS,
// or this node holds no registration: starting, its lease lost, stopping)
// answers its callers only once the listing is deleted, in a transaction
// that also moves the sequence key (below), so no listing put of this node's
// still on its way can land after it. Other nodes then ask this node, until
// a run writes the whole list and a listing again. While etcd cannot be
// reached that waits, up to the fleet's bound on its callers (fleet.ts);
// the listing also lives under a lease of its own (LISTING_TTL_S), renewed
// while runs succeed, so a node cut off from etcd drops out of the other
// nodes' reads within seconds whatever its own lease's TTL. Every
// transaction compares the sequence key (/enclave/listseq/NODE) with what
// the last one left and moves it: one whose answer was lost and that
// applies late, after a newer run or the failure's delete, fails instead
// of putting an older row back.
import { randomBytes } from 'node:crypto';
import type { Etcd3, IOperation, Lease } from 'etcd3';
import type { Logger } from 'pino';
import { atOneRevision, getWithRev } from './etcd.js';
import { within } from './deadline.js';
import { key } from './keys.js';

/** After runs that failed, the next looked-for one waits up to this long (a caller's run is made at once), ms. */
const BACKOFF_MAX_MS = 8000;
/** The listing's lease, s (etcd may grant more: at least 1.5 election timeouts). */
export const LISTING_TTL_S = 3;
/** The longest a run may take, ms: past it, it fails (a transaction of it that applies later fails its compare). */
const RUN_MS = 2000;
/** Operations a transaction, under etcd's default of 128 (--max-txn-ops), and its rows' bytes, well under its 1.5 MiB request limit. */
const CHUNK_OPS = 100;
const CHUNK_BYTES = 512 * 1024;

/** This node's list as its own list route makes it (not ended ones, each row's JSON), and a tag that moves whenever it may have changed. */
export interface ListSource {
  tag(): string;
  sessions(): ReadonlyArray<{ id: string; json: string }>;
  /** The registration this node holds now (its member record's registered_at), undefined while it holds none. */
  registration(): string | undefined;
}

/** A lease the listing is put under, and whether a put of the listing under it was sent. */
interface Held {
  lease: Lease;
  put: boolean;
}

export class ListPublisher {
  /** Each row's JSON as etcd holds it, by id; undefined until read back (and again after a run that failed). */
  private written: Map<string, string> | undefined;
  private writtenTag: string | undefined;
  /** The registration the listing key names: undefined while it names none of this process's (not written, or gone). */
  private listingFor: string | undefined;
  /** The listing's lease while runs succeed. */
  private held: Held | undefined;
  /** No listing is there: deleted by this process, and none put since (a run that puts one clears it). */
  private gone = false;
  /** The listing's delete under way (failed()): one at a time, and a run waits for it before it reads back. */
  private fencing: Promise<void> | undefined;
  /** The sequence key's mod revision as the last transaction left it (read back with the rows). */
  private seqRev = '0';
  /** The run under way, and the one queued behind it (callers whose change came after the running one read the list). */
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  /** Rows written and deleted, runs that failed: the daemon's /metrics. */
  readonly counts = { rows: 0, deleted: 0, failed: 0 };

  constructor(
    private readonly etcd: Etcd3,
    private readonly node: string,
    private readonly source: ListSource,
    private readonly log: Logger,
    /** How often a change no caller waits for is looked for, ms (a read of the list's version: no etcd call when it stands). */
    private readonly interval = 250,
  ) {}

  /** Write the list now, then look for changes every `interval` ms (longer after runs that failed). */
  start(): void {
    const tick = () => {
      if (this.closed) return;
      const wait = Math.min(Math.max(BACKOFF_MAX_MS, this.interval), this.interval * 2 ** Math.min(this.failures, 5));
      this.timer = setTimeout(() => void this.settled(true).finally(tick), wait);
      this.timer.unref();
    };
    void this.settled(true).finally(tick);
  }

  /** Stop, and take the listing away: from now on other nodes ask this one (the fleet bounds the wait). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.settled();
  }

  /**
   * Resolves once etcd holds the list as it is now (a run that began after
   * this call has ended), or once that run failed and the listing is gone
   * (logged; the next run tries again). Never rejects. At once when the list
   * is what the last run wrote; calls while a run is under way share the
   * one queued behind it. `write`: a run even while no listing is there
   * (the ticks, which write it again).
   */
  settled(write = false): Promise<void> {
    if (this.current()) return Promise.resolve();
    // No listing there, and none on its way (no run under way or queued, none put since the delete): no node
    // lists this one from etcd, so nothing a caller changed can be missing there. The next tick writes it again.
    if (!write && this.gone && !this.held && !this.running && !this.queued && !this.fencing) return Promise.resolve();
    if (this.queued) return this.queued;
    const after = this.running ?? Promise.resolve();
    const next = after.then(() => {
      this.queued = undefined;
      const run = this.run(Date.now() + RUN_MS).then(
        () => void (this.failures = 0),
        (e: Error) => this.failed(e),
      );
      this.running = run;
      return run.finally(() => {
        if (this.running === run) this.running = undefined;
      });
    });
    this.queued = next;
    return next;
  }

  /** The list's tag now. */
  tag(): string {
    return this.source.tag();
  }

  /** Whether etcd holds the list as it is now, for the registration held now (the tag is the one last written). */
  private current(): boolean {
    const registration = this.source.registration();
    return !this.closed && registration !== undefined && this.written !== undefined && this.listingFor === registration && this.held !== undefined && this.source.tag() === this.writtenTag;
  }

  private async run(deadline: number): Promise<void> {
    if (this.closed) throw new Error('the daemon is stopping');
    const registration = this.source.registration();
    if (registration === undefined) throw new Error('this node holds no registration in the fleet (starting, or its lease lost)');
    if (this.current()) return;
    if (this.fencing) await within(this.fencing, left(deadline), "the fleet's etcd");
    const written = this.written ?? (await this.readBack(deadline));
    // The tag, then the rows, with no wait between: a change after the tag leaves the rows newer than it, never older.
    const tag = this.source.tag();
    const now = new Map(this.source.sessions().map((s) => [s.id, s.json]));
    const ops: Array<{ id: string; json: string | undefined }> = [];
    for (const [id, json] of now) if (written.get(id) !== json) ops.push({ id, json });
    for (const id of written.keys()) if (!now.has(id)) ops.push({ id, json: undefined });
    for (const chunk of chunks(ops)) {
      await this.commit(
        chunk.map(({ id, json }) => (json === undefined ? this.etcd.delete().key(key.listed(this.node, id)) : this.etcd.put(key.listed(this.node, id)).value(json))),
        deadline,
      );
      for (const { id, json } of chunk) {
        if (json === undefined) {
          written.delete(id);
          this.counts.deleted++;
        } else {
          written.set(id, json);
          this.counts.rows++;
        }
      }
    }
    this.written = written;
    this.writtenTag = tag;
    // Every row is there now: other nodes may list this node from etcd while this registration and the listing's lease last.
    if (this.listingFor !== registration || !this.held) {
      const held = this.held ?? this.lease();
      const id = await within(held.lease.grant(), left(deadline), "the fleet's etcd");
      this.gone = false;
      held.put = true;
      await this.commit([this.etcd.put(key.listing(this.node)).value(JSON.stringify({ registered_at: registration })).lease(id)], deadline);
      this.listingFor = registration;
    }
  }

  /** A lease for the listing, renewed until released (a failed run) or lost. */
  private lease(): Held {
    const lease = this.etcd.lease(LISTING_TTL_S);
    const held: Held = { lease, put: false };
    lease.grant().catch(() => undefined); // a run that waits on it hears its failure
    // Lost (not renewed within its TTL): the listing is gone or going; the next run writes one under a new lease.
    lease.on('lost', () => {
      if (this.held !== held) return;
      this.held = undefined;
      this.listingFor = undefined;
    });
    this.held = held;
    return held;
  }

  /**
   * A run failed: its callers are answered once no node can read the list
   * it did not write, the listing deleted (fence()). What etcd holds is read
   * back at the next run.
   */
  private async failed(e: Error): Promise<void> {
    if (!this.closed) {
      this.counts.failed++;
      this.failures++;
      if (this.failures === 1 || this.failures % 20 === 0) this.log.warn({ err: e.message, failures: this.failures }, "fleet: this node's list not written to etcd; other nodes ask this node for it until it is");
    }
    this.written = undefined;
    this.listingFor = undefined;
    const held = this.held;
    this.held = undefined;
    held?.lease.release();
    // None there (deleted, none put since) and none on its way: nothing to take away.
    if (this.gone && !held?.put) return;
    this.gone = false;
    await this.fence();
  }

  /**
   * Delete the listing, moving the sequence key in the same transaction (a
   * listing put sent before, and resent or delayed, then fails its compare);
   * tried again until etcd takes it (the fleet bounds its callers' wait), or
   * once when stopping. etcd out of space takes no transaction with a put:
   * then a delete alone (while it refuses puts, none of this node's lands).
   */
  private fence(): Promise<void> {
    this.fencing ??= (async () => {
      const seq = key.listSeq(this.node);
      for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
        try {
          await this.etcd.if(seq, 'Version', '>', -1).then(this.etcd.delete().key(key.listing(this.node)), this.etcd.put(seq).value(token())).commit();
          this.gone = true;
          return;
        } catch (e) {
          if (/space exceeded/i.test((e as Error).message)) {
            await this.etcd
              .delete()
              .key(key.listing(this.node))
              .then(() => void (this.gone = true))
              .catch(() => undefined);
            if (this.gone) return;
          }
          if (this.closed) return;
          this.log.debug({ err: (e as Error).message }, "fleet: this node's listing not deleted yet; trying again");
          await new Promise((r) => setTimeout(r, wait).unref());
        }
      }
    })().finally(() => (this.fencing = undefined));
    return this.fencing;
  }

  /** What etcd holds of this node's list (written by an earlier run, or by this node's daemon before a restart), and its sequence key: one read, one revision. */
  private async readBack(deadline: number): Promise<Map<string, string>> {
    const at = key.listedOf(this.node);
    const [seq, rows] = await within(atOneRevision(this.etcd, [{ key: key.listSeq(this.node) }, { prefix: at }]), left(deadline), "the fleet's etcd");
    this.seqRev = String(seq![0]?.mod_revision ?? '0');
    return new Map(rows!.map((kv) => [kv.key.toString().slice(at.length), kv.value.toString()]));
  }

  /**
   * `ops` in one transaction, only while the sequence key is as the last one
   * left it; it moves the key to a value of its own, by which a resend whose
   * first send applied (the client's, after a lost answer) knows itself.
   */
  private async commit(ops: IOperation[], deadline: number): Promise<void> {
    const seq = key.listSeq(this.node);
    const mine = token();
    const r = await within(this.etcd.if(seq, 'Mod', '==', this.seqRev).then(...ops, this.etcd.put(seq).value(mine)).commit(), left(deadline), "the fleet's etcd");
    if (r.succeeded) {
      this.seqRev = r.header.revision;
      return;
    }
    const now = await within(getWithRev(this.etcd, seq), left(deadline), "the fleet's etcd");
    if (now.value !== mine) throw new Error("another write moved this node's list sequence (a transaction applied late, or another writer): read back");
    this.seqRev = now.rev;
  }
}

const token = (): string => randomBytes(9).toString('base64url');
const left = (deadline: number): number => Math.max(1, deadline - Date.now());

/** The operations in transactions of at most CHUNK_OPS (the sequence key's put is one more) and about CHUNK_BYTES of rows. */
function chunks(ops: Array<{ id: string; json: string | undefined }>): Array<typeof ops> {
  const out: Array<typeof ops> = [];
  let cur: typeof ops = [];
  let bytes = 0;
  for (const op of ops) {
    const size = (op.json === undefined ? 0 : Buffer.byteLength(op.json)) + 64;
    if (cur.length > 0 && (cur.length >= CHUNK_OPS || bytes + size > CHUNK_BYTES)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(op);
    bytes += size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}
