// Screen mirrors: a headless xterm per console, fed with the pty's bytes in a
// worker thread, asked for a snapshot (screen + bounded scrollback) when a
// client attaches without a resumable offset. The daemon's event loop only
// posts copies of the output; parsing happens in the worker.
//
// Overload policy: a mirror more than `maxLagBytes` behind stops being fed
// (the pty and the viewers are never slowed for it). Once the worker has
// caught up, the mirror restarts from the replay ring's content, which holds
// the recent output; snapshot requests made meanwhile wait for that. A dead
// worker is replaced on the next snapshot request, the same way.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { ByteRing } from './ring.js';
import type { MirrorReply, MirrorRequest } from './mirrorProtocol.js';

const SNAPSHOT_TIMEOUT_MS = 3000;
/**
 * Output is posted to the worker in batches, at most this long after it came
 * (or at once past MIRROR_BATCH_BYTES): a keystroke's echo never wakes the
 * worker on its way to the viewers, and a busy terminal costs one message per
 * batch, not one per pty read. A snapshot or a resize posts the batch first.
 */
const MIRROR_BATCH_MS = 5;
const MIRROR_BATCH_BYTES = 128 * 1024;

export interface Snapshot {
  /** Terminal bytes that redraw the screen (and scrollback) from a reset terminal. */
  data: Buffer;
  /** Ring offset the snapshot covers: live output continues from here. */
  offset: number;
  cols: number;
  rows: number;
}

function workerFile(): string {
  // Compiled: next to this file. Under vitest (running the .ts sources): the build in dist/.
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'mirrorWorker.js'), join(here, '..', '..', 'dist', 'src', 'terminal', 'mirrorWorker.js')];
  const found = candidates.find((f) => existsSync(f));
  if (!found) throw new Error(`screen mirror worker not found (looked for ${candidates.join(', ')}); run the build`);
  return found;
}

/** One worker thread for every console's mirror. */
export class MirrorHost {
  private worker: Worker | undefined;
  private readonly mirrors = new Map<number, ScreenMirror>();
  private nextId = 1;
  private closed = false;

  constructor(private readonly log: Logger) {}

  /** The live worker, started if there is none. */
  private get live(): Worker {
    if (this.worker) return this.worker;
    if (this.closed) throw new Error('screen mirrors are shut down');
    const w = new Worker(workerFile(), { name: 'enclave-screen-mirror' });
    w.on('message', (m: MirrorReply) => this.mirrors.get(m.id)?.reply(m));
    const lost = (why: string) => {
      if (this.worker !== w) return;
      this.worker = undefined;
      if (!this.closed) this.log.error({ why }, 'screen mirror worker ended; mirrors restart on the next snapshot');
      for (const m of this.mirrors.values()) m.lost();
    };
    w.on('error', (e) => lost(e.message));
    w.on('exit', (code) => lost(`exit ${code}`));
    // A worker does not keep the daemon alive on its own.
    w.unref();
    this.worker = w;
    return w;
  }

  get running(): boolean {
    return this.worker !== undefined;
  }

  /** Post to the worker, starting it if needed. Returns false when shut down. */
  post(m: MirrorRequest, transfer?: ArrayBuffer[]): boolean {
    if (this.closed) return false;
    this.live.postMessage(m, transfer);
    return true;
  }

  /** Post only to a worker that is already running (data for a mirror it holds). */
  postIfRunning(m: MirrorRequest, transfer?: ArrayBuffer[]): boolean {
    if (!this.worker) return false;
    this.worker.postMessage(m, transfer);
    return true;
  }

  create(ring: ByteRing, size: { cols: number; rows: number }, scrollback: number, maxLagBytes: number): ScreenMirror {
    const id = this.nextId++;
    const m = new ScreenMirror(this, id, ring, size, scrollback, maxLagBytes);
    this.mirrors.set(id, m);
    return m;
  }

  forget(id: number): void {
    this.mirrors.delete(id);
  }

  /** For tests: what a crash does. */
  async crashForTest(): Promise<void> {
    await this.worker?.terminate();
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined;
    for (const m of this.mirrors.values()) m.lost();
    await w?.terminate();
  }
}

type State = 'sync' | 'behind' | 'broken';

export class ScreenMirror {
  private state: State = 'broken';
  /** Ring offset of the first byte fed since the last (re)start. */
  private basis = 0;
  private posted = 0;
  private processed = 0;
  private epoch = 0;
  private size: { cols: number; rows: number };
  private nextReq = 1;
  private readonly waiting = new Map<number, { offset: number; resolve: (s: Snapshot) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  /** Snapshot requests made while behind: sent after the restart. */
  private deferred: (() => void)[] = [];
  private closed = false;
  /** Output not posted yet (in the ring already), and the timer that posts it. */
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private batchTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly host: MirrorHost,
    private readonly id: number,
    private readonly ring: ByteRing,
    size: { cols: number; rows: number },
    private readonly scrollback: number,
    private readonly maxLagBytes: number,
  ) {
    this.size = { ...size };
    this.restart();
  }

  /** Bytes the worker has been given, or will be with the batch, but not
   * parsed yet (over-estimated by at most the worker's reporting step). */
  get lag(): number {
    return this.posted + this.batchBytes - this.processed;
  }

  get mode(): State {
    return this.state;
  }

  /** Every pty chunk, after it went into the ring and to the viewers. */
  write(data: Buffer): void {
    if (this.state !== 'sync' || this.closed || data.length === 0) return;
    if (this.lag + data.length > this.maxLagBytes) {
      // The batch goes too: the restart feeds the worker from the ring.
      this.dropBatch();
      this.state = 'behind';
      // Progress is reported in steps; ask for the exact figure once caught up.
      this.host.postIfRunning({ op: 'progress', id: this.id });
      return;
    }
    // Held by reference until posted (a pty read's Buffer is not reused).
    this.batch.push(data);
    this.batchBytes += data.length;
    if (this.batchBytes >= MIRROR_BATCH_BYTES) this.post();
    else if (!this.batchTimer) this.batchTimer = setTimeout(() => this.post(), MIRROR_BATCH_MS).unref();
  }

  /** Post the batch: what the worker is asked after this covers every byte written so far. */
  private post(): void {
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    if (this.batchBytes === 0) return;
    // One copy of exactly these bytes, moved to the worker (a pty Buffer may share a larger ArrayBuffer).
    const bytes = new Uint8Array(this.batchBytes);
    let at = 0;
    for (const b of this.batch) {
      bytes.set(b, at);
      at += b.length;
    }
    this.dropBatch();
    this.feed(bytes);
  }

  private dropBatch(): void {
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    this.batch = [];
    this.batchBytes = 0;
  }

  /** Posts `bytes` (this mirror's own: moved, not copied). */
  private feed(bytes: Uint8Array): void {
    const n = bytes.length; // read before the move empties it
    if (!this.host.postIfRunning({ op: 'data', id: this.id, bytes }, [bytes.buffer as ArrayBuffer])) return this.lost();
    this.posted += n;
  }

  resize(size: { cols: number; rows: number }): void {
    this.size = { ...size };
    // Output from before the resize is parsed at the size it was written for.
    if (this.state === 'sync') this.post();
    if (this.state !== 'broken') this.host.postIfRunning({ op: 'resize', id: this.id, ...size });
  }

  /** Start over from the ring: after open, after falling behind, after the worker died. */
  private restart(): void {
    if (this.closed) return;
    const reopen = this.state === 'broken';
    try {
      if (reopen) this.host.post({ op: 'open', id: this.id, cols: this.size.cols, rows: this.size.rows, scrollback: this.scrollback });
      else this.host.post({ op: 'reset', id: this.id });
    } catch {
      return; // no worker can be started; stays broken, snapshots fail over to the ring
    }
    this.epoch = reopen ? 0 : this.epoch + 1;
    this.state = 'sync';
    // The ring holds the batch's bytes too.
    this.dropBatch();
    this.basis = this.ring.start;
    this.posted = 0;
    this.processed = 0;
    const held = this.ring.since(this.ring.start)!;
    // A copy: since() may hand out a slice of Node's shared pool, which must not be moved.
    if (held.length) this.feed(new Uint8Array(held));
    const deferred = this.deferred;
    this.deferred = [];
    for (const send of deferred) send();
  }

  reply(m: MirrorReply): void {
    if (m.op === 'progress') {
      if (m.epoch !== this.epoch) return;
      this.processed = m.processed;
      if (this.state === 'behind' && this.processed === this.posted) this.restart();
      return;
    }
    const w = this.waiting.get(m.req);
    if (!w) return;
    this.waiting.delete(m.req);
    clearTimeout(w.timer);
    if (m.data === null) w.reject(new Error('the screen mirror restarted during the snapshot'));
    else w.resolve({ data: Buffer.from(m.data, 'utf8'), offset: w.offset, cols: m.cols ?? this.size.cols, rows: m.rows ?? this.size.rows });
  }

  /** The worker is gone: pending snapshots fail, the next one restarts it. */
  lost(): void {
    this.state = 'broken';
    this.dropBatch();
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(new Error('the screen mirror worker ended'));
    }
    this.waiting.clear();
  }

  /** The screen as of the ring's current end (or later, if the mirror is catching up). */
  snapshot(): Promise<Snapshot> {
    if (this.closed) return Promise.reject(new Error('console closed'));
    if (this.state === 'broken') this.restart();
    if (this.state === 'broken') return Promise.reject(new Error('the screen mirror is unavailable'));
    return new Promise((resolve, reject) => {
      let req = 0;
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        if (req) this.waiting.delete(req);
        reject(new Error(`no snapshot within ${SNAPSHOT_TIMEOUT_MS} ms`));
      }, SNAPSHOT_TIMEOUT_MS);
      const send = () => {
        if (done) return;
        if (this.state === 'broken') {
          done = true;
          clearTimeout(timer);
          return reject(new Error('the screen mirror worker ended'));
        }
        // Everything written so far goes first: the snapshot covers up to the ring's end.
        this.post();
        if (this.state !== 'sync') {
          done = true;
          clearTimeout(timer);
          return reject(new Error('the screen mirror worker ended'));
        }
        req = this.nextReq++;
        this.waiting.set(req, { offset: this.basis + this.posted, resolve, reject, timer });
        if (!this.host.postIfRunning({ op: 'snapshot', id: this.id, req })) this.lost();
      };
      if (this.state === 'behind') this.deferred.push(send);
      else send();
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dropBatch();
    this.host.postIfRunning({ op: 'close', id: this.id });
    this.host.forget(this.id);
    this.lost();
    for (const send of this.deferred) send();
    this.deferred = [];
  }
}
