// Session names unique per owner across the fleet: a create claims
// /enclave/names/UID/NAME (its session id) in an etcd transaction before it
// is placed. A claim is held while its session is placed or pending
// somewhere, or just claimed (30 s: its placement under way); once its session has
// ended (its placement gone) the next create of that name takes it over,
// again by compare-and-swap, so two creates racing for one name never both
// get it. No node has to remember to release a name.
import type { Etcd3 } from 'etcd3';
import { z } from 'zod';
import { ApiError } from '../vocab/errors.js';
import { FLEET_OP_TIMEOUT_MS } from './deadline.js';
import { getWithRev } from './etcd.js';
import { key, parseValue, prefix, PREFIX } from './keys.js';

const claimSchema = z.object({ id: z.string(), at: z.number() }).strict();
/**
 * A claim this young whose session is placed nowhere yet is a create still
 * placing it: placement takes milliseconds, but may wait for etcd up to the
 * fleet's bound on an operation (a leader change), and its write may land
 * after that bound gave up on it; twice the bound covers both.
 */
const PLACING_MS = 2 * FLEET_OP_TIMEOUT_MS;
const nameKey = (owner: number, name: string) => `${PREFIX}names/${owner}/${name}`;

/** Claim `name` of `owner` for session `id`; 409 if a live session of the fleet holds it. */
export async function claimName(etcd: Etcd3, owner: number, name: string, id: string): Promise<void> {
  const k = nameKey(owner, name);
  for (let i = 0; i < 10; i++) {
    const cur = await getWithRev(etcd, k);
    if (cur.value !== null) {
      const c = parseValue(claimSchema, k, cur.value);
      // This create's own claim: a re-sent claim (its answer lost to a leader change) whose first send applied.
      if (c.id === id) return;
      if (await held(etcd, c)) throw new ApiError('conflict', `a session named '${name}' already exists in the fleet (${c.id})`, 'name');
    }
    const r = await etcd.if(k, 'Mod', '==', cur.rev).then(etcd.put(k).value(JSON.stringify({ id, at: Date.now() }))).commit();
    if (r.succeeded) return;
  }
  throw new ApiError('conflict', `session name '${name}' is being claimed by another create; try again`, 'name');
}

/** Whether the claim's session is still somewhere: placed on a node, pending, or just claimed (its placement under way). */
async function held(etcd: Etcd3, c: z.infer<typeof claimSchema>): Promise<boolean> {
  const placed = await etcd.getAll().prefix(prefix.desired).keys();
  if (placed.some((p) => p.endsWith(`/${c.id}`))) return true;
  if ((await etcd.get(key.pending(c.id)).string()) !== null) return true;
  return Date.now() - c.at < PLACING_MS;
}
