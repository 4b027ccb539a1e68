// Which nodes hold another owner's shared secrets (root's `auth set
// --shared`) with the values this node holds: a drain moves a session that
// declares some only to such a node. The secret is not carried: it is root's,
// shared per node (a copy made by a drain would be shared with every user
// there, and would not follow root's later rotation or unsharing here). So
// the session finds there what root shares there, checked to be what it had
// here: each node answers an HMAC of a fresh nonce keyed by its value
// (GET /v1/node/shared-secrets), and no value crosses.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { sharedSecretsSchema } from '../api/fleetSchemas.js';
import type { PeerClient } from './peerClient.js';
import { parsed, peerGet } from './peerGet.js';
import { readFleet } from './placement.js';
import type { SharedRef } from './moveKit.js';

/** A node's answer may take this long: it reads a few rows of its store. */
const ASK_MS = 5_000;

export const refText = (r: SharedRef): string => `${r.owner_uid}:${r.name}`;

/**
 * Pure: whether a node's answer holds every ref with this node's MAC, or
 * what it lacks. Each MAC is compared in constant time.
 */
export function sameShared(refs: readonly SharedRef[], mine: ReadonlyMap<string, string>, theirs: ReadonlyMap<string, string>): string | undefined {
  for (const r of refs) {
    const [a, b] = [mine.get(refText(r)), theirs.get(refText(r))];
    if (a === undefined) return `${refText(r)} is no longer shared here`;
    if (b === undefined) return `does not share ${refText(r)}`;
    if (a.length !== b.length || !timingSafeEqual(Buffer.from(a), Buffer.from(b))) return `shares ${refText(r)} with another value`;
  }
  return undefined;
}

/**
 * Of `candidates` (alive members, this node left out), those that share
 * every one of `refs` with the value this node holds (`macs` gives this
 * node's MACs of a nonce); and, for each node left out, why.
 */
export async function nodesSharing(
  etcd: Etcd3,
  peers: PeerClient,
  self: string,
  candidates: ReadonlySet<string>,
  refs: readonly SharedRef[],
  macs: (refs: readonly SharedRef[], nonce: string) => ReadonlyMap<string, string>,
): Promise<{ nodes: Set<string>; why: string[] }> {
  const nonce = randomBytes(16).toString('hex');
  const mine = macs(refs, nonce);
  const path = `/v1/node/shared-secrets?refs=${encodeURIComponent(refs.map(refText).join(','))}&nonce=${nonce}`;
  const members = (await readFleet(etcd)).filter((n) => n.alive && n.member.name !== self && candidates.has(n.member.name));
  const answers = await Promise.all(
    members.map(async ({ member: m }) => {
      try {
        const a = await peerGet(peers, m.name, m.endpoint, path, {}, ASK_MS);
        if (a.status !== 200) return { node: m.name, lacks: `answers ${a.status}` };
        const got = parsed(m.name, path, () => sharedSecretsSchema.parse(JSON.parse(a.body)));
        return { node: m.name, lacks: sameShared(refs, mine, new Map(got.secrets.map((s) => [s.ref, s.mac]))) };
      } catch (e) {
        return { node: m.name, lacks: `does not answer (${(e as Error).message.slice(0, 120)})` };
      }
    }),
  );
  return { nodes: new Set(answers.filter((a) => a.lacks === undefined).map((a) => a.node)), why: answers.filter((a) => a.lacks !== undefined).map((a) => `node ${a.node} ${a.lacks}`) };
}
