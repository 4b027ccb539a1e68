// The owning side of placement (src/fleet/worker.ts) against a real etcd
// (Debian's etcd-server, one member started here): a session placed on this
// node is made once, and its report reaches etcd even when etcd refuses the
// first write (as it does while a new leader is elected). A report lost
// there left the node that took the create waiting out create_timeout_ms
// for a session that ran (seen in CI when the burst test killed the leader).
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import type { Session } from '../../src/api/schemas.js';
import { Worker, type LocalNode } from '../../src/fleet/worker.js';
import { key, prefix, PREFIX, type Desired } from '../../src/fleet/keys.js';
import { WatchedFleet } from '../../src/fleet/watched.js';
import { ApiError } from '../../src/vocab/errors.js';
import type { SessionState } from '../../src/vocab/states.js';
import { oneEtcd } from './fixtures/etcd.js';

const NODE = 'w1';
const desired = (id: string): Desired => ({ id, owner_uid: 0, owner_gids: [], request: {}, memory_mb: 256, entry: 'w2', placed_at: '2026-01-01T00:00:00Z' });

/** This node's sessions as the worker sees them; `fail` makes a create fail. */
class FakeNode implements LocalNode {
  readonly states = new Map<string, SessionState>();
  /** Ended rows that are the old copy of a session a drain moved away. */
  readonly movedAway = new Set<string>();
  /** Rows from before this node joined a fleet (made for no placement). */
  readonly preFleet = new Set<string>();
  /** Each copy discarded, and the node it was marked as living on. */
  readonly discarded = new Map<string, string | undefined>();
  /** Rows of creates that failed here before they ever ran, with why (as the daemon's rows say). */
  readonly failedCreates = new Map<string, string>();
  creates = 0;
  constructor(
    private readonly fail = false,
    /** Held until this settles: a create that takes its time. */
    private readonly gate: Promise<void> = Promise.resolve(),
    /** A create that fails leaves its row, ended (failed after it was admitted), or still creating (its end deferred by a full disk). */
    private readonly failedRow: boolean | 'creating' = false,
  ) {}
  markPlaced(): number {
    return 0;
  }
  listTag(): string {
    return '0';
  }
  listed(): Array<{ id: string; json: string }> {
    return [];
  }
  stateOf(id: string): SessionState | undefined {
    return this.states.get(id);
  }
  /** As the daemon's: rows not ended only (an ended one's state is read alone, by stateOf). */
  sessionStates(): Map<string, { state: SessionState; memory_mb: number; placed: boolean }> {
    return new Map([...this.states].filter(([, state]) => state !== 'destroyed' && state !== 'failed').map(([id, state]) => [id, { state, memory_mb: 256, placed: !this.preFleet.has(id) }]));
  }
  async create(id: string): Promise<Session> {
    this.creates++;
    await this.gate;
    if (this.fail && this.failedRow) this.states.set(id, this.failedRow === 'creating' ? 'creating' : 'failed');
    if (this.fail) throw new ApiError('exhausted', 'no room here');
    this.states.set(id, 'running');
    return this.view(id)!;
  }
  async discard(id: string, livesOn?: string): Promise<void> {
    this.states.set(id, 'destroyed');
    this.discarded.set(id, livesOn);
    if (livesOn !== undefined) this.movedAway.add(id);
  }
  failedCreate(id: string): string | undefined {
    return this.failedCreates.get(id);
  }
  dropMovedAway(id: string): boolean {
    if (!this.movedAway.delete(id)) return false;
    this.states.delete(id);
    return true;
  }
  view(id: string): Session | undefined {
    // Only id and state are read back by these tests; the rest of a session does not matter here.
    return this.states.has(id) ? ({ id, state: this.states.get(id) } as unknown as Session) : undefined;
  }
}

/**
 * The client the worker uses, whose first `n` writes of a status key are
 * refused as etcd refuses them without a leader: a put of one, or a
 * transaction that puts one (its commit).
 */
function refusingStatusWrites(etcd: Etcd3, n: number, only?: string): { client: Etcd3; refused: () => number } {
  let refused = 0;
  let statusPut = false;
  const refuse = () => {
    statusPut = false;
    if (refused >= n) return false;
    refused++;
    return true;
  };
  const client = new Proxy(etcd, {
    get(target, prop, receiver) {
      if (prop === 'put') {
        return (k: string) => {
          const b = target.put(k);
          if (!k.startsWith(only === undefined ? `${PREFIX}status/` : key.status(only))) return b;
          statusPut = true;
          const exec = b.exec.bind(b);
          b.exec = () => (refuse() ? Promise.reject(new Error('etcdserver: leader changed')) : exec());
          return b;
        };
      }
      if (prop === 'if') {
        return (...args: Parameters<Etcd3['if']>) => {
          const c = target.if(...args);
          const commit = c.commit.bind(c);
          // The transaction's operations are added after if(): whether it puts a status is known at commit.
          c.commit = () => (statusPut && refuse() ? Promise.reject(new Error('etcdserver: leader changed')) : ((statusPut = false), commit()));
          return c;
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  });
  return { client, refused: () => refused };
}

async function statusOf(etcd: Etcd3, id: string): Promise<{ state: string; node: string } | null> {
  const v = await etcd.get(key.status(id)).string();
  return v === null ? null : (JSON.parse(v) as { state: string; node: string });
}

async function until<T>(what: string, f: () => Promise<T | null | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the worker that makes what is placed on its node', () => {
  const e = oneEtcd('worker', 11);
  let etcd: Etcd3;
  const log = pino({ level: 'silent' });

  beforeEach(async () => {
    etcd = e.client;
    await etcd.delete().prefix(PREFIX);
  });

  /** A watched copy following etcd and a second client writing, for the length of `body`. */
  const withCopyAndWriter = async (body: (watched: WatchedFleet, writer: Etcd3) => Promise<void>) => {
    const watched = new WatchedFleet(etcd, log);
    watched.start();
    const writer = new Etcd3({ hosts: e.endpoints });
    try {
      await until('the copy following etcd', async () => (watched.following ? true : null));
      await body(watched, writer);
    } finally {
      writer.close();
      watched.close();
    }
  };

  /** A worker on `local`, started, for the length of `body`. */
  const withWorker = async (local: LocalNode, body: () => Promise<void>, client: Etcd3 = etcd) => {
    const w = new Worker(client, NODE, local, log);
    try {
      await w.start();
      await body();
    } finally {
      await w.close();
    }
  };

  it('reports a session it made even when etcd refuses the first reports, and makes it once', async () => {
    const local = new FakeNode();
    const { client, refused } = refusingStatusWrites(etcd, 2);
    await withWorker(local, async () => {
    const d = desired('s-00000000e1');
    await etcd.put(key.desired(NODE, d.id)).value(JSON.stringify(d));
    const st = await until('the running report', () => statusOf(etcd, d.id));
    expect(st).toMatchObject({ state: 'running', node: NODE });
    expect(refused()).toBe(2);
    expect(local.creates).toBe(1);
    }, client);
  });

  for (const [row, id] of [[false, 's-00000000e2'], [true, 's-00000000ec']] as const) {
    it(`reports a create that failed here${row ? ' after it was admitted (its row ended: settle leaves its placement to the report)' : ''} even when etcd refuses the first report, and never makes it again`, async () => {
      const local = new FakeNode(true, Promise.resolve(), row);
      // Refused twice for the ended row: its settle then meets the row ended and its placement there, the report still to come.
      const n = row ? 2 : 1;
      const { client, refused } = refusingStatusWrites(etcd, n);
      await withWorker(local, async () => {
        const d = desired(id);
        // The report and the placement's removal, seen by a watch: one revision (a booking sent again finds one or the other).
        const revs = new Map<string, string>();
        const watch = await etcd.watch().prefix(PREFIX).create();
        watch.on('delete', (kv) => revs.set(`delete ${kv.key.toString()}`, kv.mod_revision));
        watch.on('put', (kv) => revs.set(`put ${kv.key.toString()}`, kv.mod_revision));
        await etcd.put(key.desired(NODE, d.id)).value(JSON.stringify(d));
        const st = await until('the failed report', () => statusOf(etcd, d.id));
        expect(st).toMatchObject({ state: 'failed', node: NODE, error: { code: 'exhausted', message: 'no room here' } });
        expect(refused()).toBe(n);
        expect(await etcd.get(key.desired(NODE, d.id)).string()).toBeNull();
        await until('the watch', async () => revs.get(`put ${key.status(d.id)}`));
        await watch.cancel();
        expect(revs.get(`delete ${key.desired(NODE, d.id)}`)).toBe(revs.get(`put ${key.status(d.id)}`));
        // Two more of the worker's seconds: the placement stays gone and nothing is made again.
        await new Promise((r) => setTimeout(r, 2200));
        expect(local.creates).toBe(1);
      }, client);
    });
  }

  it('watches its placements again when etcd cancels its watch (resumed, after etcd restarted, from a compacted revision), and lives on', async () => {
    const local = new FakeNode();
    let watches = 0;
    const client = new Etcd3({ hosts: e.endpoints });
    const counted = new Proxy(client, {
      get(target, prop, receiver) {
        if (prop !== 'watch') return Reflect.get(target, prop, receiver);
        return () => (watches++, target.watch());
      },
    });
    // The fleet's watched copy beside it, on the same client, as a node has them.
    const copy = new WatchedFleet(client, log);
    copy.start();
    // What the client throws where no caller catches it (a daemon would die of it): nothing.
    const uncaught: string[] = [];
    const probe = (e: unknown) => void uncaught.push(String(e));
    process.on('unhandledRejection', probe);
    process.on('uncaughtException', probe);
    try {
      await withWorker(local, async () => {
        await until('the copy live', async () => ((await copy.keys(prefix.members), copy.served.copy > 0) ? true : null));
        expect(watches).toBe(1);
        // Writes the worker's watch does not see, compacted away: its resume revision is gone.
        for (let i = 0; i < 5; i++) await etcd.put(`${PREFIX}members/x${i}`).value('{}');
        const now = Number((await etcd.get(`${PREFIX}members/x0`).exec()).header.revision);
        await etcd.kv.compact({ revision: String(now) });
        await e.restart();
        // Cancelled on its resume, the watch is made again (a second watch), and placements are made.
        await until('a new watch', async () => (watches >= 2 ? true : null), 10_000);
        const d = desired('s-00000000e9');
        await etcd.put(key.desired(NODE, d.id)).value(JSON.stringify(d));
        expect(await until('the running report', () => statusOf(etcd, d.id))).toMatchObject({ state: 'running', node: NODE });
        expect(local.creates).toBe(1);
        // The copy follows again: it sees a write made after the restart.
        await etcd.put(`${PREFIX}members/after`).value('{}');
        await until('the copy following', async () => ((await copy.keys(prefix.members))[0]!.has(`${PREFIX}members/after`) ? true : null));
      }, counted);
      expect(uncaught).toEqual([]);
    } finally {
      process.off('unhandledRejection', probe);
      process.off('uncaughtException', probe);
      copy.close();
      client.close();
    }
  }, 60_000);

  it('never reports running a session the fleet declared lost while it was being made', async () => {
    let release!: () => void;
    const local = new FakeNode(false, new Promise<void>((r) => (release = r)));
    await withWorker(local, async () => {
    const d = desired('s-00000000e5');
    await etcd.put(key.desired(NODE, d.id)).value(JSON.stringify(d));
    await until('the create under way', async () => (local.creates === 1 ? true : null));
    // Meanwhile the fleet declares it lost (failure.ts): its placement goes, its status says lost.
    const lost = JSON.stringify({ id: d.id, node: NODE, state: 'lost', since: '2026-01-01T00:00:00Z' });
    await etcd.delete().key(key.desired(NODE, d.id));
    await etcd.put(key.status(d.id)).value(lost);
    release();
    await until('the create done', async () => (local.states.get(d.id) === 'running' ? true : null));
    // Two of the worker's seconds: neither the report nor a resync undoes it (the node must still fence it).
    await new Promise((r) => setTimeout(r, 2200));
    expect(await etcd.get(key.status(d.id)).string()).toBe(lost);
    });
  });

  it("the watched copy's version of a part moves with every write or delete there, and with nothing elsewhere", async () => {
    const watched = new WatchedFleet(etcd, log);
    watched.start();
    try {
      await until('the copy following etcd', async () => (watched.following ? true : null));
      const seen = async (k: string, present: boolean) => until(`the copy ${present ? 'holding' : 'without'} ${k}`, async () => ((await watched.keys(prefix.listed))[0]!.has(k) === present ? true : null));
      const v0 = watched.version(prefix.listed);
      await etcd.put(`${prefix.listed}n2/s-0000000001`).value('{}');
      await seen(`${prefix.listed}n2/s-0000000001`, true);
      const v1 = watched.version(prefix.listed);
      expect(v1).not.toBe(v0);
      await etcd.put(key.desired(NODE, 's-0000000009')).value('{}');
      await until('the placement in the copy', async () => ((await watched.keys(prefix.desired))[0]!.size === 1 ? true : null));
      expect(watched.version(prefix.listed)).toBe(v1);
      await etcd.delete().key(`${prefix.listed}n2/s-0000000001`);
      await seen(`${prefix.listed}n2/s-0000000001`, false);
      expect(watched.version(prefix.listed)).not.toBe(v1);
    } finally {
      watched.close();
    }
  });

  it("the watched copy's ahead() answers from the copy only once it holds every write made before the call: 200 writes, each read at once", async () => {
    await withCopyAndWriter(async (watched, writer) => {
    let made = 0;
    for (let i = 0; i < 200; i++) {
      const k = `${prefix.listed}n9/s-${String(i).padStart(10, '0')}`;
      await writer.put(k).value('{}');
      // Asked right after the write's answer, before the copy's watch may have heard it.
      const got = await watched.ahead(
        () => true,
        () => {
          made++;
          return watched.peek(prefix.listed)![0]!.has(k);
        },
      );
      expect(got, `write ${i}`).toEqual({ made: true });
    }
    // Made once a call when the copy had it already, twice when it caught up after: never more.
    expect(made).toBeGreaterThanOrEqual(200);
    expect(made).toBeLessThanOrEqual(400);
    // Not ready (a node to be asked): etcd is not asked. f giving undefined: the read it asked is handed back.
    expect(await watched.ahead(() => false, () => true)).toEqual({});
    const back = await watched.ahead(() => true, () => undefined);
    expect('asked' in back && typeof (await back.asked!.rev)).toBe('number');
    });
  });

  it("the watched copy's ahead() keeps an answer made before the copy caught up when no part it read changed meanwhile (a write elsewhere moved the revision), and makes it again when one did", async () => {
    await withCopyAndWriter(async (watched, writer) => {
    let made = 0;
    let wrote = 0;
    let i = 0;
    // 200 calls, and on until one was asked before the copy had heard its write (racing the watch: a few in 200
    // here), within 2000.
    for (; i < 200 || (watched.aheads.unchanged === 0 && i < 2000); i++) {
      // Most writes elsewhere (a node's allocation); every tenth to the part the answer reads.
      const mine = i % 10 === 9;
      const k = mine ? `${prefix.listed}n9/s-${String(i).padStart(10, '0')}` : key.alloc(`n${i}`);
      await writer.put(k).value('{}');
      if (mine) wrote++;
      const got = await watched.ahead(
        () => true,
        () => {
          made++;
          return watched.peek(prefix.listed)![0]!.size;
        },
      );
      expect(got, `write ${i}`).toEqual({ made: wrote });
    }
    // Made again only after a write to the part it read (one call in ten), never after one elsewhere.
    expect(made).toBeLessThanOrEqual(i + wrote);
    const a = watched.aheads;
    expect(a.current + a.unchanged + a.again).toBe(i);
    expect(a.again).toBeLessThanOrEqual(wrote);
    // Asked right after the write's answer: the copy had not heard it yet, at least once.
    expect(a.unchanged).toBeGreaterThan(0);
    });
  });

  it("the watched copy's ahead() hands back a revision read that fails, and the daemon lives on (no unhandled rejection)", async () => {
    const refusing = new Proxy(etcd, { get: (t, p) => (p === 'get' ? () => ({ exec: () => new Promise((_, reject) => setTimeout(() => reject(new Error('etcd down')), 20)) }) : Reflect.get(t, p, t)) });
    const watched = new WatchedFleet(refusing, log);
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    watched.start();
    try {
      await until('the copy following etcd', async () => (watched.following ? true : null));
      // f gives nothing (a node to be asked), and the caller leaves: the read fails later, handled.
      const left = await watched.ahead(() => true, () => undefined);
      expect('asked' in left).toBe(true);
      // f made, and the read fails: not made; the caller's own read fails as the revision read did.
      const failed = await watched.ahead(() => true, () => 'made');
      expect('asked' in failed && failed.asked !== undefined && !failed.asked.waited).toBe(true);
      await expect(watched.readWith('asked' in failed ? failed.asked : undefined, prefix.listed)).rejects.toThrow('etcd down');
      await new Promise((r) => setTimeout(r, 100));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      watched.close();
    }
  });

  it("the watched copy's ahead() asks etcd nothing when not ready, and the usual path after it waits on its one revision read, and on no second catch-up", async () => {
    let gets = 0;
    const counting = new Proxy(etcd, { get: (t, p) => (p === 'get' ? (k: string) => (gets++, t.get(k)) : Reflect.get(t, p, t)) });
    const watched = new WatchedFleet(counting, log);
    watched.start();
    try {
      await until('the copy following etcd', async () => (watched.following ? true : null));
      gets = 0;
      expect(await watched.ahead(() => false, () => true)).toEqual({});
      expect(gets).toBe(0);
      // f gives nothing: the read it asked is handed back, and the usual read waits on it (one get in all).
      const back = await watched.ahead(() => true, () => undefined);
      expect('asked' in back && back.asked !== undefined && !back.asked.waited).toBe(true);
      const r = await watched.readWith('asked' in back ? back.asked : undefined, prefix.listed);
      expect([r.copy, gets]).toEqual([true, 1]);
      // A read handed a revision the copy was waited for already (and is behind of): etcd at once, no second wait.
      const behind = { rev: Promise.resolve(Number.MAX_SAFE_INTEGER), waited: true };
      const waits = vi.spyOn(watched as unknown as { caughtUp(rev: number): Promise<boolean> }, 'caughtUp');
      const direct = await watched.readWith(behind, prefix.listed);
      expect([direct.copy, waits.mock.calls.length, gets]).toEqual([false, 0, 1]);
      // Not waited for yet: it is.
      await watched.readWith({ rev: Promise.resolve(Number.MAX_SAFE_INTEGER), waited: false }, prefix.listed);
      expect(waits.mock.calls.length).toBe(1);
      waits.mockRestore();
    } finally {
      watched.close();
    }
  });

  it("settles its allocation from the fleet's watched copy, not from a read of every placement in etcd: what it runs and what is placed on it, not a node whose name starts with its own", async () => {
    const watched = new WatchedFleet(etcd, log);
    watched.start();
    try {
      await until('the copy following etcd', async () => (watched.following ? true : null));
      // The worker's client refuses prefix reads: its settle must come from the copy (or it writes no allocation).
      const client = new Proxy(etcd, { get: (t, p) => (p === 'getAll' ? () => ({ prefix: () => ({ strings: () => Promise.reject(new Error('read from etcd')) }) }) : Reflect.get(t, p, t)) });
      const local = new FakeNode();
      local.states.set('s-00000000f1', 'running'); // made before the fleet: it holds memory here all the same
      local.states.set('s-00000000f3', 'destroyed'); // ended here: its placement goes
      for (const id of ['s-00000000f2', 's-00000000f3']) await etcd.put(key.desired(NODE, id)).value(JSON.stringify(desired(id)));
      await etcd.put(key.desired(`${NODE}0`, 's-00000000f4')).value(JSON.stringify(desired('s-00000000f4')));
      const w = new Worker(client, NODE, local, log, undefined, undefined, undefined, watched);
      try {
        await w.start();
        const alloc = await until('the allocation', async () => {
          const a = await etcd.get(key.alloc(NODE)).string();
          return a !== null && Object.keys(JSON.parse(a).sessions).length === 2 ? (JSON.parse(a) as { sessions: object }) : null;
        });
        expect(alloc.sessions).toEqual({ 's-00000000f1': { memory_mb: 256 }, 's-00000000f2': { memory_mb: 256 } });
        expect(await until('the ended placement gone', async () => ((await etcd.get(key.desired(NODE, 's-00000000f3')).string()) === null ? true : null))).toBe(true);
        expect(await etcd.get(key.desired(`${NODE}0`, 's-00000000f4')).string()).not.toBeNull();
        expect(local.states.get('s-00000000f4')).toBeUndefined();
      } finally {
        await w.close();
      }
    } finally {
      watched.close();
    }
  });

  it('after a restart, reports a session it runs that has no report, and leaves one that has', async () => {
    const local = new FakeNode();
    local.states.set('s-00000000e3', 'running');
    local.states.set('s-00000000e4', 'running');
    for (const id of ['s-00000000e3', 's-00000000e4']) await etcd.put(key.desired(NODE, id)).value(JSON.stringify(desired(id)));
    const theirs = JSON.stringify({ id: 's-00000000e4', node: NODE, state: 'lost', since: '2026-01-01T00:00:00Z' });
    await etcd.put(key.status('s-00000000e4')).value(theirs);
    await withWorker(local, async () => {
    expect(await statusOf(etcd, 's-00000000e3')).toMatchObject({ state: 'running', node: NODE });
    expect(await etcd.get(key.status('s-00000000e4')).string()).toBe(theirs);
    expect(local.creates).toBe(0);
    });
  });

  for (const [fails, row, id] of [[false, false, 's-00000000e7'], [true, false, 's-00000000ea'], [true, true, 's-00000000eb']] as const) {
    it(`says nothing of a session whose placement was withdrawn while it was being made (an undone move, declared lost): ${fails ? `its create failed${row ? ' after it was admitted (its row ended)' : ''}` : 'made, it is ended'}`, async () => {
      let release!: () => void;
      const local = new FakeNode(fails, new Promise<void>((r) => (release = r)), row);
      await withWorker(local, async () => {
        const d = desired(id);
        await etcd.put(key.desired(NODE, d.id)).value(JSON.stringify(d));
        await until('the create under way', async () => (local.creates === 1 ? true : null));
        await etcd.delete().key(key.desired(NODE, d.id));
        release();
        if (!fails) await until('its copy ended', async () => (local.states.get(d.id) === 'destroyed' ? true : null));
        // Two of the worker's seconds: a failed create's report would be written by now.
        else await new Promise((r) => setTimeout(r, 2200));
        expect(await etcd.get(key.status(d.id)).string()).toBeNull();
        expect(local.creates).toBe(1);
      });
    });
  }

  it('reports a create that failed with its row still creating (its end deferred to the settler) and removes its placement with the report', async () => {
    const local = new FakeNode(true, Promise.resolve(), 'creating');
    await withWorker(local, async () => {
      const d = desired('s-00000000f6');
      await etcd.put(key.desired(NODE, d.id)).value(JSON.stringify(d));
      expect(await until('the failed report', () => statusOf(etcd, d.id))).toMatchObject({ state: 'failed', node: NODE });
      // Gone with the report: a settle after a restart, the row failed by then, finds no placement to report again.
      expect(await etcd.get(key.desired(NODE, d.id)).string()).toBeNull();
    });
  });

  it('reports, once back from a restart, a create that failed here before its report was written, to a caller that may still wait, and nothing else', async () => {
    const local = new FakeNode();
    const now = new Date().toISOString();
    const [failed, ran, here, late, told] = ['s-00000000f1', 's-00000000f2', 's-00000000f3', 's-00000000f4', 's-00000000f5'];
    // The daemon's rows after its restart, all failed: one create that failed, placed through another node a moment ago;
    // one that ran; one placed through this node (its caller went with the restart); one placed longer ago than a
    // caller waits; one whose report is there already (another's, not overwritten).
    const placed: Array<[string, Desired]> = [
      [failed, { ...desired(failed), placed_at: now }],
      [ran, { ...desired(ran), placed_at: now }],
      [here, { ...desired(here), placed_at: now, entry: NODE }],
      [late, desired(late)],
      [told, { ...desired(told), placed_at: now }],
    ];
    for (const [id, d] of placed) {
      local.states.set(id, 'failed');
      if (id !== ran) local.failedCreates.set(id, `no room for ${id} (before the restart)`);
      await etcd.put(key.desired(NODE, id)).value(JSON.stringify(d));
    }
    const theirs = JSON.stringify({ id: told, node: 'w2', state: 'running' });
    await etcd.put(key.status(told)).value(theirs);
    await withWorker(local, async () => {
      const st = await until('the failed report', () => statusOf(etcd, failed));
      expect(st).toMatchObject({ state: 'failed', node: NODE, error: { message: `no room for ${failed} (before the restart)` } });
      // Its placement went with the report (one transaction); the others lost theirs, and no report was made of them.
      expect(await etcd.get(key.desired(NODE, failed)).string()).toBeNull();
      for (const id of [ran, here, late, told]) await until(`${id}'s placement gone`, async () => ((await etcd.get(key.desired(NODE, id)).string()) === null ? true : null));
      for (const id of [ran, here, late]) expect(await etcd.get(key.status(id)).string(), id).toBeNull();
      expect(await etcd.get(key.status(told)).string()).toBe(theirs);
      expect(local.creates).toBe(0);
    });
  });

  it('ends a running copy made here that is placed here no more, its report never taken (a move here undone meanwhile), marked as the copy of the node it lives on; a later move here makes it again', async () => {
    const local = new FakeNode();
    const id = 's-00000000f1';
    // Its reports refused, all of them: its placement is then withdrawn with nothing in etcd to tell this node.
    const { client } = refusingStatusWrites(etcd, 1_000, id);
    // Kept, each running and made for a placement but the one from before the fleet: one placed here; one placed
    // nowhere (etcd restored from an older snapshot: nothing says it runs elsewhere); one whose move is on record;
    // one the fleet declared lost here (the fence's to end); one from before the fleet.
    const [kept, nowhere, moving, lostHere, preFleet] = ['s-00000000f2', 's-00000000f5', 's-00000000f4', 's-00000000f6', 's-00000000f3'];
    for (const k of [kept, nowhere, moving, lostHere, preFleet]) local.states.set(k, 'running');
    local.preFleet.add(preFleet);
    await etcd.put(key.desired(NODE, kept)).value(JSON.stringify(desired(kept)));
    await etcd.put(key.status(kept)).value(JSON.stringify({ id: kept, node: NODE, state: 'running' }));
    await etcd.put(key.move(moving)).value(JSON.stringify({ id: moving, from: NODE, to: 'w2', phase: 'copying' }));
    await etcd.put(key.desired('w2', moving)).value(JSON.stringify(desired(moving)));
    await etcd.put(key.desired('w2', lostHere)).value(JSON.stringify(desired(lostHere)));
    await etcd.put(key.status(lostHere)).value(JSON.stringify({ id: lostHere, node: NODE, state: 'lost' }));
    await etcd.put(key.desired('w2', preFleet)).value(JSON.stringify(desired(preFleet)));
    await withWorker(
      local,
      async () => {
        await etcd.put(key.desired(NODE, id)).value(JSON.stringify(desired(id)));
        await until('the copy made', async () => (local.states.get(id) === 'running' ? true : null));
        // Settles meanwhile keep it: it is placed here.
        await new Promise((r) => setTimeout(r, 1200));
        expect(local.states.get(id)).toBe('running');
        // The undo: the session placed where it was (w2: a move places it on both), then its placement here gone.
        await etcd.put(key.desired('w2', id)).value(JSON.stringify(desired(id)));
        await etcd.delete().key(key.desired(NODE, id));
        await until('the copy ended', async () => (local.states.get(id) === 'destroyed' ? true : null));
        expect(local.discarded.get(id)).toBe('w2');
        // Moved here again (a later drain of w2): made again under its id, its ended copy dropped first.
        await etcd.put(key.move(id)).value(JSON.stringify({ id, from: 'w2', to: NODE, phase: 'copying' }));
        await etcd.put(key.desired(NODE, id)).value(JSON.stringify(desired(id)));
        await until('made again', async () => (local.creates === 2 && local.states.get(id) === 'running' ? true : null));
        // Two more seconds: the others still run, none discarded.
        await new Promise((r) => setTimeout(r, 2200));
        for (const k of [kept, nowhere, moving, lostHere, preFleet]) expect(local.states.get(k), k).toBe('running');
        expect([...local.discarded.keys()]).toEqual([id]);
      },
      client,
    );
  }, 30_000);

  it('ends no running copy placed here no more while it is back and not yet fenced (the fence decides those)', async () => {
    const local = new FakeNode();
    const id = 's-00000000f7';
    local.states.set(id, 'running');
    await etcd.put(key.desired('w2', id)).value(JSON.stringify(desired(id)));
    let fenced = false;
    const w = new Worker(etcd, NODE, local, log, () => fenced);
    try {
      await w.start();
      await new Promise((r) => setTimeout(r, 2200));
      expect(local.states.get(id)).toBe('running');
      fenced = true;
      await until('the copy ended once fenced', async () => (local.states.get(id) === 'destroyed' ? true : null));
      expect(local.discarded.get(id)).toBe('w2');
    } finally {
      await w.close();
    }
  }, 20_000);

  describe('a session a drain moves back to a node that held it before', () => {
    const id = 's-00000000e6';
    const moveHere = JSON.stringify({ id, from: 'w2', to: NODE, phase: 'copying' });

    it('is made again under its id, its old copy here dropped first', async () => {
      const local = new FakeNode();
      local.states.set(id, 'destroyed');
      local.movedAway.add(id);
      await etcd.put(key.move(id)).value(moveHere);
      await etcd.put(key.desired(NODE, id)).value(JSON.stringify(desired(id)));
      await withWorker(local, async () => {
      expect(await until('the running report', () => statusOf(etcd, id))).toMatchObject({ state: 'running', node: NODE });
      expect(local.creates).toBe(1);
      expect(await etcd.get(key.desired(NODE, id)).string()).not.toBeNull();
      });
    });

    it('is not made again from a copy that ended any other way (a move here being undone): its placement goes', async () => {
      const local = new FakeNode();
      local.states.set(id, 'destroyed');
      await etcd.put(key.move(id)).value(moveHere);
      await etcd.put(key.desired(NODE, id)).value(JSON.stringify(desired(id)));
      await withWorker(local, async () => {
      await until('the placement gone', async () => ((await etcd.get(key.desired(NODE, id)).string()) === null ? true : null));
      expect(local.creates).toBe(0);
      expect(local.states.get(id)).toBe('destroyed');
      });
    });

    it('is not made again while that move is being undone', async () => {
      const local = new FakeNode();
      local.states.set(id, 'destroyed');
      local.movedAway.add(id);
      await etcd.put(key.move(id)).value(JSON.stringify({ id, from: 'w2', to: NODE, phase: 'undoing' }));
      await etcd.put(key.desired(NODE, id)).value(JSON.stringify(desired(id)));
      await withWorker(local, async () => {
      await until('the placement gone', async () => ((await etcd.get(key.desired(NODE, id)).string()) === null ? true : null));
      expect(local.creates).toBe(0);
      });
    });

    it('is not made again from its old copy without a move here on record (a placement left behind)', async () => {
      const local = new FakeNode();
      local.states.set(id, 'destroyed');
      local.movedAway.add(id);
      await etcd.put(key.move(id)).value(JSON.stringify({ id, from: NODE, to: 'w2', phase: 'committed' }));
      await etcd.put(key.desired(NODE, id)).value(JSON.stringify(desired(id)));
      await withWorker(local, async () => {
      await until('the placement gone', async () => ((await etcd.get(key.desired(NODE, id)).string()) === null ? true : null));
      expect(local.creates).toBe(0);
      expect(local.movedAway.has(id)).toBe(true);
      });
    });
  });
});
