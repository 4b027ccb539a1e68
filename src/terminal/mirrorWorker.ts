// Worker thread holding a headless xterm per console, so parsing a busy
// terminal's output never runs on the daemon's event loop. It answers
// snapshot requests with the serialised screen plus bounded scrollback.
// Messages are ordered, so a snapshot covers exactly the bytes posted before it.
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';
import xtermHeadless from '@xterm/headless';
import serializeAddon from '@xterm/addon-serialize';
import type { MirrorReply, MirrorRequest } from './mirrorProtocol.js';
import { CsiClamp } from './csiClamp.js';

const { Terminal } = xtermHeadless;
const { SerializeAddon } = serializeAddon;

/** Output is handed to xterm in pieces of this size (xterm yields between pieces, not within one)... */
const PIECE = 4096;
/** ...and at most this much of a terminal's at a time: the rest waits in its queue, unclamped. */
const IN_FLIGHT = 64 * 1024;
/** Report progress at least this often while a terminal is busy. */
const PROGRESS_EVERY = 256 * 1024;
/** ...and when it goes idle with at least this much unreported. */
const PROGRESS_IDLE = 16 * 1024;

interface Mirror {
  id: number;
  term: InstanceType<typeof Terminal>;
  serializer: InstanceType<typeof SerializeAddon>;
  scrollback: number;
  /** Bytes parsed since open or the last reset. */
  processed: number;
  reported: number;
  /** Bumped by reset, so callbacks of writes from before it are ignored. */
  epoch: number;
  /** Counts that loop (scrolls, repeats) clamped to the screen: work per byte stays bounded. */
  clamp: CsiClamp;
  /**
   * What is still to do, in order: output pieces (clamped only when handed
   * to xterm, at the size then) and steps that need everything before them
   * parsed (a snapshot, a resize, a progress report). A message costs the
   * worker O(1) when it comes, so one terminal's flood never holds another's
   * snapshot for more than one of xterm's slices (12 ms).
   */
  queue: (Uint8Array | Step)[];
  /** Bytes handed to xterm and not parsed yet. */
  inFlight: number;
}

const port = parentPort;
if (!port) throw new Error('mirrorWorker must run as a worker thread');

// Lower this thread's priority (Linux nice is per thread; /proc/thread-self
// names our TID): when CPUs are short, the pty and the viewers win and the
// mirror falls behind, which its owner handles by restarting it from the ring.
const MIRROR_NICE = 10;
try {
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  if (Number.isInteger(tid) && tid > 0) setPriority(tid, MIRROR_NICE);
} catch {
  /* not Linux, or no /proc: the mirror runs at the daemon's priority */
}
const mirrors = new Map<number, Mirror>();

function reply(m: MirrorReply): void {
  port!.postMessage(m);
}

/** A step of a terminal's queue; `drop` answers for it when a reset discards it. */
interface Step {
  run: () => void;
  drop?: () => void;
}

/** Hand the terminal's queue on: pieces while under IN_FLIGHT, a step once everything before it is parsed. */
function pump(t: Mirror): void {
  const id = t.id;
  while (t.queue.length > 0) {
    const next = t.queue[0]!;
    if (!(next instanceof Uint8Array)) {
      if (t.inFlight > 0) return; // a piece's callback pumps again
      t.queue.shift();
      next.run();
      continue;
    }
    if (t.inFlight >= IN_FLIGHT) return;
    t.queue.shift();
    const epoch = t.epoch;
    t.inFlight += next.length;
    t.term.write(t.clamp.filter(next, t.term.cols, t.term.rows), () => {
      if (t.epoch !== epoch) return;
      t.inFlight -= next.length;
      t.processed += next.length;
      // A good chunk further along, or idle after a fair amount: tell the
      // daemon how far we are (not per keystroke: that would wake it each time).
      const idle = t.inFlight === 0 && t.queue.length === 0;
      if (t.processed - t.reported >= PROGRESS_EVERY || (idle && t.processed - t.reported >= PROGRESS_IDLE)) {
        t.reported = t.processed;
        reply({ op: 'progress', id, epoch, processed: t.processed });
      }
      pump(t);
    });
  }
}

function enqueue(t: Mirror, item: Uint8Array | Step): void {
  t.queue.push(item);
  pump(t);
}

function fresh(cols: number, rows: number, scrollback: number): Pick<Mirror, 'term' | 'serializer'> {
  const term = new Terminal({ cols, rows, scrollback, allowProposedApi: true });
  const serializer = new SerializeAddon();
  term.loadAddon(serializer);
  return { term, serializer };
}

port.on('message', (m: MirrorRequest) => {
  if (m.op === 'open') {
    mirrors.set(m.id, { id: m.id, ...fresh(m.cols, m.rows, m.scrollback), scrollback: m.scrollback, processed: 0, reported: 0, epoch: 0, clamp: new CsiClamp(), queue: [], inFlight: 0 });
    return;
  }
  const t = mirrors.get(m.id);
  if (!t) return;
  switch (m.op) {
    case 'data':
      for (let at = 0; at < m.bytes.length; at += PIECE) t.queue.push(m.bytes.subarray(at, at + PIECE));
      pump(t);
      return;
    case 'progress':
      // The daemon waits to restart a mirror that fell behind: answer once parsed.
      enqueue(t, { run: () => reply({ op: 'progress', id: m.id, epoch: t.epoch, processed: t.processed }) });
      return;
    case 'resize':
      // At its place in the stream: what came before is parsed at the old size.
      enqueue(t, { run: () => t.term.resize(m.cols, m.rows) });
      return;
    case 'reset': {
      // A new terminal, not term.reset(): queued work of the old one is dropped.
      const { cols, rows } = t.term;
      t.term.dispose();
      for (const q of t.queue) if (!(q instanceof Uint8Array)) q.drop?.();
      Object.assign(t, fresh(cols, rows, t.scrollback), { processed: 0, reported: 0, epoch: t.epoch + 1, clamp: new CsiClamp(), queue: [], inFlight: 0 });
      return;
    }
    case 'snapshot':
      // Runs once everything queued before it is parsed.
      enqueue(t, {
        run: () => reply({ op: 'snapshot', id: m.id, req: m.req, data: t.serializer.serialize({ scrollback: t.scrollback }), cols: t.term.cols, rows: t.term.rows }),
        drop: () => reply({ op: 'snapshot', id: m.id, req: m.req, data: null }),
      });
      return;
    case 'close':
      t.term.dispose();
      mirrors.delete(m.id);
      return;
  }
});
