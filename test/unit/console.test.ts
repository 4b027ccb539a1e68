// A fresh viewer (no resumable offset) gets a screen snapshot and then live
// output. The snapshot is made in a worker and can take a while under load;
// output produced meanwhile may run past the replay ring. These tests slow
// the snapshot down on purpose and check that no byte after hello.offset is
// lost while the viewer stays within max_lag_bytes.
import { EventEmitter } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import xtermHeadless from '@xterm/headless';
import { SessionConsole, EVENTS_CHANNEL, SNAPSHOT_CHANNEL, type ScreenSource } from '../../src/terminal/console.js';
import { Channel } from '../../src/terminal/channels.js';
import { MirrorHost } from '../../src/terminal/mirror.js';
import type { ByteRing } from '../../src/terminal/ring.js';
import type { TerminalProcess } from '../../src/terminal/sessionPty.js';
import type { WebSocket } from 'ws';

const log = pino({ level: 'silent' });
const host = new MirrorHost(log);
afterAll(() => host.close());

class FakePty implements TerminalProcess {
  private data: ((b: Buffer) => void) | undefined;
  onData(cb: (b: Buffer) => void): void {
    this.data = cb;
  }
  onExit(): void {}
  write(): void {}
  resize(): void {}
  kill(): void {}
  emit(b: Buffer): void {
    this.data!(b);
  }
}

/** Enough of a ws WebSocket for the console: frames land in `frames`. */
class FakeSocket extends EventEmitter {
  frames: Buffer[] = [];
  bufferedAmount = 0;
  closedWith: number | undefined;
  send(data: Buffer, cb?: () => void): void {
    this.frames.push(Buffer.from(data));
    if (cb) setImmediate(cb);
  }
  close(code?: number): void {
    this.closedWith = code ?? 1000;
    this.emit('close');
  }
  get hello(): { offset: number; snapshot: boolean } | undefined {
    for (const f of this.frames) {
      if (f[0] !== EVENTS_CHANNEL) continue;
      const e = JSON.parse(f.subarray(1).toString()) as { type: string; offset: number; snapshot: boolean };
      if (e.type === 'hello') return e;
    }
    return undefined;
  }
  stdout(): Buffer {
    return Buffer.concat(this.frames.filter((f) => f[0] === Channel.stdout).map((f) => f.subarray(1)));
  }
  snapshot(): Buffer | undefined {
    return this.frames.find((f) => f[0] === SNAPSHOT_CHANNEL)?.subarray(1);
  }
}

/** The real screen mirror, its snapshot held back until `release()`. */
function slowMirror(): { make: (ring: ByteRing, size: { cols: number; rows: number }) => ScreenSource; asked: Promise<void>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let asked!: () => void;
  const wasAsked = new Promise<void>((r) => (asked = r));
  const make = (ring: ByteRing, size: { cols: number; rows: number }): ScreenSource => {
    const real = host.create(ring, size, 100, 64 * 1024 * 1024);
    return {
      write: (d) => real.write(d),
      resize: (s) => real.resize(s),
      close: () => real.close(),
      snapshot: async () => {
        const p = real.snapshot();
        asked();
        const s = await p;
        await gate;
        return s;
      },
    };
  };
  return { make, asked: wasAsked, release };
}

/** Numbered lines, so a lost or doubled byte shows in the comparison. */
function lines(from: number, n: number): Buffer {
  let s = '';
  for (let i = from; i < from + n; i++) s += `line ${String(i).padStart(8, '0')} ${'x'.repeat(40)}\r\n`;
  return Buffer.from(s);
}

function makeConsole(pty: FakePty, mirror: (ring: ByteRing, size: { cols: number; rows: number }) => ScreenSource, maxLagBytes: number): SessionConsole {
  return new SessionConsole({
    sessionId: 'test',
    pty,
    ringBytes: 64 * 1024,
    size: { cols: 80, rows: 24 },
    policy: 'latest',
    maxLagBytes,
    stallMs: 60_000,
    log,
    onEnd: () => {},
    mirror,
  });
}

const settle = () => new Promise((r) => setTimeout(r, 20));

async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await settle();
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
}

describe('fresh attach while the screen snapshot is slow', () => {
  it('loses no byte produced after hello.offset, even when output runs far past the ring meanwhile', async () => {
    const pty = new FakePty();
    const slow = slowMirror();
    const con = makeConsole(pty, slow.make, 8 * 1024 * 1024);
    const all: Buffer[] = [];
    const out = (b: Buffer) => {
      all.push(b);
      pty.emit(b);
    };
    out(lines(0, 100));
    const ws = new FakeSocket();
    con.attach(ws as unknown as WebSocket, 'rw', true, undefined, undefined);
    await slow.asked;
    // 1 MiB+ of output while the snapshot is held back: 16 times the ring.
    for (let i = 0; i < 20; i++) out(lines(100 + i * 1000, 1000));
    expect(con.ring.start).toBeGreaterThan(lines(0, 100).length);
    slow.release();
    await until('the hello', () => ws.hello !== undefined);
    out(lines(100_000, 10));
    await settle();

    const hello = ws.hello!;
    expect(hello.snapshot).toBe(true);
    const produced = Buffer.concat(all);
    // The snapshot covers everything up to its offset (taken at the attach or later) ...
    expect(hello.offset).toBeGreaterThanOrEqual(lines(0, 100).length);
    const term = new xtermHeadless.Terminal({ cols: 80, rows: 24, scrollback: 100, allowProposedApi: true });
    await new Promise<void>((r) => term.write(ws.snapshot()!, r));
    expect(term.buffer.active.getLine(term.buffer.active.baseY + 22)!.translateToString(true)).toContain('line 00000099');
    // ... and the stream from there on is every byte after it, once, in order.
    expect(ws.stdout().equals(produced.subarray(hello.offset))).toBe(true);
    expect(ws.closedWith).toBeUndefined();
  });

  it('cuts off (with a resumable close code) a fresh viewer that falls max_lag_bytes behind while waiting', async () => {
    const pty = new FakePty();
    const slow = slowMirror();
    const con = makeConsole(pty, slow.make, 1024 * 1024);
    const ws = new FakeSocket();
    const other = new FakeSocket();
    con.attach(ws as unknown as WebSocket, 'rw', true, undefined, undefined);
    await slow.asked;
    con.attach(other as unknown as WebSocket, 'ro', true, 0, undefined);
    for (let i = 0; i < 30; i++) pty.emit(lines(i * 1000, 1000));
    expect(ws.closedWith).toBe(4008);
    // The other viewer (resumed, so no snapshot) is not affected.
    expect(other.closedWith).toBeUndefined();
    slow.release();
    await settle();
    expect(ws.frames.filter((f) => f[0] === Channel.stdout)).toHaveLength(0);
  });
});

describe('the echo path and floods', () => {
  /** A mirror that only records when it was written, against the viewer's frames. */
  function recordingMirror(ws: FakeSocket, seen: number[]): (ring: ByteRing, size: { cols: number; rows: number }) => ScreenSource {
    return () => ({
      write: () => void seen.push(ws.frames.length),
      resize: () => {},
      close: () => {},
      snapshot: () => Promise.reject(new Error('not in this test')),
    });
  }

  it('sends output after a pause (an echo) to the viewer at once, before the mirror is written', () => {
    const pty = new FakePty();
    const ws = new FakeSocket();
    const seen: number[] = [];
    const con = makeConsole(pty, recordingMirror(ws, seen), 8 * 1024 * 1024);
    con.attach(ws as unknown as WebSocket, 'rw', true, 0, undefined);
    const before = ws.frames.length;
    pty.emit(Buffer.from('q'));
    // Synchronously: the frame is out before output() returns, and the mirror came after it.
    expect(ws.frames.length).toBe(before + 1);
    expect(ws.frames.at(-1)!.subarray(1).toString()).toBe('q');
    expect(seen).toEqual([before + 1]);
    // An echo right after another one is no flood: it goes at once too.
    pty.emit(Buffer.from('w'));
    expect(ws.frames.length).toBe(before + 2);
    expect(ws.frames.at(-1)!.subarray(1).toString()).toBe('w');
  });

  it('coalesces a flood of pty reads into fewer frames, every byte once and in order', async () => {
    const pty = new FakePty();
    const ws = new FakeSocket();
    const con = makeConsole(pty, recordingMirror(ws, []), 8 * 1024 * 1024);
    con.attach(ws as unknown as WebSocket, 'rw', true, 0, undefined);
    // Reads the size of a full pty read (4 KiB), back to back.
    const chunks = Array.from({ length: 200 }, (_, i) => lines(i * 70, 70));
    for (const c of chunks) pty.emit(c);
    await until('the flood', () => ws.stdout().length === Buffer.concat(chunks).length);
    const frames = ws.frames.filter((f) => f[0] === Channel.stdout);
    expect(frames.length).toBeLessThan(chunks.length);
    // No frame is bigger than the coalescing bound plus one read.
    expect(Math.max(...frames.map((f) => f.length - 1))).toBeLessThanOrEqual(64 * 1024 + chunks[0]!.length);
    expect(ws.stdout().equals(Buffer.concat(chunks))).toBe(true);
  });
});
