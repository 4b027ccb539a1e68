// Drain and move: a drained node (/enclave/drain/NODE, with its cordon)
// moves its stopped sessions to other nodes, one at a time, itself: it
// holds their stored files. For each: placed elsewhere by the same id (the
// placement's transaction, as any create), made there by that node's
// worker, running and empty; then this node sends the stored files over the
// mutual-TLS channel and that node restores them into it and stops it
// (src/daemon/handlers/moves.ts). Only then does its placement here go and
// its copy here end (destroyed). A move that fails on the way is undone
// there (destroyed, placement removed) and tried again later; one this
// daemon did not finish (it died) is undone the same way before the next
// try. A session started here meanwhile stays here.
import { createReadStream, statSync } from 'node:fs';
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { SessionState } from '../vocab/states.js';
import { getPrefix } from './etcd.js';
import type { ClusterConfig } from './etcd.js';
import { desiredSchema, key, parseValue, PREFIX, statusSchema, type Desired } from './keys.js';
import { place, readFleet } from './placement.js';
import type { PeerClient } from './peerTls.js';

/** What a move needs of this node's own sessions (the daemon provides it). */
export interface MoveSource {
  stateOf(id: string): SessionState | undefined;
  /** A stopped session's stored files. */
  stored(id: string): { path: string; zstd: boolean } | undefined;
  /** End the session here for good: its files and its placement are elsewhere now. */
  forget(id: string): Promise<void>;
}

/** A move that failed is tried again after this long. */
const RETRY_MS = 30_000;
/** The most a move's transfer may take (restore and stop there included). */
const SEND_MS = 10 * 60_000;
const DESIRED = `${PREFIX}desired/`;

export class Mover {
  private busy = false;
  private readonly retryAt = new Map<string, number>();

  constructor(
    private readonly etcd: Etcd3,
    private readonly self: string,
    private readonly c: ClusterConfig,
    private readonly peers: PeerClient,
    private readonly local: MoveSource,
    private readonly log: Logger,
  ) {}

  /** Called once a second: while this node is drained, move its stopped sessions. Never throws (etcd may not answer). */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      await this.moveAll();
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'drain: nothing moved this time');
    } finally {
      this.busy = false;
    }
  }

  private async moveAll(): Promise<void> {
    if ((await this.etcd.get(key.drain(this.self)).string()) === null) return;
    for (const [k, v] of await getPrefix(this.etcd, key.desiredOf(this.self))) {
      const d = parseValue(desiredSchema, k, v);
      if (this.local.stateOf(d.id) !== 'stopped' || (this.retryAt.get(d.id) ?? 0) > Date.now()) continue;
      const log = this.log.child({ session: d.id });
      try {
        const to = await this.move(d, log);
        this.retryAt.delete(d.id);
        log.info({ to }, 'drain: session moved');
      } catch (e) {
        this.retryAt.set(d.id, Date.now() + RETRY_MS);
        log.warn({ err: (e as Error).message }, 'drain: session not moved; trying again later');
      }
    }
  }

  private async move(d: Desired, log: Logger): Promise<string> {
    const stored = this.local.stored(d.id);
    if (!stored) throw new Error('its stored files are missing here');
    await this.undoElsewhere(d.id, log);
    const { placed_at: _, ...wanted } = d;
    const r = await place(this.etcd, wanted, this.c.candidates);
    if ('reason' in r) throw new Error(`no node takes it: ${r.reason}`);
    const to = r.node;
    try {
      await this.made(d.id, to);
      await this.send(d, to, stored);
      // Started here meanwhile: it stays here, and the copy there goes.
      if (this.local.stateOf(d.id) !== 'stopped') throw new Error('it was started here meanwhile');
      await this.etcd.delete().key(key.desired(this.self, d.id));
    } catch (e) {
      await this.undo(to, d.id, log);
      throw e;
    }
    await this.local.forget(d.id);
    return to;
  }

  /** Until the node it was placed on reports it made (bounded by create_timeout_ms). */
  private async made(id: string, node: string): Promise<void> {
    const deadline = Date.now() + this.c.create_timeout_ms;
    while (Date.now() < deadline) {
      const v = await this.etcd.get(key.status(id)).string().catch(() => null);
      const s = v === null ? undefined : parseValue(statusSchema, key.status(id), v);
      if (s?.node === node && s.state === 'running') return;
      if (s?.node === node && s.state === 'failed') throw new Error(`node ${node} could not make it: ${s.error?.message ?? 'failed'}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`node ${node} did not make it within ${this.c.create_timeout_ms} ms (cluster.create_timeout_ms)`);
  }

  /** The stored files to `node`, which restores them into its copy and stops it. */
  private async send(d: Desired, node: string, stored: { path: string; zstd: boolean }): Promise<void> {
    const m = (await readFleet(this.etcd)).find((n) => n.member.name === node);
    if (!m) throw new Error(`node ${node} left the fleet`);
    const size = statSync(stored.path).size;
    const path = `/v1/sessions/${d.id}/moved-in?zstd=${stored.zstd ? 1 : 0}&from=${this.self}`;
    await new Promise<void>((resolve, reject) => {
      const req = this.peers.request(node, m.member.endpoint, { method: 'POST', path, headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) } }, { uid: d.owner_uid, gids: d.owner_gids }, true);
      const timer = setTimeout(() => req.destroy(new Error(`not done within ${SEND_MS} ms`)), SEND_MS);
      timer.unref();
      req.on('error', (e) => (clearTimeout(timer), reject(e)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => void ((n += c.length) <= 64 * 1024 && chunks.push(c)));
        res.on('end', () => {
          clearTimeout(timer);
          if (res.statusCode === 200) return resolve();
          reject(new Error(`node ${node} answered ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`));
        });
        res.on('error', reject);
      });
      createReadStream(stored.path).on('error', (e) => req.destroy(e)).pipe(req);
    });
  }

  /** A move cut short before (this daemon died mid-way) left it placed elsewhere too: that copy goes first. */
  private async undoElsewhere(id: string, log: Logger): Promise<void> {
    for (const k of await this.etcd.getAll().prefix(DESIRED).keys()) {
      const [node, placed] = k.slice(DESIRED.length).split('/');
      if (placed === id && node && node !== this.self) await this.undo(node, id, log);
    }
  }

  /** Its copy on `node` destroyed and its placement there removed (placement first: that node's worker makes nothing more of it). */
  private async undo(node: string, id: string, log: Logger): Promise<void> {
    await this.etcd.delete().key(key.desired(node, id)).catch((e: Error) => log.warn({ err: e.message }, 'drain: a placement elsewhere not removed'));
    const m = (await readFleet(this.etcd).catch(() => [])).find((n) => n.member.name === node);
    if (!m) return;
    await new Promise<void>((resolve) => {
      const req = this.peers.request(node, m.member.endpoint, { method: 'DELETE', path: `/v1/sessions/${id}?force=1` }, { uid: 0, gids: [] });
      const timer = setTimeout(() => req.destroy(new Error('no answer within 30 s')), 30_000);
      timer.unref();
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => (clearTimeout(timer), resolve()));
      });
      req.on('error', (e) => {
        clearTimeout(timer);
        log.warn({ node, err: e.message }, 'drain: a copy elsewhere not destroyed');
        resolve();
      });
      req.end();
    });
  }
}
