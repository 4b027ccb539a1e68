// A session's row and what the store's queries return, with the errors a
// reservation throws: the shapes, apart from the queries (sessionStore.ts).
import { z } from 'zod';
import { limitsSchema, sessionStates } from '../api/schemas.js';
import { INITS, PROFILES } from '../vocab/profiles.js';
import { oomColumns } from './oomStore.js';

export const rowSchema = z.object({
  id: z.string(),
  name: z.string().nullable(),
  state: z.enum(sessionStates),
  hostname: z.string(),
  init_pid: z.number().int().nullable(),
  init_start_time: z.string().nullable(),
  id_slot: z.number().int().nullable(),
  limits: z.string().transform((s, ctx) => {
    const parsed = limitsSchema.safeParse(JSON.parse(s));
    if (!parsed.success) {
      ctx.addIssue({ code: 'custom', message: 'stored limits do not match the schema' });
      return z.NEVER;
    }
    return parsed.data;
  }),
  created_at: z.string(),
  updated_at: z.string(),
  last_error: z.string().nullable(),
  network: z.enum(['bridge', 'none']),
  keep_console: z.union([z.literal(0), z.literal(1)]).transform((v) => v === 1),
  /** The stored SessionPlan as JSON, from session_plans (parsed where it is used: it is large). */
  plan: z.string().nullable(),
  exit_code: z.number().int().nullable(),
  exit_signal: z.number().int().nullable(),
  /** Set with state 'destroying' when the daemon itself ends the session (OOM, failed publish): it ends 'failed'. */
  stop_reason: z.string().nullable(),
  /** The uid that created it (null: a session of a daemon before access control). */
  owner_uid: z.number().int().nullable(),
  profile: z.enum(PROFILES),
  /** Stopped after this many seconds without a viewer, an exec or CPU use (null: never). */
  idle_timeout_s: z.number().int().nullable(),
  /** Why its last stop happened (a caller asked, or it was idle). */
  stopped_because: z.string().nullable(),
  /** The size of its stored files while it is stopped. */
  stored_bytes: z.number().int().nullable(),
  /** The plain KEY=VALUE environment it was created with (null: none, or a session of an older daemon). */
  env: z
    .string()
    .nullable()
    .transform((s, ctx) => {
      if (s === null) return [];
      const parsed = z.array(z.string()).safeParse(JSON.parse(s));
      if (parsed.success) return parsed.data;
      ctx.addIssue({ code: 'custom', message: 'stored env is not a list of strings' });
      return z.NEVER;
    }),
  ...oomColumns,
  /** Root's authorized OpenSSH key: sshd runs inside while the session does (null: no sshd). */
  ssh_key: z.string().nullable(),
  /** A pool member's shape while no tenant holds it (src/sessions/pool.ts): then nobody's, and in no listing. */
  pool: z.string().nullable(),
  /** What it boots inside (--init systemd), or null. */
  init: z.enum(INITS).nullable(),
  /** Fleet: the node a drain moved it to; set on this node's ended old copy (src/fleet/move.ts). */
  moved_to: z.string().nullable(),
  /** Fleet: made for a placement (migration 022), not before this daemon joined a fleet. */
  placed: z.union([z.literal(0), z.literal(1)]).transform((v) => v === 1),
});
export type SessionRow = z.infer<typeof rowSchema>;

/** A row without its plan: what a listing shows (plans are large and a listing never needs one). */
export const summarySchema = rowSchema.omit({ plan: true });
export type SessionSummary = z.infer<typeof summarySchema>;
export const SUMMARY_COLUMNS = Object.keys(summarySchema.shape).join(', ');
/** A listing's rows, checked as one array: one parse of N rows costs about half of N parses of one. */
export const summariesSchema = z.array(summarySchema);

/**
 * The columns of `session list`'s table (src/api/render.ts sessionTable) and
 * the session's lease: a listing sized for it. Read as arrays (better-sqlite3
 * then builds no object per row) and checked as one array of tuples.
 */
export const TABLE_COLUMNS = 's.id, s.name, s.state, s.hostname, s.init_pid, s.id_slot, s.created_at, s.network, s.owner_uid, l.address';
const S = rowSchema.shape;
export const tableRowsSchema = z
  .array(z.tuple([S.id, S.name, S.state, S.hostname, S.init_pid, S.id_slot, S.created_at, S.network, S.owner_uid, z.number().int().nullable()]))
  .transform((rows) => rows.map(([id, name, state, hostname, init_pid, id_slot, created_at, network, owner_uid, lease]) => ({ id, name, state, hostname, init_pid, id_slot, created_at, network, owner_uid, lease })));
export type TableRow = z.output<typeof tableRowsSchema>[number];

/** What the API view of a session adds to its row, from the other tables. */
export interface SessionDetails {
  lease: number | undefined;
  ports: PublishedPort[];
  secrets: { auth: string[]; env_tokens: string[] };
  volumes: { name: string; target: string; readonly: boolean }[];
}

export interface KernelObject {
  kind: 'cgroup' | 'veth';
  ref: string;
}

export interface PublishedPort {
  host_ip: string;
  host_port: number;
  session_port: number;
}

export class SlotsExhaustedError extends Error {}
export class AddressesExhaustedError extends Error {}
/** A host address and port another live session publishes: the message names it only to its own owner. */
export class PortTakenError extends Error {
  constructor(
    readonly port: string,
    readonly session: string,
    readonly owner: number | null,
  ) {
    super(`${port} is already published by session ${session}`);
  }

  /** The words for a caller that owns `asking`'s sessions: another owner's session is not named. */
  for(asking: number | null): string {
    return (this.owner ?? 0) === (asking ?? 0) ? this.message : `${this.port} is already published by another user's session`;
  }
}
export class VolumeUnavailableError extends Error {}

/** Why a volume cannot be mounted at a create: it is not there, not ready, or `refusal` (work on it under way) says why. */
export function volumeUnavailable(state: string | undefined, name: string, refusal?: () => string | undefined): string | undefined {
  if (state === undefined) return `no volume named ${name} (enclave volume create ${name})`;
  return state !== 'ready' ? `volume ${name} is ${state}` : refusal?.();
}

/** A held secret's name as the session's owner writes it: bare if it is the owner's own, else UID:NAME. */
export const HELD_NAME = `CASE WHEN h.owner_uid = coalesce(s.owner_uid, 0) THEN h.name ELSE h.owner_uid || ':' || h.name END`;
export const VOLUMES_OF = 'FROM session_volumes v JOIN sessions s ON s.id = v.session_id JOIN volumes o ON o.id = v.volume';
export const VOLUME_NAME_AS_SEEN = `CASE WHEN o.owner_uid = coalesce(s.owner_uid, 0) THEN o.name ELSE o.owner_uid || ':' || o.name END`;
export interface VolumeUseRow {
  session_id: string;
  name: string;
  target: string;
  readonly: number;
}
export const volumeUse = (r: VolumeUseRow) => ({ name: r.name, target: r.target, readonly: r.readonly === 1 });

export function secretNames(rows: { name: string; kind: string }[]): SessionDetails['secrets'] {
  return { auth: rows.filter((r) => r.kind === 'provider').map((r) => r.name), env_tokens: rows.filter((r) => r.kind === 'env').map((r) => r.name) };
}
