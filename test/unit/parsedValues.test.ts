// Values of the fleet's keys parsed once each (src/fleet/parsedValues.ts):
// the same string gives the object parsed before (frozen, shared by every
// reader), a new string is parsed again, one that does not check throws each
// time as parseValue does, and keys gone from etcd are forgotten.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ParsedValues } from '../../src/fleet/parsedValues.js';

describe('ParsedValues', () => {
  const values = () => new ParsedValues(z.object({ n: z.number(), tags: z.array(z.string()) }).strict());

  it('parses a value once while it is the same string, again when it changes, and freezes what it keeps', () => {
    const p = values();
    const a = p.get('/k/1', '{"n":1,"tags":["x"]}');
    expect(p.get('/k/1', '{"n":1,"tags":["x"]}')).toBe(a);
    expect(Object.isFrozen(a) && Object.isFrozen(a.tags)).toBe(true);
    const b = p.get('/k/1', '{"n":2,"tags":[]}');
    expect(b).not.toBe(a);
    expect(b).toEqual({ n: 2, tags: [] });
    // The same text under another key is a value of its own.
    expect(p.get('/k/2', '{"n":2,"tags":[]}')).not.toBe(b);
  });

  it('throws for a value that does not check, naming the key, every time', () => {
    const p = values();
    for (let i = 0; i < 2; i++) {
      expect(() => p.get('/k/bad', '{"n":"one","tags":[]}')).toThrow(/etcd key \/k\/bad: n:/);
      expect(() => p.get('/k/bad', 'not json')).toThrow('etcd key /k/bad: not JSON');
    }
  });

  it('forgets the keys no longer present: a key back with the same text is parsed again', () => {
    const p = values();
    const a = p.get('/k/1', '{"n":1,"tags":[]}');
    p.get('/k/2', '{"n":2,"tags":[]}');
    p.keepOnly(new Map([['/k/2', '']]));
    expect(p.get('/k/1', '{"n":1,"tags":[]}')).not.toBe(a);
  });
});
