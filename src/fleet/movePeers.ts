// A drain's calls on the node a session moves to (over the mutual-TLS
// channel), and the commit of a move in etcd: what move.ts does beyond
// deciding, one function each.
import { createReadStream, statSync } from 'node:fs';
import type { Etcd3 } from 'etcd3';
import { key, type Desired, type Move } from './keys.js';
import type { PeerClient } from './peerClient.js';
import { readFleet } from './placement.js';

/** The most a move's transfer may take (restore and stop there included). */
const SEND_MS = 10 * 60_000;

/**
 * Commit copying moves, all or none: each placement on the node it leaves
 * goes and each record says committed, in one transaction (never placed on
 * neither node), and only while each is still placed on both: a node the
 * fleet declared lost (its placements removed) whose etcd connection came
 * back before it registered again commits nothing, nor one whose receiving
 * node the fleet declared lost meanwhile; its moves are undone, and it
 * fences. Sessions that share volumes commit together: one left behind
 * would mount volumes gone from its node. True also when this very commit,
 * sent again after its answer was lost, had applied.
 */
export async function commitMoves(etcd: Etcd3, recs: readonly Move[]): Promise<boolean> {
  const done = recs.map((rec) => JSON.stringify({ ...rec, phase: 'committed' } satisfies Move));
  let txn = etcd.if(key.move(recs[0]!.id), 'Value', '==', JSON.stringify(recs[0]));
  for (const [i, rec] of recs.entries()) {
    if (i > 0) txn = txn.and(key.move(rec.id), 'Value', '==', JSON.stringify(rec));
    txn = txn.and(key.desired(rec.from, rec.id), 'Version', '>', 0).and(key.desired(rec.to, rec.id), 'Version', '>', 0);
  }
  const r = await txn
    .then(...recs.flatMap((rec, i) => [etcd.delete().key(key.desired(rec.from, rec.id)), etcd.put(key.move(rec.id)).value(done[i]!)]))
    .else(...recs.map((rec) => etcd.get(key.move(rec.id))))
    .commit();
  return r.succeeded || recs.every((_, i) => r.responses[i]?.response_range?.kvs[0]?.value.toString() === done[i]);
}

/** A file to `node` (POST `path`): the stored files, which it restores into its copy and stops it, or a volume's contents. */
export async function sendFile(etcd: Etcd3, peers: PeerClient, d: Desired, node: string, stored: { path: string }, path: string): Promise<void> {
  const m = (await readFleet(etcd)).find((n) => n.member.name === node);
  if (!m) throw new Error(`node ${node} left the fleet`);
  const size = statSync(stored.path).size;
  await new Promise<void>((resolve, reject) => {
    const req = peers.request(node, m.member.endpoint, { method: 'POST', path, headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) } }, { uid: d.owner_uid, gids: d.owner_gids }, true);
    const timer = setTimeout(() => req.destroy(new Error(`not done within ${SEND_MS} ms`)), SEND_MS);
    timer.unref();
    req.on('error', (e) => (clearTimeout(timer), reject(e)));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let n = 0;
      res.on('data', (c: Buffer) => void ((n += c.length) <= 64 * 1024 && chunks.push(c)));
      res.on('end', () => {
        clearTimeout(timer);
        if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) return resolve();
        reject(new Error(`node ${node} answered ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`));
      });
      res.on('error', reject);
    });
    createReadStream(stored.path).on('error', (e) => req.destroy(e)).pipe(req);
  });
}

/** A call on that node: whether it confirmed (2xx, or 404: it never made the session). */
export function askThere(peers: PeerClient, node: string, endpoint: string, method: 'DELETE' | 'POST', path: string): Promise<boolean> {
  return new Promise((resolve) => {
    let req;
    try {
      req = peers.request(node, endpoint, { method, path }, { uid: 0, gids: [] });
    } catch {
      return resolve(false);
    }
    const timer = setTimeout(() => req.destroy(new Error('no answer within 30 s')), 30_000);
    timer.unref();
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => (clearTimeout(timer), resolve((res.statusCode ?? 500) < 300 || res.statusCode === 404)));
      res.on('error', () => (clearTimeout(timer), resolve(false)));
    });
    req.on('error', () => (clearTimeout(timer), resolve(false)));
    req.end();
  });
}
