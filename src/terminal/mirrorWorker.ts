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

/** The most parsed in one go (between chances for other terminals' work). */
const PIECE = 4096;
/** Report progress at least this often while a terminal is busy. */
const PROGRESS_EVERY = 256 * 1024;
/** ...and when it goes idle with at least this much unreported. */
const PROGRESS_IDLE = 16 * 1024;

interface Mirror {
  term: InstanceType<typeof Terminal>;
  serializer: InstanceType<typeof SerializeAddon>;
  scrollback: number;
  /** Bytes parsed since open or the last reset. */
  processed: number;
  reported: number;
  pending: number;
  /** Bumped by reset, so callbacks of writes from before it are ignored. */
  epoch: number;
  /** Counts that loop (scrolls, repeats) clamped to the screen: work per byte stays bounded. */
  clamp: CsiClamp;
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

function fresh(cols: number, rows: number, scrollback: number): Pick<Mirror, 'term' | 'serializer'> {
  const term = new Terminal({ cols, rows, scrollback, allowProposedApi: true });
  const serializer = new SerializeAddon();
  term.loadAddon(serializer);
  return { term, serializer };
}

port.on('message', (m: MirrorRequest) => {
  if (m.op === 'open') {
    mirrors.set(m.id, { ...fresh(m.cols, m.rows, m.scrollback), scrollback: m.scrollback, processed: 0, reported: 0, pending: 0, epoch: 0, clamp: new CsiClamp() });
    return;
  }
  const t = mirrors.get(m.id);
  if (!t) return;
  switch (m.op) {
    case 'data': {
      const epoch = t.epoch;
      const n = m.bytes.length;
      t.pending++;
      const bytes = t.clamp.filter(m.bytes, t.term.cols, t.term.rows);
      // A batch in pieces of a pty read's size: xterm yields to other work
      // (another terminal's snapshot) between writes, not within one.
      for (let at = 0; at + PIECE < bytes.length; at += PIECE) t.term.write(bytes.subarray(at, at + PIECE));
      t.term.write(bytes.subarray(Math.max(0, Math.ceil(bytes.length / PIECE) - 1) * PIECE), () => {
        if (t.epoch !== epoch) return;
        t.pending--;
        t.processed += n;
        // A good chunk further along, or idle after a fair amount: tell the
        // daemon how far we are (not per keystroke: that would wake it each time).
        if (t.processed - t.reported >= PROGRESS_EVERY || (t.pending === 0 && t.processed - t.reported >= PROGRESS_IDLE)) {
          t.reported = t.processed;
          reply({ op: 'progress', id: m.id, epoch, processed: t.processed });
        }
      });
      return;
    }
    case 'progress': {
      // The daemon waits to restart a mirror that fell behind: answer once parsed.
      const epoch = t.epoch;
      t.term.write(new Uint8Array(0), () => {
        if (t.epoch === epoch) reply({ op: 'progress', id: m.id, epoch, processed: t.processed });
      });
      return;
    }
    case 'resize':
      t.term.resize(m.cols, m.rows);
      return;
    case 'reset': {
      // A new terminal, not term.reset(): queued writes of the old one are dropped.
      const { cols, rows } = t.term;
      t.term.dispose();
      Object.assign(t, fresh(cols, rows, t.scrollback), { processed: 0, reported: 0, pending: 0, epoch: t.epoch + 1, clamp: new CsiClamp() });
      return;
    }
    case 'snapshot': {
      const epoch = t.epoch;
      // An empty write's callback runs once everything queued before it is parsed.
      t.term.write(new Uint8Array(0), () => {
        if (t.epoch !== epoch) return reply({ op: 'snapshot', id: m.id, req: m.req, data: null });
        const data = t.serializer.serialize({ scrollback: t.scrollback });
        reply({ op: 'snapshot', id: m.id, req: m.req, data, cols: t.term.cols, rows: t.term.rows });
      });
      return;
    }
    case 'close':
      t.term.dispose();
      mirrors.delete(m.id);
      return;
  }
});
