// The fleet's watched copy of its etcd keys (src/fleet/watched.ts), against
// a real etcd: a read answers from the copy and sees every write committed
// before it (the revision barrier), and reads etcd itself when the copy
// cannot catch up (a write outside /enclave/ moves etcd's revision without
// an event the watch sees) or is not live.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { isRoot } from './harness.js';
import { startEtcdCluster, type EtcdCluster } from '../../stress/etcdCluster.js';
import { endFleetRun, fleetRunDir } from './fleetRun.js';
import { WatchedFleet } from '../../src/fleet/watched.js';
import { prefix } from '../../src/fleet/keys.js';

describe.skipIf(!isRoot)('fleet: the watched copy of etcd', () => {
  let dir: string;
  let etcd: EtcdCluster;
  let writer: Etcd3;
  let reader: Etcd3;
  let copy: WatchedFleet;

  beforeAll(async () => {
    dir = fleetRunDir('watch');
    etcd = await startEtcdCluster(dir, { size: 1, salt: 9 });
    writer = new Etcd3({ hosts: etcd.endpoints });
    reader = new Etcd3({ hosts: etcd.endpoints });
    await writer.put(`${prefix.members}before`).value('{"a":1}');
    copy = new WatchedFleet(reader, pino({ level: 'silent' }));
    copy.start();
    const deadline = Date.now() + 10_000;
    // Live once a read is answered from the copy.
    while (copy.served.copy === 0) {
      if (Date.now() > deadline) throw new Error('the copy never went live');
      await copy.keys(prefix.members);
      await new Promise((r) => setTimeout(r, 50));
    }
  }, 60_000);

  afterAll(async () => {
    await endFleetRun(dir, etcd, [], undefined, async () => {
      copy?.close();
      reader?.close();
      writer?.close();
    });
  }, 60_000);

  it('answers from the copy, which holds what was there before it started', async () => {
    const before = copy.served.copy;
    const [members] = await copy.keys(prefix.members);
    expect(members!.get(`${prefix.members}before`)).toBe('{"a":1}');
    expect(copy.served.copy).toBe(before + 1);
  });

  it('sees every write committed before a read, at once, from the copy', async () => {
    const before = { ...copy.served };
    for (let i = 0; i < 100; i++) {
      const k = `${prefix.pending}s-${String(i).padStart(10, '0')}`;
      await writer.put(k).value(String(i));
      const [pending, alive] = await copy.keys(prefix.pending, prefix.alive);
      expect(pending!.get(k)).toBe(String(i));
      expect(alive!.size).toBe(0);
      await writer.delete().key(k);
      expect((await copy.keys(prefix.pending))[0]!.has(k)).toBe(false);
    }
    expect(copy.served.copy - before.copy).toBe(200);
    expect(copy.served.etcd).toBe(before.etcd);
  });

  it('reads etcd itself when a write the watch cannot see moved the revision, and the copy again after the next write it sees', async () => {
    await writer.put('/elsewhere/key').value('x');
    const before = { ...copy.served };
    const [members] = await copy.keys(prefix.members);
    expect(members!.get(`${prefix.members}before`)).toBe('{"a":1}');
    expect(copy.served.etcd).toBe(before.etcd + 1);
    await writer.put(`${prefix.members}after`).value('{"b":2}');
    const [again] = await copy.keys(prefix.members);
    expect([...again!.keys()].sort()).toEqual([`${prefix.members}after`, `${prefix.members}before`]);
    expect(copy.served.copy).toBe(before.copy + 1);
  });

  it('reads etcd itself once closed', async () => {
    copy.close();
    const before = { ...copy.served };
    await writer.put(`${prefix.members}closed`).value('{}');
    const [members] = await copy.keys(prefix.members);
    expect(members!.has(`${prefix.members}closed`)).toBe(true);
    expect(copy.served).toEqual({ copy: before.copy, etcd: before.etcd + 1 });
  });
});
