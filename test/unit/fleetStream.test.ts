// The fleet event stream's inputs: a reader's place (Last-Event-ID: each
// node's id, or one number for this node), and another node's server-sent
// events read in pieces of any size, bounded.
import { describe, expect, it } from 'vitest';
import { cursorText, parseCursor } from '../../src/daemon/fleetStream.js';
import { SseReader } from '../../src/fleet/sseReader.js';

describe("a reader's place in every node's trail", () => {
  it('reads NODE:ID,... and a plain number (this node), and writes it back sorted', () => {
    expect(parseCursor('12', 'node-a')).toEqual(new Map([['node-a', 12]]));
    const c = parseCursor('node-c:7,node-a:120,nb:0', 'node-a')!;
    expect(c).toEqual(new Map([['node-c', 7], ['node-a', 120], ['nb', 0]]));
    expect(cursorText(c)).toBe('nb:0,node-a:120,node-c:7');
    expect(parseCursor(cursorText(c), 'x')).toEqual(c);
  });

  it('refuses anything else', () => {
    const many = Array.from({ length: 65 }, (_, i) => `n${i}:1`).join(',');
    for (const bad of ['', 'a:1;rm', 'A:1', 'a:', ':1', 'a:1,', 'a:-1', 'a:1.5', '1e3', `a:${'9'.repeat(16)}`, `${'a'.repeat(64)}:1`, many, ' a:1']) {
      expect(parseCursor(bad, 'self'), bad.slice(0, 40)).toBeUndefined();
    }
    expect(parseCursor(Array.from({ length: 64 }, (_, i) => `n${i}:1`).join(','), 'self')?.size).toBe(64);
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
