// The fleet's compaction of etcd's history (src/fleet/compactor.ts) against
// a real etcd (one member of Debian's etcd-server): two nodes' compactors,
// one winner a round, each round compacting to the revision the winner read
// a round before; what is newer stays readable.
import { describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { COMPACTION_KEY, Compactor } from '../../src/fleet/compactor.js';
import { oneEtcd } from './fixtures/etcd.js';

describe("the fleet's compaction of etcd", () => {
  const e = oneEtcd('compact', 17);
  const log = pino({ level: 'silent' });

  it('compacts once a round, to the revision of the round before, whichever node wins the round', async () => {
    const etcd = e.client;
    const other = new Etcd3({ hosts: e.endpoints });
    try {
      const a = new Compactor(etcd, 0, log);
      const b = new Compactor(other, 0, log);
      const rev = async () => Number((await etcd.get(COMPACTION_KEY).exec()).header.revision);
      await etcd.put('/enclave/x').value('1');
      // First rounds: a wins (nothing to compact to yet), b loses it.
      expect(await a.round()).toBeUndefined();
      expect(await b.round()).toBeUndefined();
      const roundOne = Number((await etcd.get(COMPACTION_KEY).exec()).kvs[0]!.mod_revision);
      for (let i = 2; i < 6; i++) await etcd.put('/enclave/x').value(String(i));
      // b first this time: it saw the key's version a made, so it wins, and compacts to the revision it read the
      // round before (a's swap: nothing was written between).
      const won = await b.round();
      expect(won).toBe(roundOne);
      expect(await a.round()).toBeUndefined();
      // History before the compacted revision is gone; from it on it stays (watches resume there).
      await expect(etcd.get('/enclave/x').revision(String(roundOne - 1)).string()).rejects.toThrow(/compacted/);
      expect(await etcd.get('/enclave/x').revision(String(roundOne)).string()).toBe('1');
      expect(await etcd.get('/enclave/x').string()).toBe('5');
      // Compacted further meanwhile (etcd's own --auto-compaction): the next round's winner has nothing to do, and does not fail.
      await etcd.kv.compact({ revision: String(await rev()) });
      expect(await a.round()).toBeUndefined();
      expect(Number((await etcd.get(COMPACTION_KEY).exec()).kvs[0]!.version)).toBe(3);
    } finally {
      other.close();
    }
  });
});
