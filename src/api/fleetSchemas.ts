// The fleet's API shapes (fleet mode, docs/fleet.md): a create's no_wait,
// the node list, cordon and uncordon.
import { z } from 'zod';
import { sessionSchema, volumeSizeMb } from './schemas.js';
import { MAX_SECRET_BYTES, secretName, secretRefOf, SESSION_ID, VOLUME_ID, volumeName } from '../vocab/names.js';

/** ?no_wait=1 on a create (fleet mode): refuse at once when no node fits, instead of leaving it pending. */
export const createQuery = z.object({ no_wait: z.enum(['1', '0', 'true', 'false']).transform((v) => v === '1' || v === 'true').optional() }).strict();

/** A node of the fleet (enclave node list): its state, what it holds and what it offers. */
export const nodeSchema = z.object({
  name: z.string(),
  state: z.enum(['ready', 'cordoned', 'unreachable']),
  cordoned: z.boolean(),
  endpoint: z.string(),
  sessions: z.number().int(),
  used_memory_mb: z.number().int(),
  capacity: z.object({ slots: z.number().int(), memory_mb: z.number().int(), disk_mb: z.number().int() }),
});
export type FleetNode = z.infer<typeof nodeSchema>;
export const nodeListSchema = z.object({ node: z.string(), nodes: z.array(nodeSchema) });
/** POST /v1/nodes/drain: the node, now cordoned, and the sessions still placed there (their owners end or move them). */
export const drainReplySchema = z.object({
  node: z.string(),
  sessions: z.array(z.object({ id: z.string(), name: z.string().nullable(), owner_uid: z.number().int(), placed_at: z.string() })),
});
/** POST /v1/nodes/remove: the node that left the fleet, and how many of its sessions stay listed lost for their owners. */
export const removeReplySchema = z.object({ node: z.string(), lost: z.number().int() });
/** POST /v1/nodes/cordon, /uncordon, /drain and /remove. */
export const cordonRequest = z.object({ name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be a node name of [a-z0-9-]') }).strict();

/** POST /v1/sessions/{id}/moved-in (nodes only): the body is the stored files, zstd or plain tar; `from` the drained node. */
export const movedInQuery = z.object({ zstd: z.enum(['0', '1']), from: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be a node name') }).strict();
/**
 * GET /v1/node/sessions (nodes only): a node's own sessions with only the
 * columns of the list's table, what a text list through another node needs
 * of it (a fifth of a whole session's JSON, and no per-session view to build).
 */
export const sessionRowsSchema = z.object({
  sessions: z.array(
    sessionSchema.pick({ id: true, name: true, owner_uid: true, state: true, hostname: true, init_pid: true, id_range: true, created_at: true, node: true }).extend({
      network: sessionSchema.shape.network.pick({ mode: true, address: true }),
    }),
  ),
});
export const movedOutQuery = z.object({ to: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be a node name') }).strict();
/** POST /v1/sessions/{id}/moved-in-volume (nodes only): the body is a volume's export, zstd or plain tar. */
export const movedInVolumeQuery = z.object({ volume: z.string().regex(/^v-[0-9a-f]{10}$/, 'must be a volume id'), zstd: z.enum(['0', '1']) }).strict();

/**
 * A node's list as the rows that changed since the one the asking node
 * holds (226 IM Used, instance manipulation ROWS_IM: src/daemon/madeLists.ts):
 * every id in order, and the rows not held as they are now. The rows are
 * checked with the list's own schema by the node that asked.
 */
export const ROWS_IM = 'rows';
export const rowsDelta = z.object({ ids: z.array(z.string().max(64)), rows: z.array(z.unknown()) }).strict();
export type RowsDelta = z.infer<typeof rowsDelta>;

/** Bounds on a kit: a session declares few secrets and mounts few volumes. */
const MAX_KIT_ITEMS = 128;

/** GET /v1/sessions/{id}/move-kit (nodes only): what follows a session a drain moves (src/fleet/moveKit.ts). */
export const moveKitSchema = z
  .object({
    secrets: z
      .array(
        z
          .object({
            name: secretName,
            value_base64: z.string().max(Math.ceil(MAX_SECRET_BYTES / 3) * 4 + 4).regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64'),
            shared: z.boolean(),
          })
          .strict(),
      )
      .max(MAX_KIT_ITEMS),
    // `with`: made there by that session's kit, moved in the same group (it shares the volume): not made again.
    volumes: z.array(z.object({ id: z.string().regex(VOLUME_ID), name: volumeName, size_mb: volumeSizeMb, with: z.string().regex(SESSION_ID).optional() }).strict()).max(MAX_KIT_ITEMS),
  })
  .strict();
export type MoveKit = z.infer<typeof moveKitSchema>;

/**
 * GET /v1/node/shared-secrets (nodes only): which of another owner's shared
 * secrets (UID:NAME, comma-separated) this node holds shared, each with an
 * HMAC of the nonce keyed by its value: the asking node compares it with its
 * own value's without either value crossing (a drain's move of a session
 * that declares root's shared secrets: src/fleet/sharedHolders.ts).
 */
export const sharedSecretsQuery = z
  .object({
    refs: z
      .string()
      .max(MAX_KIT_ITEMS * 140)
      .refine((t) => {
        const refs = t.split(',');
        return refs.length <= MAX_KIT_ITEMS && refs.every((r) => secretRefOf(r)?.owner !== undefined);
      }, `must be UID:NAME secret references, comma-separated, at most ${MAX_KIT_ITEMS}`),
    nonce: z.string().regex(/^[0-9a-f]{32,128}$/, 'must be 32 to 128 lowercase hex digits'),
  })
  .strict();
export const sharedSecretsSchema = z
  .object({ secrets: z.array(z.object({ ref: z.string().max(140), mac: z.string().regex(/^[0-9a-f]{64}$/) }).strict()).max(MAX_KIT_ITEMS) })
  .strict();
export type SharedSecrets = z.infer<typeof sharedSecretsSchema>;
