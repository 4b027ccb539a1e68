// The fleet's etcd layer against a real etcd. A write the client re-sends
// (its answer lost to a leader change, src/fleet/etcd.ts) whose first send
// applied is taken as done: a booking, a name claim. The watched copy of the
// fleet's keys (src/fleet/watched.ts): a read answers from the copy and sees every write committed
// before it (the revision barrier), and reads etcd itself when the copy
// cannot catch up (a write outside /enclave/ moves etcd's revision without
// an event the watch sees) or is not live; a dropped watch loads it again.
// A node's list written to etcd (src/fleet/listPublisher.ts): only what
// changed, in transactions etcd takes, the listing once every row is there;
// read back after a restart; a call made during a write waits for the next.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventEmitter } from 'node:events';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import { isRoot } from './harness.js';
import { startEtcdCluster, type EtcdCluster } from '../../stress/etcdCluster.js';
import { endFleetRun, fleetRunDir } from './fleetRun.js';
import { WatchedFleet } from '../../src/fleet/watched.js';
import { key, PREFIX, prefix, type Desired } from '../../src/fleet/keys.js';
import { book, type NodeView } from '../../src/fleet/placement.js';
import { claimName } from '../../src/fleet/names.js';
import { awaitReport } from '../../src/fleet/report.js';
import { ListPublisher, type ListSource } from '../../src/fleet/listPublisher.js';

describe.skipIf(!isRoot)('fleet: its etcd layer', () => {
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
    // Each read from the copy unless it lagged past its 200 ms (a loaded machine): nearly all.
    expect(copy.served.copy - before.copy + (copy.served.etcd - before.etcd)).toBe(200);
    expect(copy.served.copy - before.copy).toBeGreaterThanOrEqual(180);
  });

  it("asks etcd's revision once for the reads asked in one turn of the event loop, and anew in the next", async () => {
    const get = reader.get.bind(reader);
    let asked = 0;
    reader.get = ((k: string) => (k === `${PREFIX}revision` && asked++, get(k))) as typeof reader.get;
    try {
      const k = `${prefix.pending}s-turn`;
      await writer.put(k).value('1');
      // A list's two reads (its members, its pending sessions): one revision read, and each sees the write before it.
      const [a, b] = await Promise.all([copy.keys(prefix.pending), copy.keys(prefix.pending, prefix.alive)]);
      expect(asked).toBe(1);
      expect(a[0]!.get(k)).toBe('1');
      expect(b[0]!.get(k)).toBe('1');
      // A read in a later turn asks anew, and sees the write made after the first.
      await writer.put(k).value('2');
      expect((await copy.keys(prefix.pending))[0]!.get(k)).toBe('2');
      expect(asked).toBe(2);
      await writer.delete().key(k);
    } finally {
      reader.get = get;
    }
  });

  it('loads itself again when its watch drops, missing no write made meanwhile', async () => {
    // The etcd client resumes a dropped watch by itself, from a revision that may skip events: the copy does not let it.
    const watcher = (copy as unknown as { watcher: EventEmitter }).watcher;
    watcher.emit('disconnected', new Error('dropped by the test'));
    await writer.put(`${prefix.members}while-down`).value('{"c":3}');
    const atOnce = { ...copy.served };
    expect((await copy.keys(prefix.members))[0]!.get(`${prefix.members}while-down`)).toBe('{"c":3}');
    expect(copy.served.etcd).toBe(atOnce.etcd + 1);
    // Back from the copy once it is loaded again (after 1 s), with the write made while it was down.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const before = copy.served.copy;
      const [members] = await copy.keys(prefix.members);
      if (copy.served.copy === before + 1) {
        expect(members!.get(`${prefix.members}while-down`)).toBe('{"c":3}');
        break;
      }
      if (Date.now() > deadline) throw new Error('the copy was not loaded again');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((copy as unknown as { watcher: EventEmitter }).watcher).not.toBe(watcher);
    await writer.delete().key(`${prefix.members}while-down`);
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

  it('takes a booking already there as its own (the re-sent transaction), and refuses one another booking beat', async () => {
    const at = new Date().toISOString();
    const member = { name: 'nb', endpoint: '10.0.0.1:7440', capacity: { slots: 4, memory_mb: 4096, disk_mb: 4096 }, registered_at: at };
    const view: NodeView = { member, alive: true, cordoned: false, alloc: { sessions: {} }, allocRev: '0' };
    const d = (id: string): Desired => ({ id, owner_uid: 0, owner_gids: [], request: {}, memory_mb: 16, entry: 'nb', placed_at: at });
    // A member (a booking compares its record: none is placed on a node removed since it was read).
    await writer.put(key.member('nb')).value(JSON.stringify(member));
    expect(await book(writer, view, d('s-aaaaaaaaaa'))).toBe(true);
    // The same transaction again, with the allocation revision it was read at, as the client re-sends it.
    expect(await book(writer, view, d('s-aaaaaaaaaa'))).toBe(true);
    // Another attempt for it (its own placed_at), or another session, booked with that stale view: refused.
    expect(await book(writer, view, { ...d('s-aaaaaaaaaa'), placed_at: new Date(Date.now() + 1000).toISOString() })).toBe(false);
    expect(await book(writer, view, d('s-bbbbbbbbbb'))).toBe(false);
    const alloc = JSON.parse((await writer.get(`${prefix.alloc}nb`).string())!) as { sessions: Record<string, unknown> };
    expect(Object.keys(alloc.sessions)).toEqual(['s-aaaaaaaaaa']);
    await writer.delete().prefix('/enclave/desired/nb/');
    await writer.delete().key(`${prefix.alloc}nb`);
    await writer.delete().key(key.member('nb'));
  });

  it('takes its own name claim as claimed, and refuses another create the name', async () => {
    await claimName(writer, 0, 'web', 's-aaaaaaaaaa');
    await expect(claimName(writer, 0, 'web', 's-aaaaaaaaaa')).resolves.toBeUndefined();
    await expect(claimName(writer, 0, 'web', 's-bbbbbbbbbb')).rejects.toThrow(/a session named 'web' already exists in the fleet \(s-aaaaaaaaaa\)/);
    await writer.delete().prefix('/enclave/names/');
  });

  it('wakes a create waiting for its session\'s report at the report\'s write, reading etcd only every 250 ms meanwhile', async () => {
    let reads = 0;
    // An etcd whose reads are counted and never find the report: only the copy's watch can bring it.
    const blind = { get: () => (reads++, { string: () => Promise.resolve(null) }) } as unknown as Etcd3;
    const id = 's-cccccccccc';
    const waiting = awaitReport(blind, id, (s) => s.state === 'running', 10_000, copy);
    await new Promise((r) => setTimeout(r, 1000));
    await writer.put(`${prefix.status}${id}`).value(JSON.stringify({ id, node: 'nb', state: 'running' }));
    expect(await waiting).toEqual({ id, node: 'nb', state: 'running' });
    // About one read per 250 ms of the second waited (the poll without the copy: one per 5 ms at first).
    expect(reads).toBeGreaterThanOrEqual(1);
    expect(reads).toBeLessThanOrEqual(8);
    await writer.delete().key(`${prefix.status}${id}`);
  });

  /** A node's list as a publisher reads it: rows to change, a tag moved by hand, a registration. */
  class Source implements ListSource {
    rows = new Map<string, { id: string; state: string }>();
    version = 0;
    registered: string | undefined = 'r1';
    constructor(n: number) {
      for (let i = 0; i < n; i++) this.set(`s-${String(i).padStart(10, '0')}`, 'running');
    }
    set(id: string, state: string): void {
      this.rows.set(id, { id, state });
      this.version++;
    }
    tag(): string {
      return String(this.version);
    }
    sessions(): Array<{ id: string; json: string }> {
      return [...this.rows.values()].map((r) => ({ id: r.id, json: JSON.stringify(r) }));
    }
    registration(): string | undefined {
      return this.registered;
    }
  }
  const silent = pino({ level: 'silent' });
  /** What etcd holds of `node`'s list: each row by id, and its listing. */
  const heldOf = async (node: string) => {
    const rows = await writer.getAll().prefix(`${PREFIX}listed/${node}/`).strings();
    const listing = await writer.get(`${PREFIX}listing/${node}`).string();
    return { rows: new Map(Object.entries(rows).map(([k, v]) => [k.slice(`${PREFIX}listed/${node}/`.length), JSON.parse(v) as { id: string; state: string }])), listing: listing === null ? null : (JSON.parse(listing) as unknown) };
  };
  const revision = async () => Number((await writer.get(`${PREFIX}revision`).exec()).header.revision);
  type Commit = ReturnType<ReturnType<Etcd3['if']>['commit']>;
  /** The writer, but each transaction's commit goes through `around` (an answer lost after it applied, a refusal). */
  const withCommits = (around: (commit: () => Commit) => Commit): Etcd3 => {
    const c = Object.create(writer) as Etcd3;
    c.if = ((...a: Parameters<Etcd3['if']>) => {
      const txn = writer.if(...a);
      const commit = txn.commit.bind(txn);
      txn.commit = () => around(commit);
      return txn;
    }) as Etcd3['if'];
    return c;
  };

  it("writes a node's list: every row, in transactions etcd takes (250 rows), the listing once all are there; then only what changed, and nothing while the tag stands", async () => {
    const src = new Source(250);
    const p = new ListPublisher(writer, 'pub1', src, silent);
    await p.settled();
    expect(p.counts).toEqual({ rows: 250, deleted: 0, failed: 0 });
    let held = await heldOf('pub1');
    expect(held.rows.size).toBe(250);
    expect(held.rows.get('s-0000000249')).toEqual({ id: 's-0000000249', state: 'running' });
    expect(held.listing).toEqual({ registered_at: 'r1' });
    // The tag stands: no etcd write at all.
    const rev = await revision();
    await p.settled();
    expect(await revision()).toBe(rev);
    // One row changed, one gone, one new: three operations; a tag moved with nothing changed: none.
    src.set('s-0000000007', 'stopped');
    src.rows.delete('s-0000000008');
    src.set('s-new0000000', 'creating');
    await p.settled();
    expect(p.counts).toEqual({ rows: 252, deleted: 1, failed: 0 });
    src.version++;
    await p.settled();
    expect(p.counts).toEqual({ rows: 252, deleted: 1, failed: 0 });
    held = await heldOf('pub1');
    expect(held.rows.size).toBe(250);
    expect(held.rows.get('s-0000000007')?.state).toBe('stopped');
    expect(held.rows.has('s-0000000008')).toBe(false);
    expect(held.rows.get('s-new0000000')?.state).toBe('creating');
    // Stopping: the listing goes (no node lists this one from etcd once it stops answering), the rows stay.
    await p.close();
    held = await heldOf('pub1');
    expect(held.listing).toBeNull();
    expect(held.rows.size).toBe(250);
  });

  it('reads back what an earlier daemon wrote: after a restart only what changed is written, and the listing names the new registration; without one nothing is written', async () => {
    const src = new Source(120);
    const first = new ListPublisher(writer, 'pub2', src, silent);
    await first.settled();
    await first.close();
    src.set('s-0000000003', 'stopped');
    src.registered = 'r2';
    // Its own client, closed below as a daemon killed would leave it: its listing's lease not revoked.
    const killed = new Etcd3({ hosts: etcd.endpoints });
    const again = new ListPublisher(killed, 'pub2', src, silent);
    await again.settled();
    expect(again.counts).toEqual({ rows: 1, deleted: 0, failed: 0 });
    const held = await heldOf('pub2');
    expect(held.rows.size).toBe(120);
    expect(held.rows.get('s-0000000003')?.state).toBe('stopped');
    expect(held.listing).toEqual({ registered_at: 'r2' });
    // Registered again (its lease was lost): the listing names the new registration, no row is written again.
    src.registered = 'r3';
    await again.settled();
    expect(again.counts.rows).toBe(1);
    expect((await heldOf('pub2')).listing).toEqual({ registered_at: 'r3' });
    // Starting again, not registered yet (or its lease lost): nothing written, and the listing an earlier
    // process left goes before a call is answered, so the other nodes ask this one meanwhile.
    killed.close();
    src.registered = undefined;
    const starting = new ListPublisher(writer, 'pub2', src, silent);
    src.set('s-0000000004', 'stopped');
    await starting.settled();
    expect(starting.counts).toEqual({ rows: 0, deleted: 0, failed: 1 });
    const left = await heldOf('pub2');
    expect(left.listing).toBeNull();
    expect(left.rows.get('s-0000000004')?.state).toBe('running');
    src.registered = 'r4';
    // Registered: a tick's run writes it all again (a call meanwhile is answered at once: no listing is there).
    await starting.settled();
    expect(starting.counts.rows).toBe(0);
    await starting.settled(true);
    expect(starting.counts.rows).toBe(1);
    expect((await heldOf('pub2')).listing).toEqual({ registered_at: 'r4' });
    await starting.close();
  });

  it('answers a call made while a write is under way once the next write, which has its change, is done; calls meanwhile share it', async () => {
    const src = new Source(5);
    const p = new ListPublisher(writer, 'pub4', src, silent);
    // A change made (and its call's wait asked for) just after the first write read the list: not in that write.
    let next: Promise<void> | undefined;
    let shared = false;
    let reads = 0;
    const read = src.sessions.bind(src);
    src.sessions = () => {
      const rows = read();
      reads++;
      if (!next) {
        src.set('s-0000000001', 'stopped');
        next = p.settled();
        shared = p.settled() === next;
      }
      return rows;
    };
    const first = p.settled();
    await first;
    expect(next).toBeDefined();
    expect(next).not.toBe(first);
    expect(shared).toBe(true);
    // Resolved only after a write that read the list again, with the change.
    let readsWhenNext = 0;
    await next!.then(() => (readsWhenNext = reads));
    expect(readsWhenNext).toBe(2);
    expect((await heldOf('pub4')).rows.get('s-0000000001')?.state).toBe('stopped');
    await p.close();
  });

  it('answers a call whose write failed (its answer lost after etcd applied it) once the listing is gone; the next write reads back and writes the listing again', async () => {
    const src = new Source(30);
    let fail = false;
    const flaky = withCommits(async (commit) => {
      const r = await commit();
      if (fail) {
        fail = false;
        throw new Error('the answer was lost');
      }
      return r;
    });
    const p = new ListPublisher(flaky, 'pub5', src, silent);
    await p.settled();
    expect((await heldOf('pub5')).listing).toEqual({ registered_at: 'r1' });
    fail = true;
    src.set('s-0000000002', 'stopped');
    await p.settled();
    expect(p.counts.failed).toBe(1);
    // Applied, but not known to be: no node lists this one from etcd until a run writes the whole list again.
    let held = await heldOf('pub5');
    expect(held.listing).toBeNull();
    expect(held.rows.get('s-0000000002')?.state).toBe('stopped');
    src.set('s-0000000003', 'stopped');
    await p.settled(true); // a tick's run
    held = await heldOf('pub5');
    expect(held.rows.size).toBe(30);
    expect(held.rows.get('s-0000000003')?.state).toBe('stopped');
    expect(held.listing).toEqual({ registered_at: 'r1' });
    // Read back after the failure: the row its lost answer had applied is not written again.
    expect(p.counts.rows).toBe(30 + 1);
    await p.close();
  });

  it("answers a call whose write failed only once the listing is deleted: tried again while etcd refuses, then at once while it is known gone", async () => {
    const src = new Source(4);
    let refuse = false;
    const refusing = withCommits((commit) => (refuse ? Promise.reject(new Error('etcdserver: request timed out')) : commit()));
    const p = new ListPublisher(refusing, 'pub7', src, silent);
    await p.settled();
    expect((await heldOf('pub7')).listing).toEqual({ registered_at: 'r1' });
    refuse = true;
    src.set('s-0000000001', 'stopped');
    let answered = false;
    const call = p.settled().then(() => (answered = true));
    await new Promise((r) => setTimeout(r, 700));
    // Its write refused, and the listing's delete too: the call waits, and other nodes still read the listing.
    expect(answered).toBe(false);
    expect((await heldOf('pub7')).listing).toEqual({ registered_at: 'r1' });
    refuse = false;
    await call;
    expect(p.counts.failed).toBe(1);
    expect((await heldOf('pub7')).listing).toBeNull();
    // Known gone, and nothing on its way: a call is answered at once (other nodes ask this one), even while refused.
    refuse = true;
    src.set('s-0000000002', 'stopped');
    const t = Date.now();
    await p.settled();
    expect(Date.now() - t).toBeLessThan(100);
    refuse = false;
    // The ticks write it all again.
    p.start();
    const deadline = Date.now() + 10_000;
    while ((await heldOf('pub7')).listing === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const held = await heldOf('pub7');
    expect(held.rows.get('s-0000000002')?.state).toBe('stopped');
    expect(held.listing).toEqual({ registered_at: 'r1' });
    await p.close();
  }, 30_000);

  it('deletes the listing with a delete alone when etcd is out of space (it takes no transaction with a put)', async () => {
    const src = new Source(3);
    let full = false;
    const nospace = withCommits((commit) => (full ? Promise.reject(new Error('etcdserver: mvcc: database space exceeded')) : commit()));
    const p = new ListPublisher(nospace, 'pub8', src, silent);
    await p.settled();
    full = true;
    src.set('s-0000000001', 'stopped');
    await p.settled();
    expect(p.counts.failed).toBe(1);
    expect((await heldOf('pub8')).listing).toBeNull();
    full = false;
    await p.close();
  });

  it('takes a transaction as its own when a resend of it, whose first send applied, finds the sequence moved by that send', async () => {
    const src = new Source(3);
    let resend = false;
    const twice = withCommits(async (commit) => {
      if (!resend) return commit();
      resend = false;
      await commit();
      return commit(); // the resend: its compare fails, the sequence holds the first send's token
    });
    const p = new ListPublisher(twice, 'pub9', src, silent);
    await p.settled();
    resend = true;
    src.set('s-0000000002', 'stopped');
    await p.settled();
    expect(p.counts.failed).toBe(0);
    const held = await heldOf('pub9');
    expect(held.rows.get('s-0000000002')?.state).toBe('stopped');
    expect(held.listing).toEqual({ registered_at: 'r1' });
    await p.close();
  });

  it("refuses a write after another moved the node's list sequence (a transaction applied late): the listing goes, and the next write reads back what is there", async () => {
    const src = new Source(10);
    const p = new ListPublisher(writer, 'pub6', src, silent);
    await p.settled();
    // A late transaction of an earlier run: an older row, and the sequence moved.
    await writer.if(`${PREFIX}listseq/pub6`, 'Version', '>', 0).then(writer.put(`${PREFIX}listed/pub6/s-0000000005`).value(JSON.stringify({ id: 's-0000000005', state: 'creating' })), writer.put(`${PREFIX}listseq/pub6`).value('')).commit();
    src.set('s-0000000006', 'stopped');
    await p.settled();
    expect(p.counts.failed).toBe(1);
    let held = await heldOf('pub6');
    expect(held.listing).toBeNull();
    // Its change was not written over the late one's; the next run reads back and puts both right.
    expect(held.rows.get('s-0000000006')?.state).toBe('running');
    src.version++;
    await p.settled(true); // a tick's run
    held = await heldOf('pub6');
    expect(held.rows.get('s-0000000005')?.state).toBe('running');
    expect(held.rows.get('s-0000000006')?.state).toBe('stopped');
    expect(held.listing).toEqual({ registered_at: 'r1' });
    await p.close();
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
