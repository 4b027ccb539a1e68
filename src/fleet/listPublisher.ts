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
// console's viewers) is written within PUBLISH_MS. Kubernetes' kubelet
// writes a pod's status the same way, for every reader to read from the
// API server's watch cache. Only what changed is written: each row's JSON
// is compared with what etcd holds (read back at the first run, and after a
// run that failed).
//
// A run that fails (etcd refused a write, or this node holds no
// registration: starting, or its lease lost) deletes the listing before its
// callers are answered, so the other nodes ask this node again until a run
// writes the whole list anew. Every transaction compares the sequence key
// (/enclave/listseq/NODE) with what the last one left and moves it: one
// whose answer was lost and that applies late, after a newer run, fails its
// compare instead of putting an older row back.
import type { Etcd3, IOperation } from 'etcd3';
import type { Logger } from 'pino';
import { getPrefix, getWithRev } from './etcd.js';
import { key } from './keys.js';

/** How often a change no caller waits for is looked for, ms (a read of the list's version: no etcd call when it stands). */
export const PUBLISH_MS = 250;
/** After runs that failed, the next looked-for one waits up to this long (a caller's run is made at once), ms. */
const BACKOFF_MAX_MS = 8000;
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

export class ListPublisher {
  /** Each row's JSON as etcd holds it, by id; undefined until read back (and again after a run that failed). */
  private written: Map<string, string> | undefined;
  private writtenTag: string | undefined;
  /** The registration the listing key names: undefined while it names none of this process's (not written, or deleted). */
  private listingFor: string | undefined;
  /** Whether the listing may be there (an earlier process's, or not deleted since a failure): a failed run deletes it. */
  private listingMaybe = true;
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
  ) {}

  /** Write the list now, then look for changes every PUBLISH_MS (longer after runs that failed). */
  start(): void {
    const tick = () => {
      if (this.closed) return;
      const wait = Math.min(BACKOFF_MAX_MS, PUBLISH_MS * 2 ** Math.min(this.failures, 5));
      this.timer = setTimeout(() => void this.settled().finally(tick), wait);
      this.timer.unref();
    };
    void this.settled().finally(tick);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  /**
   * Resolves once etcd holds the list as it is now (a run that began after
   * this call has ended), or once that run failed and the listing is gone
   * (logged; the next run tries again). Never rejects. At once when the list
   * is what the last run wrote; calls while a run is under way share the
   * one queued behind it.
   */
  settled(): Promise<void> {
    if (this.current()) return Promise.resolve();
    if (this.queued) return this.queued;
    const after = this.running ?? Promise.resolve();
    const next = after.then(() => {
      this.queued = undefined;
      const run = this.run().then(
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

  /** Whether etcd holds the list as it is now, for the registration held now (the tag is the one last written). */
  private current(): boolean {
    const registration = this.source.registration();
    return registration !== undefined && this.written !== undefined && this.listingFor === registration && this.source.tag() === this.writtenTag;
  }

  private async run(): Promise<void> {
    if (this.closed) return;
    const registration = this.source.registration();
    if (registration === undefined) throw new Error('this node holds no registration in the fleet (starting, or its lease lost)');
    // The tag first: a change after it leaves the rows newer than the tag, never older (the next run writes it).
    const tag = this.source.tag();
    if (this.written && tag === this.writtenTag && this.listingFor === registration) return;
    const written = this.written ?? (await this.readBack());
    const now = new Map(this.source.sessions().map((s) => [s.id, s.json]));
    const ops: Array<{ id: string; json: string | undefined }> = [];
    for (const [id, json] of now) if (written.get(id) !== json) ops.push({ id, json });
    for (const id of written.keys()) if (!now.has(id)) ops.push({ id, json: undefined });
    for (const chunk of chunks(ops)) {
      await this.commit(chunk.map(({ id, json }) => (json === undefined ? this.etcd.delete().key(key.listed(this.node, id)) : this.etcd.put(key.listed(this.node, id)).value(json))));
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
    // Every row is there now: other nodes may list this node from etcd for as long as this registration lasts.
    if (this.listingFor !== registration) {
      this.listingMaybe = true;
      await this.commit([this.etcd.put(key.listing(this.node)).value(JSON.stringify({ registered_at: registration }))]);
      this.listingFor = registration;
    }
  }

  /** A run failed: what etcd holds is read back at the next, and the listing goes first, so no node lists this one from rows it may lack. */
  private async failed(e: Error): Promise<void> {
    this.counts.failed++;
    this.failures++;
    this.written = undefined;
    this.listingFor = undefined;
    if (this.failures === 1 || this.failures % 20 === 0) this.log.warn({ err: e.message, failures: this.failures }, "fleet: this node's list not written to etcd; other nodes ask this node for it until it is");
    if (!this.listingMaybe) return;
    try {
      await this.etcd.delete().key(key.listing(this.node));
      this.listingMaybe = false;
    } catch (d) {
      this.log.warn({ err: (d as Error).message }, "fleet: this node's listing could not be deleted either");
    }
  }

  /** What etcd holds of this node's list (written by an earlier run, or by this node's daemon before a restart), and the sequence key's revision. */
  private async readBack(): Promise<Map<string, string>> {
    const at = key.listedOf(this.node);
    const [seq, kept] = await Promise.all([getWithRev(this.etcd, key.listSeq(this.node)), getPrefix(this.etcd, at)]);
    this.seqRev = seq.rev;
    return new Map([...kept].map(([k, v]) => [k.slice(at.length), v]));
  }

  /** `ops` in one transaction, only while the sequence key is as the last one left it; it moves the key. */
  private async commit(ops: IOperation[]): Promise<void> {
    const seq = key.listSeq(this.node);
    const r = await this.etcd
      .if(seq, 'Mod', '==', this.seqRev)
      .then(...ops, this.etcd.put(seq).value(''))
      .commit();
    if (!r.succeeded) throw new Error("another write moved this node's list sequence (an earlier transaction applied late, or another writer): read back");
    this.seqRev = r.header.revision;
  }
}

/** The operations in transactions of at most CHUNK_OPS (the sequence key's put is one more) and about CHUNK_BYTES of rows. */
function chunks(ops: Array<{ id: string; json: string | undefined }>): Array<typeof ops> {
  const out: Array<typeof ops> = [];
  let cur: typeof ops = [];
  let bytes = 0;
  for (const op of ops) {
    const size = (op.json?.length ?? 0) + 64;
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
