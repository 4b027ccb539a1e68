// A drain's check that another node shares root's secrets with the values
// this node holds (src/fleet/sharedHolders.ts): the MAC each node answers,
// from a real secret store, and how two answers compare.
import { describe, expect, it } from 'vitest';
import { SecretStore } from '../../src/secrets/store.js';
import { sameShared, sharedMac, sharedMacs } from '../../src/fleet/sharedHolders.js';
import { sessionDb } from './fixtures/sessionDb.js';

const NONCE = 'ab'.repeat(16);
const refs = [
  { owner_uid: 0, name: 'npm' },
  { owner_uid: 0, name: 'GH_TOKEN' },
  { owner_uid: 0, name: 'pypi' },
];

describe('sharedMacs', () => {
  const t = sessionDb('shared-holders');

  it("answers only root's secrets shared here: one held unshared, or not held, is left out", () => {
    const store = SecretStore.open(t.db, t.dir);
    store.set(0, 'npm', Buffer.from('npm-1'), true);
    store.set(0, 'GH_TOKEN', Buffer.from('gh-1'), false); // root's own, not shared: the session could not use it here
    const got = sharedMacs((o, n) => store.get(o, n), refs, NONCE, 'c', 'b');
    expect([...got.keys()]).toEqual(['0:npm']);
    expect(got.get('0:npm')).toBe(sharedMac(Buffer.from('npm-1'), 'c', 'b', '0:npm', NONCE));
  });

  it('binds each MAC to its value, both nodes, the secret and the nonce: no answer serves another question', () => {
    const base = sharedMac(Buffer.from('v'), 'c', 'b', '0:npm', NONCE);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(sharedMac(Buffer.from('v'), 'c', 'b', '0:npm', NONCE)).toBe(base);
    for (const other of [
      sharedMac(Buffer.from('w'), 'c', 'b', '0:npm', NONCE),
      sharedMac(Buffer.from('v'), 'a', 'b', '0:npm', NONCE),
      sharedMac(Buffer.from('v'), 'c', 'a', '0:npm', NONCE),
      sharedMac(Buffer.from('v'), 'c', 'b', '0:pypi', NONCE),
      sharedMac(Buffer.from('v'), 'c', 'b', '0:npm', 'cd'.repeat(16)),
      // Not the bare HMAC of the nonce: the message is labelled.
      sharedMac(Buffer.from('v'), '', '', '', NONCE),
    ]) {
      expect(other).not.toBe(base);
    }
  });
});

describe('sameShared', () => {
  const mine = new Map([
    ['0:npm', 'a'.repeat(64)],
    ['0:GH_TOKEN', 'b'.repeat(64)],
  ]);
  const two = refs.slice(0, 2);
  it('matches only a node holding every one with the same MAC, saying what the first it lacks is', () => {
    expect(sameShared(two, mine, new Map(mine))).toBeUndefined();
    expect(sameShared(two, mine, new Map([['0:npm', 'a'.repeat(64)]]))).toBe('does not share 0:GH_TOKEN');
    expect(sameShared(two, mine, new Map([...mine, ['0:npm', 'c'.repeat(64)]]))).toBe('shares 0:npm with another value');
    expect(sameShared(two, mine, new Map([...mine, ['0:npm', 'short']]))).toBe('shares 0:npm with another value');
    expect(sameShared(refs, mine, new Map([...mine, ['0:pypi', 'd'.repeat(64)]]))).toBe('shares 0:pypi with another value');
  });
});
