import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ByteRing } from '../../src/terminal/ring.js';

describe('ByteRing', () => {
  it('returns exactly the bytes since an offset it still holds', () => {
    const r = new ByteRing(16);
    r.write(Buffer.from('hello '));
    r.write(Buffer.from('world'));
    expect(r.end).toBe(11);
    expect(r.since(6)!.toString()).toBe('world');
    expect(r.since(11)!.length).toBe(0);
    expect(r.since(12)).toBeUndefined();
  });

  it('wraps: keeps the last capacity bytes, forgets older offsets', () => {
    const r = new ByteRing(8);
    r.write(Buffer.from('abcdefgh'));
    r.write(Buffer.from('ijk'));
    expect(r.start).toBe(3);
    expect(r.since(3)!.toString()).toBe('defghijk');
    expect(r.since(2)).toBeUndefined();
    r.write(Buffer.from('0123456789')); // larger than the ring
    expect(r.since(r.start)!.toString()).toBe('23456789');
    expect(r.end).toBe(21);
  });

  it('matches a plain concatenation under random writes', () => {
    const r = new ByteRing(1000);
    const all: Buffer[] = [];
    for (let i = 0; i < 500; i++) {
      const chunk = randomBytes(Math.floor(Math.random() * 300));
      r.write(chunk);
      all.push(chunk);
      const whole = Buffer.concat(all);
      const from = Math.max(r.start, whole.length - Math.floor(Math.random() * 1200));
      expect(Buffer.compare(r.since(from)!, whole.subarray(from))).toBe(0);
    }
  });
});
