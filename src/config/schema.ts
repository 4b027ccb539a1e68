// The daemon's configuration: every key, its type and its default. The TOML
// file (config.example.toml documents the same keys) may set any subset.
import { z } from 'zod';
import { providersConfig } from '../secrets/providers.js';
import { ruleSchema } from '../access/policy.js';
import { budgetRuleSchema, budgetSchema } from '../access/budgets.js';
import { PROFILES } from '../vocab/profiles.js';
import { LIMITS, limitValue, type LimitKey } from '../vocab/limits.js';
import { AGENT_MAX_EXECS } from '../native/contract.gen.js';

const absolutePath = z.string().regex(/^\/[^\0\n\t]*$/, 'must be an absolute path');
const cgroupName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'must be a single path component of [A-Za-z0-9_.-]');
const ifName = z.string().regex(/^[a-z][a-z0-9_-]{0,14}$/, 'must be a valid interface name (max 15 chars)');
const cidr = z.string().regex(/^(\d{1,3}\.){3}\d{1,3}\/(\d|[12]\d|3[0-2])$/, 'must be an IPv4 CIDR like 10.200.0.0/16');

export const MIB = 1024 * 1024;

export const configSchema = z
  .object({
    state_dir: absolutePath.default('/var/lib/enclave'),
    socket: absolutePath.default('/run/enclave/enclave.sock'),
    /** Where daemons lock what they own (state dir, cgroup parent, bridge, table, IDs): the same for every daemon of a host. */
    locks_dir: absolutePath.default('/run/enclave/locks'),
    /** Group (numeric gid) allowed to use the socket besides root; 0 = root only. */
    socket_gid: z.number().int().min(0).max(4294967294).default(0),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    /** json: one JSON object per line (pino); pretty: one readable line per event (pino-pretty); auto: pretty when stdout is a terminal. */
    log_format: z.enum(['auto', 'json', 'pretty']).default('auto'),
    /** Optional TCP listener for the browser page: a loopback HOST:PORT. */
    listen: z
      .string()
      .regex(/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d{1,5}$/, 'must be a loopback address and port, like 127.0.0.1:7777')
      .optional(),
    sessions: z
      .object({
        /**
         * "minimal": the host's /usr plus a generated /etc and an empty /var (see
         * src/isolation/baseLayer.ts), nothing of the host's data. Or a root
         * directory (a debootstrap, say), idmapped into each session; "/" is the
         * host's whole root, unmapped and read-only (doctor warns).
         */
        rootfs: z.union([z.literal('minimal'), absolutePath]).default('minimal'),
        /** Capability profile of sessions created without --profile. */
        profile: z.enum(PROFILES).default('workspace'),
        /** Host paths masked (empty, read-only) in every session, besides the state dir and socket dir. */
        hide: z.array(absolutePath).default(['/root', '/etc/enclave', '/var/lib/enclave', '/run/enclave']),
        /** SIGTERM-to-SIGKILL grace on destroy, in milliseconds. */
        stop_grace_ms: z.number().int().min(0).max(600_000).default(5000),
        /** Stop a session after this many seconds with no viewer, no exec and next to no CPU (0: never); --idle-timeout overrides it. */
        idle_timeout_s: z.number().int().min(0).max(30 * 86400).default(0),
        /** On SIGTERM, how long the daemon waits for creates and destroys under way before it exits anyway (sessions keep running; the next start finishes what was asked). */
        shutdown_deadline_ms: z.number().int().min(0).max(600_000).default(10_000),
        max_sessions: z.number().int().min(1).max(100_000).default(1000),
        /** The longest a snapshot may keep a session frozen, ms: past it the stream is cut and the session thawed. */
        snapshot_timeout_ms: z.number().int().min(100).max(86_400_000).default(600_000),
        /** Ended (stopped or failed) sessions kept for list --all and show; older ones are pruned. */
        keep_history: z.number().int().min(0).max(1_000_000).default(1000),
        /**
         * "on": sessions read their own memory, CPUs, uptime and load in /proc
         * (the daemon runs lxcfs); while lxcfs does not serve, a session is
         * made with the kernel's files and the daemon logs why (as LXD does).
         * "required": such a create or start is refused instead. "off": the
         * kernel's /proc, whose numbers are the host's.
         */
        lxcfs: z.enum(['on', 'required', 'off']).default('on'),
      })
      .strict()
      .prefault({}),
    /**
     * Sessions made ahead, per shape (profile_network), handed out to a
     * create of that shape with nothing a made session cannot take
     * (src/sessions/poolPolicy.ts). 0: none (every create is cold).
     */
    pool: z
      .object({
        workspace_bridge: z.number().int().min(0).max(16).default(0),
        workspace_none: z.number().int().min(0).max(16).default(0),
        strict_bridge: z.number().int().min(0).max(16).default(0),
        strict_none: z.number().int().min(0).max(16).default(0),
      })
      .strict()
      .prefault({}),
    volumes: z
      .object({
        /** Size (the quota) of a volume created without --size, MiB: a sparse ext4 image, so only what is written takes host disk. */
        default_size_mb: z.number().int().min(16).max(1024 * 1024).default(1024),
        /** A volume is created only if the state dir's disk keeps this much free (MiB) after its whole size. */
        reserve_mb: z.number().int().min(0).max(1024 * 1024 * 1024).default(1024),
      })
      .strict()
      .prefault({}),
    ids: z
      .object({
        /** First host uid/gid of slot 0; slot n maps 0..size-1 to base + n*size. */
        base: z.number().int().min(65536).max(4294967294).default(100000),
        size: z.number().int().min(1).max(65536 * 16).default(65536),
        slots: z.number().int().min(1).max(65536).default(1000),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        /** Defaults of sessions created without the flag, one per row of the limits table (src/vocab/limits.ts). */
        ...(Object.fromEntries(LIMITS.map((r) => [r.key, limitValue(r).default(r.default)])) as { [K in LimitKey]: z.ZodDefault<z.ZodNumber> }),
        /** On out-of-memory: the kernel kills the offending process, or the whole session ends. */
        oom: z.enum(['process', 'session']).default('process'),
      })
      .strict()
      .prefault({}),
    rlimits: z
      .object({
        /** Open files per process (soft = hard). */
        nofile: z.number().int().min(64).max(1_048_576).default(4096),
        /** Tasks of the session's range; 0 = the session's pids limit + 1 (the cgroup bites first). */
        nproc: z.number().int().min(0).max(4_194_304).default(0),
        /** Largest file a process may write, MiB; 0 = unlimited. */
        fsize_mb: z.number().int().min(0).max(1024 * 1024 * 1024).default(0),
      })
      .strict()
      .prefault({}),
    tmpfs: z
      .object({
        home_inodes: z.number().int().min(16).max(100_000_000).default(65536),
        /** Inodes of the writable root layer. */
        root_inodes: z.number().int().min(64).max(100_000_000).default(262144),
        tmp_inodes: z.number().int().min(16).max(100_000_000).default(65536),
        secrets_mb: z.number().int().min(1).max(64).default(1),
        secrets_inodes: z.number().int().min(16).max(65536).default(256),
      })
      .strict()
      .prefault({}),
    cgroups: z
      .object({
        /** Name of the directory holding session cgroups in every hierarchy. */
        parent: cgroupName.default('enclave'),
        root: absolutePath.default('/sys/fs/cgroup'),
      })
      .strict()
      .prefault({}),
    terminal: z
      .object({
        /** Replay ring per console, bytes. */
        ring_bytes: z.number().int().min(64 * 1024).max(256 * 1024 * 1024).default(2 * 1024 * 1024),
        /** Console size policy: the latest resizing writer, or the smallest writer. */
        resize: z.enum(['latest', 'smallest']).default('latest'),
        /** Scrollback lines in the screen snapshot a client gets when it cannot resume from the ring. */
        snapshot_scrollback: z.number().int().min(0).max(100_000).default(1000),
        /** A viewer behind by more than this is disconnected (memory bound per viewer). */
        max_lag_bytes: z.number().int().min(1024 * 1024).max(1024 * 1024 * 1024).default(64 * 1024 * 1024),
        /** A viewer with output waiting and no progress for this long is disconnected. */
        stall_ms: z.number().int().min(100).max(600_000).default(5000),
        /** Attached clients per session, and in all. More are refused with 429. */
        max_viewers_per_session: z.number().int().min(1).max(10_000).default(16),
        max_viewers: z.number().int().min(1).max(100_000).default(256),
        /** WebSocket ping interval; a client that misses a pong is closed. */
        ping_ms: z.number().int().min(100).max(600_000).default(30_000),
      })
      .strict()
      .prefault({}),
    api: z
      .object({
        /** Concurrent exec streams (piped or --tty) into one session, and from one caller (uid, or the TCP token). More get 429. */
        max_exec_streams_per_session: z.number().int().min(1).max(AGENT_MAX_EXECS).default(64),
        max_exec_streams_per_caller: z.number().int().min(1).max(100_000).default(256),
        /** The most one `session cp` streams either way (tar and the session's messages), in MiB: a session can send an endless tar. */
        max_copy_mb: z.number().int().min(1).max(1_048_576).default(16384),
      })
      .strict()
      .prefault({}),
    access: z
      .object({
        /** Who may do what besides root (see docs/operations.md): deny wins; no rule, no access. */
        rules: z.array(ruleSchema).max(1024).default([]),
        /** The uid a TCP (browser page) caller acts as: its bearer token stands for this user. */
        tcp_uid: z.number().int().min(0).max(4294967294).default(0),
        /** Audit events kept per caller uid (the newest of each), so no caller can push another's out. */
        keep_events: z.number().int().min(100).max(100_000_000).default(100_000),
        /** State-changing calls (create, destroy, refresh-auth, auth set/remove) per minute per non-root uid. */
        rate_per_minute: z.number().int().min(1).max(1_000_000).default(120),
        /** Live sessions one non-root uid may own (the budget's sessions.total unless it sets one). */
        max_sessions_per_uid: z.number().int().min(0).max(100_000).default(16),
        /** Every non-root user's budget (src/access/budgets.ts). */
        budget: budgetSchema.prefault({}),
        /** Budgets for the uids and gids they name, over access.budget (the first that matches). */
        budgets: z.array(budgetRuleSchema).max(1024).default([]),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        /** Auth providers besides (or over) the built-in github, gitlab, npm and pypi. */
        providers: providersConfig.default({}),
      })
      .strict()
      .prefault({}),
    capacity: z
      .object({
        /** What all sessions together may use (the daemon's parent cgroup), MiB; 0: the host's memory less reserve_memory_mb. */
        memory_mb: z.number().int().min(0).max(1024 * 1024 * 1024).default(0),
        reserve_memory_mb: z.number().int().min(0).max(1024 * 1024 * 1024).default(1024),
        /** CPU all sessions together may use, 100 = one CPU; 0: the host's CPUs less reserve_cpu_percent. */
        cpu_percent: z.number().int().min(0).max(100 * 1024).default(0),
        reserve_cpu_percent: z.number().int().min(0).max(100 * 1024).default(50),
        /** Tasks all sessions together may have; 0: the kernel's pid_max (or threads-max, if lower) less reserve_pids. */
        pids: z.number().int().min(0).max(4_194_304).default(0),
        reserve_pids: z.number().int().min(0).max(4_194_304).default(4096),
      })
      .strict()
      .prefault({}),
    /**
     * Fleet mode (src/fleet/): this daemon is one node of a fleet whose shared
     * state is an etcd cluster. Absent: a single daemon, exactly as without it.
     */
    cluster: z
      .object({
        /** etcd client URLs: http://127.0.0.1:2379, or https:// with the TLS files below. */
        endpoints: z.array(z.string().regex(/^https?:\/\/[A-Za-z0-9.\-\[\]:]+$/, 'must be an etcd client URL like http://127.0.0.1:2379')).min(1).max(16),
        /** This node's name, unique in the fleet. */
        node: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be a node name of [a-z0-9-], up to 63 characters'),
        /** Where other nodes and tools reach this node's API (for now: its Unix socket path, or HOST:PORT). */
        endpoint: z.string().min(1).max(256).optional(),
        /** The node's lease, seconds: a node that stops renewing it is unreachable this long after. 1 s for tests. */
        lease_ttl_s: z.number().int().min(1).max(3600).default(10),
        /** How long an unreachable node's sessions stay unreachable before the fleet declares them lost, seconds; a node back after it fences them (docs/fleet.md "Failure"). */
        grace_s: z.number().int().min(0).max(86_400).default(300),
        /** Candidates a placement compares (best of K by free capacity). */
        candidates: z.number().int().min(1).max(64).default(3),
        /** How long a create placed on another node waits for it to run, ms. */
        create_timeout_ms: z.number().int().min(1000).max(600_000).default(120_000),
        /** How often the fleet compacts etcd's history, seconds (one node a round, to the revision of the round before: src/fleet/compactor.ts); 0 leaves it to etcd's own --auto-compaction. */
        compact_interval_s: z.number().int().min(0).max(86_400).default(300),
        /** How often this node looks for changes to its list that no caller waits for (a session exiting, a console's viewers) and writes them to etcd, ms (src/fleet/listPublisher.ts); a caller's own change is written before it is answered. */
        list_interval_ms: z.number().int().min(50).max(60_000).default(250),
        /** TLS to etcd: its CA, and this node's client certificate and key (all three, or none). */
        tls: z.object({ ca: absolutePath, cert: absolutePath, key: absolutePath }).strict().optional(),
        /**
         * The node-to-node channel (mutual TLS, src/fleet/peerTls.ts): where this node listens
         * for other nodes (HOST:PORT, advertised as its endpoint unless `endpoint` says
         * otherwise), the fleet's CA, and this node's certificate (its CN the node name) and
         * key. Absent: nothing is forwarded to or from this node.
         */
        peer: z
          .object({
            listen: z.string().regex(/^[A-Za-z0-9.\-]+:\d{1,5}$/, 'must be HOST:PORT, like 10.0.0.5:7443'),
            ca: absolutePath,
            cert: absolutePath,
            key: absolutePath,
            /** The fleet CAs' revocation lists (PEM, one per CA): a node whose certificate they revoke is refused both ways; read again on a reload. */
            crl: absolutePath.optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
    network: z
      .object({
        bridge: ifName.default('enclave0'),
        /** nftables table (family inet) holding every Enclave rule. */
        table: z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,31}$/, 'must be a table name of letters, digits and _').default('enclave'),
        subnet: cidr.default('10.200.0.0/16'),
        egress: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    const last = c.ids.base + c.ids.size * c.ids.slots - 1;
    if (last > 4294967294) {
      ctx.addIssue({ code: 'custom', path: ['ids', 'slots'], message: `ID ranges end at ${last}, past the largest host ID 4294967294` });
    }
  });

export type Config = z.infer<typeof configSchema>;
