// A pending session's entry (/enclave/pending/ID), written so that a write
// the etcd client sends again (its answer lost to a leader change: etcd.ts)
// cannot bring back an entry that went meanwhile. An entry that goes (its
// owner destroyed it, or a booking placed it: placement.ts) leaves a
// tombstone, /enclave/gone/ID, under a lease of GONE_TTL_S, and an entry is
// written only while neither exists. A plain put sent again after a destroy
// made the session pending again, and the fleet then created a session its
// owner had destroyed.
import type { Etcd3 } from 'etcd3';
import { goneSchema, key, parseValue, type Gone, type Pending } from './keys.js';

/** Past any resend: the client starts one for at most 15 s (FLEET_OP_TIMEOUT_MS), each attempt bounded by 10 s (etcd.ts). */
export const GONE_TTL_S = 60;

/** A lease for tombstones: they go by themselves GONE_TTL_S after its grant (no keepalive). */
export function goneLease(etcd: Etcd3): Promise<string> {
  return etcd.lease(GONE_TTL_S, { autoKeepAlive: false }).grant();
}

/**
 * Write `p` unless its entry went: undefined once written (by this send or
 * an earlier one of the same write), or what became of it (a destroy or a
 * booking between a first send that applied and this one).
 */
export async function putPending(etcd: Etcd3, p: Pending): Promise<Gone | undefined> {
  const k = key.pending(p.id);
  const g = key.gone(p.id);
  const r = await etcd.if(g, 'Version', '==', 0).and(k, 'Version', '==', 0).then(etcd.put(k).value(JSON.stringify(p))).else(etcd.get(g)).commit();
  const gone = r.succeeded ? undefined : r.responses[0]?.response_range?.kvs[0]?.value.toString();
  // Failed its compare with no tombstone: the entry is there, from an earlier send (the id is new to this create).
  return gone === undefined ? undefined : parseValue(goneSchema, g, gone);
}

/** Destroy a pending entry, leaving its tombstone: false if it was not there (placed, or destroyed by another call). */
export async function cancelPending(etcd: Etcd3, id: string): Promise<boolean> {
  const lease = await goneLease(etcd);
  const k = key.pending(id);
  const g = key.gone(id);
  const tomb = JSON.stringify({ destroyed_at: new Date().toISOString() } satisfies Gone);
  const r = await etcd.if(k, 'Version', '>', 0).then(etcd.delete().key(k), etcd.put(g).value(tomb).lease(lease)).else(etcd.get(g)).commit();
  // Failed its compare because this very transaction, sent again, applied: done.
  return r.succeeded || r.responses[0]?.response_range?.kvs[0]?.value.toString() === tomb;
}
