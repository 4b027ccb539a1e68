// A copy of the fleet's keys (everything under /enclave/) kept current by
// one etcd watch, as a Kubernetes informer keeps the API server's objects:
// lists and forwarded calls read it instead of asking etcd for whole
// prefixes (the placements alone are ~1 KiB a session). A read of the copy
// is as fresh as a read of etcd: it waits until the copy has seen every
// write etcd had committed when the read began (the revision of one small
// linearizable read: Kubernetes' "consistent reads from cache"). Until the
// copy is loaded, while its watch is down, or when it does not catch up in
// time, keys() reads etcd itself.
import type { Etcd3, IWatchResponse, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { getPrefix } from './etcd.js';
import { PREFIX } from './keys.js';

/** How long a read waits for the copy to catch up before it reads etcd instead, ms. */
const CATCH_UP_MS = 200;
const EMPTY: ReadonlyMap<string, string> = new Map();
/** How ahead() answered, by way (WatchedFleet.aheads; the daemon's /metrics). */
export type AheadCounts = { current: number; unchanged: number; again: number; usual: number };

/** How long ahead() waits for etcd's revision before its caller reads the usual way, on the same read, ms. */
const AHEAD_MS = 250;

/**
 * The revision read a call started in ahead(), handed to the reads it then
 * makes the usual way: they wait on it (sent after the call arrived) rather
 * than send one of their own; `waited`: the copy's catch-up to it was waited
 * for already, and is not again.
 */
export interface Asked {
  rev: Promise<number>;
  waited: boolean;
}
/** After the watch was cancelled (etcd compacted past it): load again after this long, ms. */
const RELOAD_MS = 1000;

export class WatchedFleet {
  /** Key to value, by the key's part of the fleet (`/enclave/desired/`, `/enclave/alive/`, ...). */
  private readonly parts = new Map<string, Map<string, string>>();
  /** The etcd revision the copy has seen every write up to. */
  private rev = 0;
  /** Loaded, and its watch connected (a reconnected watch resumes where it left off). */
  private live = false;
  private closed = false;
  private watcher: Watcher | undefined;
  private waiters: Array<{ rev: number; done: (ok: boolean) => void }> = [];
  private timer: NodeJS.Timeout | undefined;
  /** Called with each value written to a key (onPut): a create waiting for its session's report. */
  private readonly putListeners = new Map<string, Set<(value: string) => void>>();
  /** Each part's version (version()): the count of changes when it last changed; a load changes every part. */
  private readonly versions = new Map<string, number>();
  private changes = 0;
  private loadedAt = 0;
  /** The revision read this turn of the event loop is sharing (revision()). */
  private asking: Promise<number> | undefined;
  /** How keys() answered: from the copy, or from etcd (a copy not live or not caught up). */
  readonly served = { copy: 0, etcd: 0 };
  /**
   * How ahead() answered: made from a copy current already, made before the copy caught up and kept (the parts
   * it read unchanged meanwhile), made again once it caught up, or not made (its caller reads the usual way).
   */
  readonly aheads: AheadCounts = { current: 0, unchanged: 0, again: 0, usual: 0 };
  /** The parts peek() gave while ahead() made its answer (synchronously: what the answer was made of). */
  private peeked: Set<string> | undefined;

  constructor(
    private readonly etcd: Etcd3,
    private readonly log: Logger,
  ) {}

  /** Load the copy and watch from the revision loaded; on failure, try again later (readers use etcd meanwhile). */
  start(): void {
    void this.load().catch((e: Error) => {
      this.log.debug({ err: e.message }, 'fleet copy: not loaded; reads go to etcd');
      this.again();
    });
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.drop();
    void this.watcher?.cancel().catch(() => undefined);
  }

  /**
   * The keys under each of `prefixes` (each one part of the fleet, as
   * `prefix.members`: key to value), as fresh as a read of etcd: from the
   * copy once it holds every write committed before this call, else (not
   * loaded, watch down, not caught up within CATCH_UP_MS) read from etcd.
   * Each answer is a Map of its own. Fails as an etcd read fails.
   */
  async keys(...prefixes: string[]): Promise<Array<Map<string, string>>> {
    return this.keysWith(undefined, ...prefixes);
  }

  /** keys(), on the revision read `asked` started if there is one (ahead()). */
  async keysWith(asked: Asked | undefined, ...prefixes: string[]): Promise<Array<Map<string, string>>> {
    return (await this.readWith(asked, ...prefixes)).maps.map((m) => new Map(m));
  }

  /**
   * As keys(), but the copy's own maps, not copies of them (a list of every
   * node's sessions reads a thousand keys and copies none): read them before
   * the next await, as the watch changes them in place. `copy`: whether they
   * are the copy's, all at one revision; read from etcd instead, each prefix
   * is a read of its own, at a revision of its own.
   */
  async read(...prefixes: string[]): Promise<{ copy: boolean; maps: Array<ReadonlyMap<string, string>> }> {
    return this.readWith(undefined, ...prefixes);
  }

  /** read(), on the revision read `asked` started if there is one (ahead()). */
  async readWith(asked: Asked | undefined, ...prefixes: string[]): Promise<{ copy: boolean; maps: Array<ReadonlyMap<string, string>> }> {
    const maps = await this.fromCopy(asked, prefixes);
    if (maps) return { copy: true, maps };
    this.served.etcd++;
    return { copy: false, maps: await Promise.all(prefixes.map((p) => getPrefix(this.etcd, p))) };
  }

  /** read()'s maps from the copy, or undefined where read() reads etcd itself (its caller may read less of it). */
  async fromCopy(asked: Asked | undefined, prefixes: string[]): Promise<Array<ReadonlyMap<string, string>> | undefined> {
    if (!this.live) return undefined;
    const now = await (asked?.rev ?? this.revision());
    if (!(asked?.waited ? this.live && this.rev >= now : await this.caughtUp(now))) return undefined;
    this.served.copy++;
    return prefixes.map((p) => this.parts.get(p) ?? EMPTY);
  }

  /**
   * `f` of the copy as it is now, made while etcd is asked its revision (the
   * read keys() waits on), and kept if the copy had seen that revision's
   * writes when `f` ran: as fresh as keys(), with the work done while etcd
   * answers rather than after. Else, once the copy has caught up, kept if
   * no part `f` read (peek()) changed meanwhile (writes elsewhere moved the
   * revision: an allocation settled, a report), else `f` again.
   * `ready`: whether `f` can be made from the copy at all (checked before
   * etcd is asked). When it is not made, `asked` is the revision read it
   * started (none when it did not ask), for the caller's reads the usual way
   * (readWith()): `f` gave undefined, the copy stopped following etcd, etcd
   * did not answer within AHEAD_MS, or the copy did not catch up. `f` reads
   * the copy (peek()) and must not wait: its maps change as the watch hears
   * etcd.
   */
  async ahead<T>(ready: () => boolean, f: () => T | undefined): Promise<{ made: T } | { asked?: Asked }> {
    const r = await this.madeAhead(ready, f);
    if (!('made' in r)) this.aheads.usual++;
    return r;
  }

  private async madeAhead<T>(ready: () => boolean, f: () => T | undefined): Promise<{ made: T } | { asked?: Asked }> {
    if (!this.live || !ready()) return {};
    const rev = this.revision();
    // The read on its way before the work (the client sends it after awaits of its own).
    await new Promise<void>((r) => setImmediate(r));
    if (!this.live) return { asked: { rev, waited: false } };
    const seen = this.rev;
    const made = this.reading(f);
    if (made.v === undefined) return { asked: { rev, waited: false } };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const now = await Promise.race([rev.catch(() => undefined), new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), AHEAD_MS)))]);
    clearTimeout(timer);
    if (now === undefined) return { asked: { rev, waited: false } };
    if (seen >= now) return (this.aheads.current++, { made: made.v });
    if (await this.caughtUp(now)) {
      if (made.read.every(([p, version]) => this.version(p) === version)) return (this.aheads.unchanged++, { made: made.v });
      const again = f();
      if (again !== undefined) return (this.aheads.again++, { made: again });
    }
    return { asked: { rev, waited: true } };
  }

  /** `f()`, and the parts it read (peek()) with their versions then: nothing changes them while it runs (it does not wait). */
  private reading<T>(f: () => T): { v: T; read: Array<[string, number]> } {
    const peeked = (this.peeked = new Set());
    try {
      return { v: f(), read: [...peeked].map((p) => [p, this.version(p)]) };
    } finally {
      this.peeked = undefined;
    }
  }

  /**
   * etcd's current revision: one linearizable read (this key need not exist)
   * shared by the reads asked in the same turn of the event loop, as a list
   * asks for the fleet's members and its pending sessions at once. Every
   * call that shares it arrived before it is sent, so each still sees every
   * write committed before its own call (the etcd3 client sends a read
   * after awaits of its own, never within the call); a call in a later turn
   * asks anew.
   */
  private revision(): Promise<number> {
    if (this.asking === undefined) {
      const p = this.etcd
        .get(`${PREFIX}revision`)
        .exec()
        .then((r) => Number(r.header.revision));
      // A caller may leave before it fails (ahead()): not an unhandled rejection; each caller still sees it.
      p.catch(() => undefined);
      this.asking = p;
      queueMicrotask(() => {
        if (this.asking === p) this.asking = undefined;
      });
    }
    return this.asking;
  }

  /**
   * The keys under each of `prefixes` as the copy holds them now, not waiting
   * for it to catch up with etcd (undefined while it does not follow etcd):
   * a guess to start work on, which a read by keys() then confirms.
   */
  peek(...prefixes: string[]): Array<Map<string, string>> | undefined {
    if (this.peeked) for (const p of prefixes) this.peeked.add(p);
    return this.live ? prefixes.map((p) => this.parts.get(p) ?? new Map<string, string>()) : undefined;
  }

  /**
   * A number that moves whenever the copy's part `p` (a prefix of keys()) changes
   * (a key written or deleted, the copy loaded again): the same number, the same
   * keys and values. What a reader made of a part can be kept until it moves.
   */
  version(p: string): number {
    return Math.max(this.versions.get(p) ?? 0, this.loadedAt);
  }

  /** Whether the copy follows etcd now (its watch connected): an onPut listener hears every write. */
  get following(): boolean {
    return this.live;
  }

  /** Call `f` with every value written to `k` from now on, while the copy follows etcd; the returned function stops it. */
  onPut(k: string, f: (value: string) => void): () => void {
    let set = this.putListeners.get(k);
    if (!set) this.putListeners.set(k, (set = new Set()));
    set.add(f);
    return () => {
      set.delete(f);
      if (set.size === 0 && this.putListeners.get(k) === set) this.putListeners.delete(k);
    };
  }

  /** The part of the fleet a key belongs to: `/enclave/PART/`. */
  private partOf(k: string): Map<string, string> {
    const p = this.partPrefix(k);
    let m = this.parts.get(p);
    if (!m) this.parts.set(p, (m = new Map()));
    return m;
  }

  private partPrefix(k: string): string {
    return k.slice(0, k.indexOf('/', PREFIX.length) + 1) || k;
  }

  private caughtUp(rev: number): Promise<boolean> {
    if (!this.live) return Promise.resolve(false);
    if (this.rev >= rev) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = {
        rev,
        done: (ok: boolean) => {
          clearTimeout(t);
          resolve(ok);
        },
      };
      // Writes outside /enclave/ (an etcd shared with others) move the revision without an event here.
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(false);
      }, CATCH_UP_MS);
      this.waiters.push(w);
    });
  }

  private async load(): Promise<void> {
    const r = await this.etcd.getAll().prefix(PREFIX).exec();
    if (this.closed) return;
    this.parts.clear();
    for (const kv of r.kvs) this.partOf(kv.key.toString()).set(kv.key.toString(), kv.value.toString());
    this.loadedAt = ++this.changes;
    this.rev = Number(r.header.revision);
    // watcher(), not create(): its listeners are on before it connects, so no answer of it goes unseen.
    const w = this.etcd.watch().prefix(PREFIX).startRevision(String(this.rev + 1)).watcher();
    this.watcher = w;
    w.on('data', (res: IWatchResponse) => this.watcher === w && this.apply(res));
    w.once('connected', () => {
      this.live = true;
      this.log.debug({ keys: r.kvs.length, revision: this.rev }, 'fleet copy loaded');
    });
    // Not resumed in place: the client resumes a dropped watch from the revision of its last answer,
    // which can be past events not yet delivered. A copy that may have missed writes is loaded again.
    w.on('disconnected', (e: Error) => this.restart(w, `watch disconnected: ${e.message}`, true));
    // Cancelled by etcd (compacted past the copy's revision: compactor.ts). Not cancelled again: the client
    // has dropped it, and throws (uncaught, in its stream's callback) at etcd's answer to a second cancel.
    w.on('error', (e: Error) => this.restart(w, `watch cancelled by etcd: ${e.message}`, false));
  }

  private restart(w: Watcher, why: string, cancel: boolean): void {
    if (this.watcher !== w) return;
    this.log.warn({ err: why }, 'fleet copy: loading it again; reads go to etcd meanwhile');
    this.drop();
    this.watcher = undefined;
    if (cancel) void w.cancel().catch(() => undefined);
    this.again();
  }

  private apply(res: IWatchResponse): void {
    for (const ev of res.events) {
      const k = ev.kv.key.toString();
      this.versions.set(this.partPrefix(k), ++this.changes);
      // The type is the enum's name ('Put'/'PUT' as the loader spells it).
      if (String(ev.type).toLowerCase() === 'delete') this.partOf(k).delete(k);
      else {
        const v = ev.kv.value.toString();
        this.partOf(k).set(k, v);
        for (const f of this.putListeners.get(k) ?? []) f(v);
      }
      // The events' own revisions (a delete's is the delete's), not the answer's header: etcd stamps a
      // batch of a watch catching up with its current revision, past the batch's last event.
      this.rev = Math.max(this.rev, Number(ev.kv.mod_revision));
    }
    const ready = this.waiters.filter((w) => w.rev <= this.rev);
    this.waiters = this.waiters.filter((w) => w.rev > this.rev);
    for (const w of ready) w.done(true);
  }

  /** The copy may be missing writes: readers go to etcd until the watch is back. */
  private drop(): void {
    this.live = false;
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w.done(false);
  }

  private again(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => this.start(), RELOAD_MS);
    this.timer.unref();
  }
}
