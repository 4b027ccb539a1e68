// The fleet's keys in etcd and the shape of every value under them. Every
// value read back passes its zod schema: another node (or a person with
// etcdctl) wrote it, so it is input like any other.
//
//   /enclave/members/NODE   who the node is: endpoint, capacity (no lease: it outlives the node)
//   /enclave/alive/NODE     present while the node renews its lease (TTL cluster.lease_ttl_s)
//   /enclave/cordon/NODE    present while the node takes no new sessions
//   /enclave/alloc/NODE     the sessions counted against the node: placements compare-and-swap it
//   /enclave/desired/NODE/ID a session the node is to run (the request, its owner)
//   /enclave/status/ID      what the owning node made of it: running, or failed and why; lost when
//                           its node stayed unreachable past the grace, fenced once that node removed it
//   /enclave/down/NODE      since when the node has been seen unreachable (its lease gone); the node clears it
//   /enclave/pending/ID     a session no node fits yet, with the reason; its entry node places it (any node while that one is unreachable)
//   /enclave/gone/ID        a pending entry that went (destroyed, or placed), for 60 s under a lease: no resent write brings it back (pending.ts)
//   /enclave/lost/ID        a session declared lost, as list and show tell its owner, until the owner destroys it
//   /enclave/drain/NODE     present while the node is drained: it moves its stopped sessions elsewhere (move.ts)
//   /enclave/move/ID        a move under way: from, to, and whether it is committed (move.ts finishes or undoes it)
//   /enclave/oldcopy/NODE/ID a committed move's old copy on NODE, which was away past the grace when its record went: NODE ends it when back (awayMoves.ts)
//   /enclave/undone/NODE/ID the copy on NODE of an undone move the undo could not ask NODE to end (NODE removed): NODE ends it if back
//   /enclave/listed/NODE/ID a session as the node's list shows it, written by the node (listPublisher.ts)
//   /enclave/listing/NODE   the registration whose whole list is under listed/NODE/: other nodes list it from there
//   /enclave/listseq/NODE   moved by each write of the node's list, which compares it first (a late write fails)
//   /enclave/features/NODE  what the node's version takes that older ones do not (["move-kit"]), under its registration's lease
import { z } from 'zod';
import { createSessionRequest, limitsSchema, SESSION_ID } from '../api/schemas.js';

export const PREFIX = '/enclave/';
export const key = {
  member: (node: string) => `${PREFIX}members/${node}`,
  alive: (node: string) => `${PREFIX}alive/${node}`,
  cordon: (node: string) => `${PREFIX}cordon/${node}`,
  alloc: (node: string) => `${PREFIX}alloc/${node}`,
  desired: (node: string, id: string) => `${PREFIX}desired/${node}/${id}`,
  desiredOf: (node: string) => `${PREFIX}desired/${node}/`,
  status: (id: string) => `${PREFIX}status/${id}`,
  pending: (id: string) => `${PREFIX}pending/${id}`,
  gone: (id: string) => `${PREFIX}gone/${id}`,
  down: (node: string) => `${PREFIX}down/${node}`,
  lost: (id: string) => `${PREFIX}lost/${id}`,
  drain: (node: string) => `${PREFIX}drain/${node}`,
  move: (id: string) => `${PREFIX}move/${id}`,
  listed: (node: string, id: string) => `${PREFIX}listed/${node}/${id}`,
  listedOf: (node: string) => `${PREFIX}listed/${node}/`,
  listing: (node: string) => `${PREFIX}listing/${node}`,
  listSeq: (node: string) => `${PREFIX}listseq/${node}`,
  features: (node: string) => `${PREFIX}features/${node}`,
  oldCopy: (node: string, id: string) => `${PREFIX}oldcopy/${node}/${id}`,
  oldCopiesOf: (node: string) => `${PREFIX}oldcopy/${node}/`,
  undone: (node: string, id: string) => `${PREFIX}undone/${node}/${id}`,
  undoneOf: (node: string) => `${PREFIX}undone/${node}/`,
} as const;
/** The session id a key of one session names (/enclave/status/ID, /enclave/desired/NODE/ID, ...): its last part. */
export const idOfKey = (k: string): string => k.slice(k.lastIndexOf('/') + 1);
/** The node and session of a placement's key (key.desired's inverse). */
export const placementOfKey = (k: string): { node: string; id: string } => ({ node: k.slice(prefix.desired.length, k.lastIndexOf('/')), id: idOfKey(k) });
export const prefix = { desired: `${PREFIX}desired/`, members: `${PREFIX}members/`, alive: `${PREFIX}alive/`, cordon: `${PREFIX}cordon/`, alloc: `${PREFIX}alloc/`, pending: `${PREFIX}pending/`, status: `${PREFIX}status/`, down: `${PREFIX}down/`, lost: `${PREFIX}lost/`, move: `${PREFIX}move/`, listed: `${PREFIX}listed/`, listing: `${PREFIX}listing/`, features: `${PREFIX}features/` } as const;

const nodeName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/);
const sessionId = z.string().regex(SESSION_ID);

/** What a node offers: session slots, memory for sessions (MiB), free disk of its state dir (MiB). */
export const capacitySchema = z.object({ slots: z.number().int().min(0), memory_mb: z.number().int().min(0), disk_mb: z.number().int().min(0) }).strict();
export type NodeCapacity = z.infer<typeof capacitySchema>;

/**
 * What this version takes that older ones do not: a drain's move kit
 * (moveKit.ts: it asks for one, and serves its routes), and a kit's volume
 * made there by another session of the same move (MOVE_GROUPS).
 */
export const NODE_FEATURES = ['move-kit', 'move-group'] as const;
/** A node that takes sessions moved together, sharing volumes (moveKit.ts groupPlan). */
export const MOVE_GROUPS = 'move-group';
/**
 * A node that stages read-only volumes, their flags locked (a layered root:
 * docs/security.md, "Read-only volumes stay read-only"): only such a node
 * takes a moved session that may remount (system) with one. LocalNode.features.
 */
export const STAGED_RO_VOLUMES = 'staged-ro-volumes';
export const featuresSchema = z.array(z.string().max(64)).max(64);

export const memberSchema = z.object({ name: nodeName, endpoint: z.string().max(256), capacity: capacitySchema, registered_at: z.string() }).strict();
export type Member = z.infer<typeof memberSchema>;

/** The sessions counted against a node, by id: the memory each was placed with. */
export const allocSchema = z.object({ sessions: z.record(sessionId, z.object({ memory_mb: z.number().int().min(0) }).strict()) }).strict();
export type Alloc = z.infer<typeof allocSchema>;

/** A session as placed: everything the owning node needs to create it, by this id. */
export const desiredSchema = z
  .object({
    id: sessionId,
    owner_uid: z.number().int().min(0),
    owner_gids: z.array(z.number().int().min(0)).max(1024),
    request: createSessionRequest,
    memory_mb: z.number().int().min(0),
    /** The limits the entry node resolved: what list and show say of it should its node be lost before it reported it. */
    limits: limitsSchema.optional(),
    entry: nodeName,
    placed_at: z.string(),
  })
  .strict();
export type Desired = z.infer<typeof desiredSchema>;

export const statusSchema = z
  .object({
    id: sessionId,
    node: nodeName,
    state: z.enum(['running', 'failed', 'lost', 'fenced']),
    error: z.object({ code: z.string(), message: z.string() }).strict().optional(),
    session: z.unknown().optional(),
    /** lost or fenced: since when. */
    since: z.string().optional(),
  })
  .strict();
export type Status = z.infer<typeof statusSchema>;

export const pendingSchema = z
  .object({ id: sessionId, owner_uid: z.number().int().min(0), owner_gids: z.array(z.number().int().min(0)).max(1024), request: createSessionRequest, memory_mb: z.number().int().min(0), limits: limitsSchema, entry: nodeName, reason: z.string(), since: z.string() })
  .strict();
export type Pending = z.infer<typeof pendingSchema>;

/** A node's whole list is under listed/NODE/, written during the registration of its member record made at `registered_at`. */
export const listingSchema = z.object({ registered_at: z.string() }).strict();
export type Listing = z.infer<typeof listingSchema>;

/** What became of a pending entry that went: its owner destroyed it, or a booking placed it on a node. */
export const goneSchema = z.union([z.object({ destroyed_at: z.string() }).strict(), z.object({ placed_on: nodeName }).strict()]);
export type Gone = z.infer<typeof goneSchema>;

/**
 * A session the fleet declared lost: whose, which node had it, since when, the
 * session as its node last reported it, and when that node came back and
 * removed it (fenced). Its owner sees it in list and show until destroying it.
 */
export const lostSchema = z
  .object({ id: sessionId, node: nodeName, owner_uid: z.number().int().min(0), name: z.string().max(64).nullable(), since: z.string(), session: z.unknown().optional(), fenced_at: z.string().optional() })
  .strict();
export type Lost = z.infer<typeof lostSchema>;

/** A drain's move of one stopped session: copying (undone if cut short: undoing) until committed (then only its old copy is left to end). */
export const moveSchema = z.object({ id: sessionId, from: nodeName, to: nodeName, phase: z.enum(['copying', 'committed', 'undoing']) }).strict();
export type Move = z.infer<typeof moveSchema>;

/**
 * A copy a node is to end when back: under oldcopy/, a committed move's old
 * copy, `to` the node the session moved to (its trail names it); under
 * undone/, the copy of a move never committed whose undo could not ask that
 * node (removed from the fleet meanwhile: nodeRemoval.ts), `to` the node the
 * session lives on, ended with what the move's kit made there (as an undo
 * ends it). A prefix of its own: a node of an older version, which reads
 * oldcopy/ alone, leaves these for when it runs this one.
 */
export const oldCopySchema = z.object({ id: sessionId, to: nodeName }).strict();
export type OldCopy = z.infer<typeof oldCopySchema>;

/** Since when a node has been seen unreachable, by the clock of the node that saw it first. */
export const downSchema = z.object({ since: z.string(), seen_by: nodeName }).strict();
export type Down = z.infer<typeof downSchema>;

/** A value read from etcd, parsed, or an error naming the key and what is wrong with it. */
export function parseValue<S extends z.ZodType>(schema: S, k: string, text: string): z.output<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error(`etcd key ${k}: not JSON`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new Error(`etcd key ${k}: ${r.error.issues[0]?.path.join('.') || 'value'}: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}

/** A value read from etcd, parsed, or undefined when it does not parse (the caller leaves that key alone). */
export function parsedOrNone<S extends z.ZodType>(schema: S, k: string, text: string): z.output<S> | undefined {
  try {
    return parseValue(schema, k, text);
  } catch {
    return undefined;
  }
}
