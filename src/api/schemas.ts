// Request and response shapes of the HTTP API, shared by daemon and CLI.
import { z } from 'zod';
import { INITS, PROFILES } from '../vocab/profiles.js';
import { looksSecret, MAX_SECRET_BYTES, SECRET_ENV_HINT } from '../vocab/names.js';
import { envTokenRef, EXEC_USER, providerRef, sessionName, sessionRef, SESSION_ID, SESSION_USERS, volumeName, volumeRef } from '../vocab/names.js';
import { limitRequestShape, limitsSchema } from '../vocab/limits.js';
import { copyPathProblem } from '../vocab/copyPath.js';
import { sshPublicKey } from '../vocab/sshKey.js';

export { SESSION_ID, SESSION_NAME, sessionName, sessionRef, VOLUME_NAME, volumeName } from '../vocab/names.js';
export { limitsSchema, type Limits } from '../vocab/limits.js';

export { SESSION_STATES as sessionStates, type SessionState } from '../vocab/states.js';
import { SESSION_STATES as sessionStates } from '../vocab/states.js';


const port = z.number().int().min(1).max(65535);

export const publishSchema = z
  .object({
    host_ip: z
      .string()
      .regex(/^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, 'must be a loopback address (127.x.y.z): ports are published to the host only'),
    host_port: port,
    session_port: port,
  })
  .strict();
export type Publish = z.infer<typeof publishSchema>;

// ---- volumes ---------------------------------------------------------------

/** Where a volume may not go: the OS, the kernel's filesystems and the session's own mounts. */
export const VOLUME_FORBIDDEN = ['/proc', '/sys', '/dev', '/run', '/tmp', '/usr', '/etc', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/boot'];

export const volumeTarget = z
  .string()
  .max(256)
  .regex(/^(\/[A-Za-z0-9_.+@-]+)+$/, 'must be an absolute path of [A-Za-z0-9_.+@-] components, without a trailing slash')
  .refine((t) => !t.split('/').some((c) => c === '.' || c === '..'), 'must not contain . or .. components')
  .refine((t) => !VOLUME_FORBIDDEN.some((f) => t === f || t.startsWith(`${f}/`)), `must not be in ${VOLUME_FORBIDDEN.join(', ')} (the OS and the session's own mounts)`);

/** A volume to mount: the caller's own by name, or UID:NAME (another owner's, if the policy lets it use that one). */
export const volumeMountSchema = z.object({ name: volumeRef, target: volumeTarget, readonly: z.boolean().default(false) }).strict();
export type VolumeMount = z.infer<typeof volumeMountSchema>;

/** A volume's size, MiB: the size of its ext4 image, which is its quota. */
export const volumeSizeMb = z.number().int().min(16).max(1024 * 1024);

export const createVolumeRequest = z
  .object({
    name: volumeName,
    /** The quota: the size of the volume's ext4 image (config default: volumes.default_size_mb). */
    size_mb: volumeSizeMb.optional(),
  })
  .strict();

/** POST /v1/volumes/{volume}/resize: the new size; volumes only grow. */
export const resizeVolumeRequest = z.object({ size_mb: volumeSizeMb }).strict();

/** Query of GET /v1/volumes/{volume}/export. */
export const exportQuery = z.object({ compression: z.enum(['zstd', 'none']).optional() }).strict();

export const volumeSchema = z.object({
  name: z.string(),
  id: z.string(),
  size_mb: z.number().int(),
  owner_uid: z.number().int(),
  created_at: z.string(),
  /** What its filesystem uses now, as df inside a session shows it; null when its image is not mounted on the host. */
  used_bytes: z.number().int().nullable(),
  /** Live sessions that mount it. */
  used_by: z.array(z.object({ id: z.string(), name: z.string().nullable(), target: z.string(), readonly: z.boolean() })),
});
export type Volume = z.infer<typeof volumeSchema>;
export const volumeListSchema = z.object({ volumes: z.array(volumeSchema) });

const envName = (kv: string) => kv.slice(0, Math.max(0, kv.indexOf('=')));

const envEntry = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*=[^\0]*$/, 'must be NAME=VALUE with NAME of [A-Za-z_][A-Za-z0-9_]*')
  .refine((kv) => !looksSecret(envName(kv)), { error: (iss) => `${envName(String(iss.input)).slice(0, 128)} ${SECRET_ENV_HINT}` });

const distinct = <T extends z.ZodType<string>>(item: T, max: number, what: string) =>
  z
    .array(item)
    .max(max)
    .refine((xs) => new Set(xs).size === xs.length, `names the same ${what} twice`);

/** An idle timeout, seconds: 0 (never) up to 30 days. */
export const IDLE_TIMEOUT = z.number().int().min(0).max(30 * 86400);

export const createSessionRequest = z
  .object({
    name: sessionName.optional(),
    network: z.enum(['bridge', 'none']).optional(),
    publish: z
      .array(publishSchema)
      .max(64)
      .refine((ps) => new Set(ps.map((p) => `${p.host_ip}:${p.host_port}`)).size === ps.length, 'publishes the same host address and port twice')
      .optional(),
    /** Limits (src/vocab/limits.ts); root_mb only with a writable root. */
    ...limitRequestShape,
    /** Capability profile (config default: sessions.profile). */
    profile: z.enum(PROFILES).optional(),
    /** Boot systemd as the init of a PID namespace inside the session (system profile only). */
    init: z.enum(INITS).optional(),
    /** Volumes to mount (enclave volume create NAME first). */
    volumes: z
      .array(volumeMountSchema)
      .max(8)
      .refine((vs) => new Set(vs.map((v) => v.target)).size === vs.length, 'mounts two volumes on the same target')
      .optional(),
    /** Start the console now (and at every daemon start), not on first attach. */
    console: z.boolean().optional(),
    /** Variables every command and console of the session gets (stored in its plan: never secrets). */
    env: z
      .array(envEntry.refine((kv) => !/[\t\n]/.test(kv), 'must not contain a tab or newline'))
      .max(256)
      .refine((kvs) => new Set(kvs.map((kv) => kv.slice(0, kv.indexOf('=')))).size === kvs.length, 'sets the same variable twice')
      .optional(),
    /** Providers whose tokens the session gets: the caller's own (enclave auth set PROVIDER), or UID:PROVIDER shared by its owner. */
    auth: distinct(providerRef, 16, 'provider').optional(),
    /** Env tokens the session gets as files and variables (own, or UID:NAME shared). */
    env_tokens: distinct(envTokenRef, 64, 'env token').optional(),
    /** Stop it after this many seconds with no viewer, no exec and next to no CPU use; 0: never (config default: sessions.idle_timeout_s). */
    idle_timeout_s: IDLE_TIMEOUT.optional(),
    /** Declared secrets whose files users inside may read too, by name: { "github": ["bob"] } (workspace profile; a group secret-NAME per secret). */
    secret_users: z
      .record(
        z.string().regex(/^(?:[a-z0-9][a-z0-9_-]{0,24}|[A-Z_][A-Z0-9_]{0,24})$/, 'must be the name of a secret the session declares, of at most 25 characters (its group inside is secret-NAME)'),
        SESSION_USERS,
      )
      .refine((r) => Object.keys(r).length <= 32, 'shares more than 32 secrets')
      .optional(),
    /** An OpenSSH public key line: root's authorized key, and sshd runs on port 22 inside (workspace profile). */
    ssh_key: sshPublicKey.optional(),
  })
  .strict();
export type CreateSessionRequest = z.infer<typeof createSessionRequest>;

/** A session's OOM kills: the kernel's count, and the last victim its log named (command and host PID; null when the log no longer had it). */
export const oomSchema = z.object({
  kills: z.number().int(),
  last_victim: z.object({ command: z.string().nullable(), pid: z.number().int().nullable(), at: z.string() }).nullable(),
});
export type OomView = z.infer<typeof oomSchema>;

export const sessionSchema = z.object({
  id: z.string().regex(SESSION_ID),
  name: z.string().nullable(),
  /** Fleet mode only (docs/fleet.md), never a state of a node's own record: pending (placed on no node yet), unreachable (its node's lease lapsed), lost (past the grace). */
  state: z.enum([...sessionStates, 'pending', 'unreachable', 'lost']),
  hostname: z.string(),
  init_pid: z.number().int().nullable(),
  id_range: z.object({ host_base: z.number().int(), size: z.number().int() }).nullable(),
  limits: limitsSchema,
  /** Capability profile; sessions of daemons before profiles were strict. */
  profile: z.enum(PROFILES),
  /** What it boots inside (--init), or null: Enclave's init alone. */
  init: z.enum(INITS).nullable().optional(),
  network: z.object({
    mode: z.enum(['bridge', 'none']),
    address: z.string().nullable(),
    gateway: z.string().nullable(),
    published: z.array(publishSchema),
  }),
  console: z.object({
    /** Created with --console: started at create and at daemon start. */
    keep: z.boolean(),
    running: z.boolean(),
    viewers: z.number().int(),
  }),
  created_at: z.string(),
  updated_at: z.string(),
  last_error: z.string().nullable(),
  /** The uid that created it, and owns it. */
  owner_uid: z.number().int().nullable(),
  /** The secrets it declared (names only; values never leave the store but into the session); another owner's shared one as UID:NAME. */
  secrets: z.object({ auth: z.array(z.string()), env_tokens: z.array(z.string()) }),
  volumes: z.array(z.object({ name: z.string(), target: z.string(), readonly: z.boolean() })),
  /** How the session's init ended, once it has: an exit code or a signal. */
  exit: z.object({ code: z.number().int().nullable(), signal: z.number().int().nullable() }).nullable(),
  /** Stopped after this many seconds idle (null: never). */
  idle_timeout_s: z.number().int().nullable(),
  /** Why it last stopped: "asked by uid N", or "idle for ...". */
  stopped_because: z.string().nullable(),
  /** While stopped: the bytes of its stored files. */
  stored_bytes: z.number().int().nullable(),
  /** Out-of-memory kills in the session, as the kernel counted them, and the last victim (from the kernel log; its host PID). */
  oom: oomSchema,
  /** Created with --ssh-key: sshd serves port 22 inside, for root with that key. */
  ssh: z.boolean(),
  /** Fleet mode: the node that runs it (null while pending); absent on a single daemon. */
  node: z.string().nullable().optional(),
  /** Fleet mode, on the ended old copy of a session a drain moved: the node it went to; absent otherwise. */
  moved_to: z.string().optional(),
});
export type Session = z.infer<typeof sessionSchema>;

export const sessionListSchema = z.object({ sessions: z.array(sessionSchema) });


export const errorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), field: z.string().optional(), step: z.string().optional(), errno: z.number().int().optional() }),
});

export const healthSchema = z.object({ status: z.literal('ok'), version: z.string(), sessions: z.number().int(), pid: z.number().int() });

/** POST /v1/daemon/reload: the changed keys the daemon applied, and those that wait for a restart. */
export const reloadReplySchema = z.object({ applied: z.array(z.string()), restart_needed: z.array(z.string()) });
export type ReloadReply = z.infer<typeof reloadReplySchema>;

export const flag = z
  .enum(['1', '0', 'true', 'false'])
  .transform((v) => v === '1' || v === 'true');

/** ?all=1 on a listing: every owner's (a caller allowed to see all), else the caller's own. */
export const listQuery = z.object({ all: flag.optional() }).strict();

/**
 * ?format= of the routes whose reply the CLI prints: the reply as the CLI
 * prints it (src/api/render.ts), as text/plain, instead of the API's JSON.
 * `text` is the human view, `pretty` the --json output, `ids` a listing's ids
 * one per line. What the native front end asks for; absent: the API's JSON.
 */
export const printFormat = z.enum(['text', 'pretty']);
export const listFormat = z.enum(['text', 'ids', 'pretty']);
export type PrintFormat = z.infer<typeof listFormat>;
/** The query of a route that only takes ?format= (unknown keys ignored, as before it took any). */
export const printQuery = z.object({ format: printFormat.optional() });

export const ticketSchema = z.object({ ticket: z.string(), expires_in_ms: z.number().int() });
/** POST /v1/login (the page's sign-in cookie is in Set-Cookie): whom it acts as, and until when. */
export const loginReplySchema = z.object({ uid: z.number().int(), expires_at: z.string() });
export const logoutReplySchema = z.object({ signed_out: z.literal(true) });


/** Query of GET /v1/sessions/{id}/exec (Kubernetes names plus env and cwd). */
export const execQuery = z
  .object({
    command: z.array(z.string().min(1).max(65536).refine((s) => !s.includes('\0'), 'must not contain NUL')).min(1, 'is required (repeat command= for each argument)').max(4096),
    stdin: flag.default(false),
    stdout: flag.default(true),
    stderr: flag.default(true),
    tty: flag.default(false),
    env: z.array(envEntry).max(1024).default([]),
    /** Absent: the command's HOME (root's /root, or `user`'s from the session's /etc/passwd). */
    cwd: z.string().regex(/^\/[^\0]*$/, 'must be an absolute path').max(4096).optional(),
    /** Run as this user of the session (docker's exec -u): NAME, UID, NAME:GROUP or UID:GID. Absent: the session's root. */
    user: EXEC_USER.optional(),
    // With tty: the terminal's size, bounded like attach's.
    cols: z.coerce.number().int().min(1).max(1000).optional(),
    rows: z.coerce.number().int().min(1).max(500).optional(),
  })
  .strict();
export type ExecQuery = z.infer<typeof execQuery>;

/** Query of DELETE /v1/sessions/{id}: how long the session's processes get after SIGTERM, and why it ends, if it failed. */
export const destroyQuery = z
  .object({
    /** SIGKILL at once: no SIGTERM, no grace. */
    force: flag.optional(),
    /** Seconds between SIGTERM and SIGKILL, instead of sessions.stop_grace_ms. */
    timeout: z.coerce.number().int('must be a whole number of seconds').min(0).max(3600).optional(),
    /** The session ends `failed` with this as its last error (the CLI's failed restore), not `destroyed`. */
    failure: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[^\x00-\x1f\x7f]*$/, 'must be one line of text')
      .optional(),
  })
  .strict()
  .refine((q) => !(q.force && q.timeout !== undefined), { message: 'force and timeout exclude each other', path: ['timeout'] });
export type DestroyQuery = z.infer<typeof destroyQuery>;

/** Query of GET /v1/sessions/{id}/logs. */
export const logsQuery = z.object({ follow: flag.optional() }).strict();

/** GET /v1/sessions/{id}/stats: what a running session uses now, read from the kernel. */
export const statsSchema = z.object({
  id: z.string(),
  name: z.string().nullable(),
  /** When the counters were read. */
  sampled_at: z.string(),
  cpu: z.object({
    /** CPU time used since the session started (cgroup v2 cpu.stat usage_usec). */
    usage_usec: z.number().nullable(),
    /** Over the last moment (at least 250 ms), 100 = one CPU; its limit is limits.cpu_percent. */
    percent: z.number().nullable(),
  }),
  memory: z.object({ used_bytes: z.number().nullable(), limit_bytes: z.number().nullable() }),
  pids: z.object({ current: z.number().nullable(), limit: z.number().nullable() }),
  /** The session's own view: rx is what it received (the host end of its veth sent), tx what it sent. null without a network. */
  network: z.object({ rx_bytes: z.number(), tx_bytes: z.number() }).nullable(),
  disk: z.object({
    /** The writable root layer's tmpfs (null: a read-only root). */
    layer_bytes: z.number().nullable(),
    /** The /home tmpfs (null: /home is a volume). */
    home_bytes: z.number().nullable(),
    tmp_bytes: z.number().nullable(),
    /** Each volume's image: the blocks allocated on the host. */
    volumes: z.array(z.object({ name: z.string(), target: z.string(), bytes: z.number() })),
  }),
  oom: z.object({ kills: z.number().int() }),
});
export type SessionStats = z.infer<typeof statsSchema>;

/**
 * Query of GET /v1/sessions/{id}/cp: a tar streamed out of the session
 * (direction=out, path the source) or into it (direction=in, path the
 * destination), read as docker cp reads paths (src/vocab/copyPath.ts).
 */
export const cpQuery = z
  .object({
    direction: z.enum(['in', 'out']),
    path: z.string().superRefine((p, ctx) => {
      const problem = copyPathProblem(p);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    /** Keep owners: the host's numeric uid/gid into the session (in); out, the CLI keeps the session's. */
    archive: flag.default(false),
  })
  .strict();
export type CpQuery = z.infer<typeof cpQuery>;

/** Query of GET /v1/sessions/{id}/snapshot. */
export const snapshotQuery = z.object({ compression: z.enum(['zstd', 'none']).optional(), volumes: flag.optional() }).strict();

/** Query of GET /v1/sessions/{id}/attach. */
export const attachQuery = z
  .object({
    role: z.enum(['rw', 'ro']).default('rw'),
    resume: z.coerce.number().int().min(0).optional(),
    cols: z.coerce.number().int().min(1).max(1000).optional(),
    rows: z.coerce.number().int().min(1).max(500).optional(),
  })
  .strict();

export const execStatusSchema = z.object({
  status: z.enum(['Success', 'Failure']),
  message: z.string().optional(),
  reason: z.string().optional(),
  details: z
    .object({ causes: z.array(z.object({ reason: z.string(), message: z.string() })).optional() })
    .optional(),
});
export type ExecStatus = z.infer<typeof execStatusSchema>;

// ---- the secret store (enclave auth) ------------------------------------

/** PUT /v1/auth/{name}: the value as base64, so any bytes arrive exactly. */
export const putSecretRequest = z
  .object({
    /** Root only: others may use it (auth.use), never read, list, replace or remove it. */
    shared: z.boolean().optional(),
    value_base64: z
      .string()
      .max(Math.ceil(MAX_SECRET_BYTES / 3) * 4 + 4, `must encode at most ${MAX_SECRET_BYTES} bytes`)
      .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64'),
  })
  .strict();

const sessionRefs = z.array(z.object({ id: z.string(), name: z.string().nullable() }));

export const secretInfoSchema = z.object({
  name: z.string(),
  owner_uid: z.number().int(),
  /** Shared by root: usable by others as UID:NAME. */
  shared: z.boolean(),
  kind: z.enum(['provider', 'env']),
  version: z.number().int(),
  set_at: z.string(),
  /** When the value last changed, null if it never has. */
  rotated_at: z.string().nullable(),
  /** Live sessions that declared it. */
  used_by: z.number().int(),
});
export type SecretInfoView = z.infer<typeof secretInfoSchema>;

export const secretListSchema = z.object({ secrets: z.array(secretInfoSchema) });

export const putSecretReply = secretInfoSchema.extend({
  created: z.boolean(),
  /** Live sessions still holding the previous value (refresh-auth them). */
  stale_sessions: sessionRefs,
});

export const removeSecretReply = z.object({ name: z.string(), still_held_by: sessionRefs });

export const refreshAuthReply = z.object({
  id: z.string(),
  refreshed: z.array(z.string()),
  /** Declared, but no longer in the store: the session keeps what it has. */
  missing: z.array(z.string()),
});
