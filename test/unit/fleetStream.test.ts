// The fleet event stream's inputs: a reader's place (Last-Event-ID: each
// node's id, or one number for this node), and another node's server-sent
// events read in pieces of any size, bounded.
import { describe, expect, it, vi } from 'vitest';
import { pino } from 'pino';
import { cursorText, FleetStream, parseCursor } from '../../src/daemon/fleetStream.js';
import type { EventFeed } from '../../src/daemon/feed.js';
import { SseOut } from '../../src/daemon/sse.js';
import type { ServerResponse } from 'node:http';
import type { Reach } from '../../src/fleet/reach.js';
import { SseReader } from '../../src/client/sseReader.js';

describe("a reader's place in every node's trail", () => {
  it('reads NODE:ID,... and a plain number (this node), and writes it back sorted', () => {
    expect(parseCursor('12', 'node-a')).toEqual(new Map([['node-a', 12]]));
    const c = parseCursor('node-c:7,node-a:120,nb:0', 'node-a')!;
    expect(c).toEqual(new Map([['node-c', 7], ['node-a', 120], ['nb', 0]]));
    expect(cursorText(c)).toBe('nb:0,node-a:120,node-c:7');
    expect(parseCursor(cursorText(c), 'x')).toEqual(c);
  });

  it('refuses anything else', () => {
    const many = Array.from({ length: 257 }, (_, i) => `n${i}:1`).join(',');
    for (const bad of ['', 'a:1;rm', 'A:1', 'a:', ':1', 'a:1,', 'a:-1', 'a:1.5', '1e3', `a:${'9'.repeat(16)}`, `${'a'.repeat(64)}:1`, many, ' a:1']) {
      expect(parseCursor(bad, 'self'), bad.slice(0, 40)).toBeUndefined();
    }
    expect(parseCursor(Array.from({ length: 256 }, (_, i) => `n${i}:1`).join(','), 'self')?.size).toBe(256);
  });
});

describe("another node's events, read in pieces", () => {
  const read = (pieces: string[]) => {
    const got: [string, string, string | undefined][] = [];
    const r = new SseReader((name, data, id) => got.push([name, data, id]));
    for (const p of pieces) r.push(p);
    return got;
  };

  it('gives each event whole, however it was cut, with the last id the stream set', () => {
    const text = 'retry: 2000\n\nevent: sessions\nid: 4\ndata: {"sessions":[]}\n\n: keep-alive\n\nevent: session\ndata: {"a":\ndata: 1}\n\nevent: audit\r\nid: 5\r\ndata: {}\r\n\r\n';
    const want: [string, string, string | undefined][] = [
      ['sessions', '{"sessions":[]}', '4'],
      ['session', '{"a":\n1}', '4'],
      ['audit', '{}', '5'],
    ];
    expect(read([text])).toEqual(want);
    // Every cut, and one byte at a time.
    for (let i = 1; i < text.length; i++) expect(read([text.slice(0, i), text.slice(i)])).toEqual(want);
    expect(read([...text])).toEqual(want);
  });

  it('takes a large event in small pieces whole', () => {
    const got: string[] = [];
    const r = new SseReader((_, data) => got.push(data));
    const big = `data: ${'y'.repeat(16 * 1024 * 1024)}\n\n`;
    for (let i = 0; i < big.length; i += 16 * 1024) r.push(big.slice(i, i + 16 * 1024));
    expect(got.map((d) => d.length)).toEqual([16 * 1024 * 1024]);
  });

  it('ends a stream whose line or event grows past the bound, without holding it', () => {
    const r = new SseReader(() => undefined);
    const mib = 'x'.repeat(1024 * 1024);
    expect(() => {
      for (let i = 0; i < 40; i++) r.push(mib);
    }).toThrow(/a line of more than/);
    const d = new SseReader(() => undefined);
    expect(() => {
      for (let i = 0; i < 40; i++) d.push(`data: ${mib}\n`);
    }).toThrow(/an event of more than/);
  });
});

describe('a fleet stream and the nodes it asks', () => {
  /** A stream whose other nodes are `live` (asked through `request`), and its reader. */
  const setUp = (live: () => Promise<Map<string, string>>, request: () => never) => {
    const closers: Array<() => void> = [];
    const sent: Array<[string, unknown]> = [];
    const out = { send: (e: string, d: unknown) => sent.push([e, d]), keepAlive: () => undefined, startsHere: () => undefined, gone: false, onClose: (f: () => void) => closers.push(f), end: () => closers.forEach((f) => f()) };
    const liveNodes = vi.fn(live);
    const reach = { liveNodes, client: { request } } as unknown as Reach;
    const feed = { attach: vi.fn() } as unknown as EventFeed;
    const caller = { uid: 0, gids: [], pid: null, via: 'socket' as const };
    const s = new FleetStream({ self: 'node-a', reach, feed, visible: () => true, sessions: async () => [], log: pino({ level: 'silent' }) }, { caller, of: undefined, reads: false }, out as unknown as SseOut, new Map());
    return { s, liveNodes, sent, leave: () => closers.forEach((f) => f()) };
  };

  it('lets go of everything when its reader leaves while it starts: no timer asks the fleet again', async () => {
    vi.useFakeTimers();
    try {
      let answer: (m: Map<string, string>) => void = () => undefined;
      const t = setUp(() => new Promise((r) => (answer = r)), () => {
        throw new Error('not asked');
      });
      const started = t.s.start();
      t.leave(); // gone before the fleet answered
      answer(new Map());
      await started;
      await vi.advanceTimersByTimeAsync(60_000);
      expect(t.liveNodes).toHaveBeenCalledTimes(1);
      expect(t.sent).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('skips a node it cannot ask (no node-to-node endpoint) without failing, and asks it again at the next look', async () => {
    vi.useFakeTimers();
    try {
      const request = vi.fn(() => {
        throw new Error('node node-x advertises no node-to-node endpoint');
      });
      const t = setUp(async () => new Map([['node-x', '/run/enclave/enclave.sock']]), request);
      await t.s.start();
      expect(t.sent.map(([e]) => e)).toEqual(['sessions']);
      await vi.advanceTimersByTimeAsync(25_000);
      expect(request.mock.calls.length).toBe(3); // at the start and at each look (10 s)
      t.leave();
      await vi.advanceTimersByTimeAsync(30_000);
      expect(request.mock.calls.length).toBe(3);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('an event stream reply', () => {
  /** A reply that holds what is written (nothing is sent). */
  const reply = () => {
    const r = { writableLength: 0, destroyed: false, writableEnded: false, on: () => r, once: () => r, writeHead: () => r, write: (t: string) => ((r.writableLength += Buffer.byteLength(t)), true), destroy: () => void (r.destroyed = true), end: () => undefined };
    return r;
  };

  it('takes a first list larger than the backlog bound, and bounds what comes after it', () => {
    const r = reply();
    const out = new SseOut(r as unknown as ServerResponse, pino({ level: 'silent' }));
    out.send('sessions', { sessions: ['x'.repeat(2 * 1024 * 1024)] }, 7);
    out.send('session', { id: 's-1' });
    expect(r.destroyed).toBe(false);
    for (let i = 0; i < 40 && !r.destroyed; i++) out.send('audit', { detail: 'y'.repeat(64 * 1024) }, i);
    expect(r.destroyed).toBe(true);
  });
});
