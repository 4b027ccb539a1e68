// `node drain NAME`: no new placement there (a cordon), and the sessions
// still placed there, for their owners to see; the drained node moves the
// stopped ones elsewhere itself (move.ts), the running ones stay.
import type { Etcd3 } from 'etcd3';
import { getPrefix } from './etcd.js';
import { desiredSchema, key, parseValue } from './keys.js';

export interface PlacedSession {
  id: string;
  name: string | null;
  owner_uid: number;
  placed_at: string;
}

/** The sessions placed on `node` (running there, or stopped there), oldest first. */
export async function placedOn(etcd: Etcd3, node: string): Promise<PlacedSession[]> {
  const out: PlacedSession[] = [];
  for (const [k, v] of await getPrefix(etcd, key.desiredOf(node))) {
    const d = parseValue(desiredSchema, k, v);
    out.push({ id: d.id, name: d.request.name ?? null, owner_uid: d.owner_uid, placed_at: d.placed_at });
  }
  return out.sort((a, b) => a.placed_at.localeCompare(b.placed_at) || a.id.localeCompare(b.id));
}
