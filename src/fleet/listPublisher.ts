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
// is compared with what etcd holds (read back once, at the first run).
import type { Etcd3, IOperation } from 'etcd3';
import type { Logger } from 'pino';
import { getPrefix } from './etcd.js';
import { key } from './keys.js';

/** How often a change no caller waits for is looked for, ms (a read of the list's version: no etcd call when it stands). */
export const PUBLISH_MS = 250;
/** Operations a transaction, under etcd's default of 128 (--max-txn-ops). */
const CHUNK = 100;

/** This node's list as its own list route makes it (not ended ones, each row's JSON), and a tag that moves whenever it may have changed. */
export interface ListSource {
  tag(): string;
  sessions(): ReadonlyArray<{ id: string; json: string }>;
  /** The registration this node holds now (its member record's registered_at), undefined while it holds none. */
  registration(): string | undefined;
}

export class ListPublisher {
  /** Each row's JSON as etcd holds it, by id; undefined until read back (and again after a write whose outcome is unknown). */
  private written: Map<string, string> | undefined;
  private writtenTag: string | undefined;
  /** The registration the listing key names: undefined until written in this process. */
  private listingFor: string | undefined;
  /** The run under way, and the one queued behind it (callers whose change came after the running one read the list). */
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Rows written and deleted, runs that failed: the daemon's /metrics. */
  readonly counts = { rows: 0, deleted: 0, failed: 0 };

  constructor(
    private readonly etcd: Etcd3,
    private readonly node: string,
    private readonly source: ListSource,
    private readonly log: Logger,
  ) {}

  start(): void {
    const tick = () => {
      if (this.closed) return;
      this.timer = setTimeout(() => void this.settled().finally(tick), PUBLISH_MS);
      this.timer.unref();
    };
    tick();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  /**
   * Resolves once a run that began after this call has ended: the list as it
   * is now is in etcd, unless that run failed (logged; the next one tries
   * again). Never rejects. Calls while a run is under way share the one
   * queued behind it.
   */
  settled(): Promise<void> {
    if (this.queued) return this.queued;
    const after = this.running ?? Promise.resolve();
    const next = after.then(() => {
      this.queued = undefined;
      const run = this.run().catch((e: Error) => {
        this.counts.failed++;
        this.written = undefined; // a transaction that timed out may have applied: read back before the next diff
        this.log.warn({ err: e.message }, "fleet: this node's list not written to etcd; trying again");
      });
      this.running = run;
      return run.finally(() => {
        if (this.running === run) this.running = undefined;
      });
    });
    this.queued = next;
    return next;
  }

  private async run(): Promise<void> {
    const registration = this.source.registration();
    if (registration === undefined || this.closed) return;
    // The tag first: a change after it leaves the rows newer than the tag, never older (the next run writes it).
    const tag = this.source.tag();
    if (this.written && tag === this.writtenTag && this.listingFor === registration) return;
    const written = this.written ?? (await this.readBack());
    const now = new Map(this.source.sessions().map((s) => [s.id, s.json]));
    const ops: Array<{ id: string; json: string | undefined }> = [];
    for (const [id, json] of now) if (written.get(id) !== json) ops.push({ id, json });
    for (const id of written.keys()) if (!now.has(id)) ops.push({ id, json: undefined });
    for (let i = 0; i < ops.length; i += CHUNK) {
      const chunk = ops.slice(i, i + CHUNK);
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
      await this.etcd.put(key.listing(this.node)).value(JSON.stringify({ registered_at: registration }));
      this.listingFor = registration;
    }
  }

  /** What etcd holds of this node's list (written by an earlier run, or by this node's daemon before a restart). */
  private async readBack(): Promise<Map<string, string>> {
    const at = key.listedOf(this.node);
    const kept = await getPrefix(this.etcd, at);
    return new Map([...kept].map(([k, v]) => [k.slice(at.length), v]));
  }

  private async commit(ops: IOperation[]): Promise<void> {
    // A transaction whose condition always holds (a key's version is never negative): every operation applies, or none.
    await this.etcd.if(key.listing(this.node), 'Version', '>', -1).then(...ops).commit();
  }
}
