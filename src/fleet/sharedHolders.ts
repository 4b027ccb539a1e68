// Which nodes hold root's shared secrets (`auth set --shared`) with the
// values this node holds: a drain moves a session that declares some only to
// such a node. The secret is not carried: it is root's, shared per node (a
// copy made by a drain would be shared with every user there, and would not
// follow root's later rotation or unsharing here). So the session finds
// there what root shares there, checked to be what it had here: each node
// answers, for each secret, an HMAC keyed by its value of a labelled message
// naming both nodes, the secret and a fresh nonce (GET
// /v1/node/shared-secrets). No value crosses; an answer tells the asking
// node whether the values agree, and is worth nothing for another question.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { sharedSecretsSchema } from '../api/fleetSchemas.js';
import type { PeerClient } from './peerClient.js';
import { parsed, peerGet } from './peerGet.js';
import { readFleet } from './placement.js';

/** A secret its owner shares (root's: `auth set --shared`), declared by a session of any owner, root's too. */
export interface SharedRef {
  owner_uid: number;
  name: string;
}

/** A node's answer may take this long: it reads a few rows of its store. */
const ASK_MS = 5_000;
/** A check's answer holds this long (a move refused for it is tried again every 30 s: sessions stuck alike share one check). */
const CHECK_TTL_MS = 25_000;

export const refText = (r: SharedRef): string => `${r.owner_uid}:${r.name}`;

/** One node's MAC of one shared secret's value: labelled, bound to the node asking, the node answering, the secret and the nonce. */
export function sharedMac(value: Buffer, asker: string, responder: string, ref: string, nonce: string): string {
  return createHmac('sha256', value).update(`enclave-shared-check/v1\0${asker}\0${responder}\0${ref}\0${nonce}`).digest('hex');
}

/** Of `refs`, those `get` finds shared, each by UID:NAME with its sharedMac. */
export function sharedMacs(
  get: (owner: number, name: string) => { value: Buffer; shared: boolean } | undefined,
  refs: readonly SharedRef[],
  nonce: string,
  asker: string,
  responder: string,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of refs) {
    const v = get(r.owner_uid, r.name);
    if (v?.shared) out.set(refText(r), sharedMac(v.value, asker, responder, refText(r), nonce));
  }
  return out;
}

/**
 * Pure: whether a node's answer holds every ref with this node's MAC, or
 * what it lacks. Each MAC is compared in constant time.
 */
export function sameShared(refs: readonly SharedRef[], mine: ReadonlyMap<string, string>, theirs: ReadonlyMap<string, string>): string | undefined {
  for (const r of refs) {
    const [a, b] = [mine.get(refText(r)), theirs.get(refText(r))];
    if (b === undefined) return `does not share ${refText(r)}`;
    if (a === undefined || a.length !== b.length || !timingSafeEqual(Buffer.from(a), Buffer.from(b))) return `shares ${refText(r)} with another value`;
  }
  return undefined;
}

/** This node's MACs for a check: refs, a nonce, and the node it asks (each answer is bound to it). */
export type OwnMacs = (refs: readonly SharedRef[], nonce: string, responder: string) => ReadonlyMap<string, string>;

/**
 * Of `candidates` (this node left out), those that share every one of
 * `refs` with the value this node holds; and, for each node left out, why
 * (one not alive is named so). A ref this node no longer shares leaves
 * every node out, said once.
 */
export async function nodesSharing(etcd: Etcd3, peers: PeerClient, self: string, candidates: ReadonlySet<string>, refs: readonly SharedRef[], macs: OwnMacs): Promise<{ nodes: Set<string>; why: string[] }> {
  const nonce = randomBytes(16).toString('hex');
  const unshared = refs.find((r) => !macs([r], nonce, self).has(refText(r)));
  if (unshared) return { nodes: new Set(), why: [`this node no longer shares ${refText(unshared)}`] };
  const path = `/v1/node/shared-secrets?refs=${encodeURIComponent(refs.map(refText).join(','))}&nonce=${nonce}`;
  const members = (await readFleet(etcd)).filter((n) => n.member.name !== self && candidates.has(n.member.name));
  const answers = await Promise.all(
    members.map(async ({ member: m, alive }) => {
      if (!alive) return { node: m.name, lacks: 'is unreachable' };
      try {
        const a = await peerGet(peers, m.name, m.endpoint, path, {}, ASK_MS);
        if (a.status !== 200) return { node: m.name, lacks: `answers ${a.status}` };
        const got = parsed(m.name, path, () => sharedSecretsSchema.parse(JSON.parse(a.body)));
        return { node: m.name, lacks: sameShared(refs, macs(refs, nonce, m.name), new Map(got.secrets.map((s) => [s.ref, s.mac]))) };
      } catch (e) {
        return { node: m.name, lacks: `does not answer (${(e as Error).message.slice(0, 120)})` };
      }
    }),
  );
  return { nodes: new Set(answers.filter((a) => a.lacks === undefined).map((a) => a.node)), why: answers.filter((a) => a.lacks !== undefined).map((a) => `node ${a.node} ${a.lacks}`) };
}

/**
 * nodesSharing, a refusal kept CHECK_TTL_MS per question (refs and
 * candidates): sessions that stay for the same secrets, each tried again
 * every 30 s, ask the other nodes once between them (and each ask is one
 * more row on their trails), and a node that does not answer holds the
 * drain up once.
 */
export class SharedChecks {
  private readonly kept = new Map<string, { at: number; answer: { nodes: Set<string>; why: string[] } }>();

  async nodesSharing(etcd: Etcd3, peers: PeerClient, self: string, candidates: ReadonlySet<string>, refs: readonly SharedRef[], macs: OwnMacs): Promise<{ nodes: Set<string>; why: string[] }> {
    const now = Date.now();
    for (const [k, v] of this.kept) if (now - v.at > CHECK_TTL_MS) this.kept.delete(k);
    const q = `${refs.map(refText).sort().join(',')} ${[...candidates].sort().join(',')}`;
    const hit = this.kept.get(q);
    if (hit) return hit.answer;
    const answer = await nodesSharing(etcd, peers, self, candidates, refs, macs);
    // Only a refusal is kept: a node found to match is checked again at the next move (root may rotate it meanwhile).
    if (answer.nodes.size === 0) this.kept.set(q, { at: Date.now(), answer });
    return answer;
  }
}
