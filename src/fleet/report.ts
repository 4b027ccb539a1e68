// Waiting for a node's report on a session it was given (/enclave/status/ID):
// a create waits for it on the node that took the create, a drain's move on
// the drained node.
import type { Etcd3 } from 'etcd3';
import { key, parseValue, statusSchema, type Status } from './keys.js';

/**
 * The session's report once `accept` takes it, or undefined after `timeoutMs`.
 * Read often at first (a create takes tens of ms: every poll step is added
 * to it), then less often.
 */
export async function awaitReport(etcd: Etcd3, id: string, accept: (s: Status) => boolean, timeoutMs: number): Promise<Status | undefined> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    const v = await etcd.get(key.status(id)).string().catch(() => null);
    const s = v === null ? undefined : parseValue(statusSchema, key.status(id), v);
    if (s && accept(s)) return s;
    const waited = Date.now() - start;
    await new Promise((r) => setTimeout(r, waited < 300 ? 5 : waited < 3000 ? 25 : 100));
  }
  return undefined;
}
