// Typed queries over sessions, ID slots and recorded kernel objects.
import type Database from 'better-sqlite3';
import type { Limits, SessionState } from '../api/schemas.js';
import { ACTIVE_SQL, ENDED_SQL, LIVE_SQL, LIVE_STATES } from '../vocab/states.js';
import { deleteEnded } from './endedRows.js';
import type { Init, Profile } from '../vocab/profiles.js';
import { LIMITS, type Usage } from '../vocab/limits.js';
// The row shapes and the columns each query reads are sessionRows.ts's.
import { AddressesExhaustedError, HELD_NAME, PortTakenError, rowSchema, secretNames, SlotsExhaustedError } from './sessionRows.js';
import { VOLUME_NAME_AS_SEEN, volumeUse, VolumeUnavailableError, VOLUMES_OF, type KernelObject, type PublishedPort, type SessionDetails, type SessionRow, type SessionSummary, type TableRow, type VolumeUseRow } from './sessionRows.js';
import { PoolStore } from './poolStore.js';
import { FleetRows } from './fleetRows.js';
import { Listings, type Listing } from './listings.js';

export * from './sessionRows.js';
export { LIVE_STATES };

export class SessionStore {
  /** The pool's members (src/sessions/pool.ts). */
  readonly pool: PoolStore;
  /** What a fleet node keeps on its rows (fleetRows.ts). */
  readonly fleet: FleetRows;

  constructor(private readonly db: Database.Database) {
    this.pool = new PoolStore(db, this);
    this.fleet = new FleetRows(db, (sql) => this.q(sql));
    this.listings = new Listings(db, (sql) => this.q(sql), this);
  }
  private readonly listings: Listings;

  /** Moves with every write to a table a list reads (listVersion.ts): list() and listTable() change only with it. */
  readonly listVersion = (): number => this.listings.version();

  /** Statements compiled once per SQL text (the texts are this file's constants, so the cache is bounded). */
  private readonly statements = new Map<string, Database.Statement>();

  private q(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) this.statements.set(sql, (st = this.db.prepare(sql)));
    return st;
  }

  /** Just the state (no row parse): for sweeps that ask of every cgroup and link. */
  stateOf(id: string): SessionState | undefined {
    const r = this.q('SELECT state FROM sessions WHERE id = ?').get(id) as { state: string } | undefined;
    return r === undefined ? undefined : rowSchema.shape.state.parse(r.state);
  }

  get(id: string): SessionRow | undefined {
    const row = this.q('SELECT s.*, p.plan FROM sessions s LEFT JOIN session_plans p ON p.session_id = s.id WHERE s.id = ?').get(id);
    return row ? rowSchema.parse(row) : undefined;
  }

  /** An owner's live session of that name (names are per owner). */
  getLiveByName(owner: number, name: string): SessionRow | undefined {
    const row = this.q(`SELECT s.*, p.plan FROM sessions s LEFT JOIN session_plans p ON p.session_id = s.id WHERE s.owner_uid = ? AND s.name = ? AND s.state IN ${LIVE_SQL}`)
      .get(owner, name);
    return row ? rowSchema.parse(row) : undefined;
  }

  /** An owner's most recent session with that name, live or not. */
  getLatestByName(owner: number, name: string): SessionRow | undefined {
    const row = this.q('SELECT s.*, p.plan FROM sessions s LEFT JOIN session_plans p ON p.session_id = s.id WHERE s.owner_uid = ? AND s.name = ? ORDER BY s.created_at DESC, s.rowid DESC LIMIT 1').get(owner, name);
    return row ? rowSchema.parse(row) : undefined;
  }

  /**
   * What an owner's sessions hold (budgets): every session it has, stopped
   * ones too (each keeps a name, an address and its stored files); the
   * limits summed over those with processes (a stopped one uses none).
   */
  usageOf(owner: number): Usage {
    const sums = LIMITS.map((r) => `coalesce(sum(CASE WHEN state IN ${ACTIVE_SQL} THEN json_extract(limits, '$.${r.key}') END), 0) AS ${r.key}`).join(', ');
    return this.q(`SELECT count(*) AS sessions, ${sums} FROM sessions WHERE owner_uid = ? AND state IN ${LIVE_SQL}`).get(owner) as Usage;
  }

  /** The API's list: each listed session's row and details, kept between lists and read again where changed (listings.ts). */
  listing(includeDestroyed: boolean): Listing {
    return this.listings.listing(includeDestroyed);
  }

  list(includeDestroyed: boolean): readonly SessionSummary[] {
    return this.listings.listing(includeDestroyed).rows;
  }

  /** What `session list` shows of each (?format=text): its table's columns and lease, no JSON column parsed. */
  listTable(includeDestroyed: boolean): readonly TableRow[] {
    return this.listings.table(includeDestroyed);
  }

  detailsOf(id: string): SessionDetails {
    return { lease: this.leaseOf(id), ports: this.portsOf(id), secrets: this.secretNamesOf(id), volumes: this.volumesOf(id) };
  }

  /** detailsOf() for every session at once: four queries for a whole listing, not four per row. */
  detailsOfAll(): (id: string) => SessionDetails {
    const leases = new Map<string, number>();
    for (const r of this.q('SELECT session_id, address FROM ip_leases').all() as { session_id: string; address: number }[]) leases.set(r.session_id, r.address);
    const group = <R extends { session_id: string }, T>(rows: R[], f: (r: R) => T) => {
      const m = new Map<string, T[]>();
      for (const r of rows) {
        let xs = m.get(r.session_id);
        if (!xs) m.set(r.session_id, (xs = []));
        xs.push(f(r));
      }
      return m;
    };
    const ports = group(
      this.q('SELECT session_id, host_ip, host_port, session_port FROM published_ports ORDER BY session_id, host_ip, host_port').all() as (PublishedPort & { session_id: string })[],
      (r) => ({ host_ip: r.host_ip, host_port: r.host_port, session_port: r.session_port }),
    );
    const secrets = group(this.q(`SELECT h.session_id, ${HELD_NAME} AS name, h.kind FROM session_secrets h JOIN sessions s ON s.id = h.session_id ORDER BY h.rowid`).all() as { session_id: string; name: string; kind: string }[], (r) => r);
    const volumes = group(this.q(`SELECT v.session_id, ${VOLUME_NAME_AS_SEEN} AS name, v.target, v.readonly ${VOLUMES_OF} ORDER BY v.session_id, v.target`).all() as VolumeUseRow[], volumeUse);
    return (id) => ({ lease: leases.get(id), ports: ports.get(id) ?? [], secrets: secretNames(secrets.get(id) ?? []), volumes: volumes.get(id) ?? [] });
  }

  listInStates(states: readonly SessionState[]): SessionRow[] {
    const marks = states.map(() => '?').join(',');
    return this.q(`SELECT s.*, p.plan FROM sessions s LEFT JOIN session_plans p ON p.session_id = s.id WHERE s.state IN (${marks}) ORDER BY s.created_at, s.rowid`).all(...states).map((r) => rowSchema.parse(r));
  }

  /** Sessions with processes and kernel objects: what the host carries (sessions.max_sessions). */
  countActive(): number {
    const r = this.q(`SELECT count(*) AS n FROM sessions WHERE state IN ${ACTIVE_SQL}`).get() as { n: number };
    return r.n;
  }

  /**
   * Insert a session in state 'creating' with the lowest free ID slot and its
   * kernel objects, all in one transaction, before anything is created.
   */
  insertCreating(args: {
    id: string;
    name: string | null;
    hostname: string;
    limits: Limits;
    slots: number;
    objects: KernelObject[];
    /** Lease an address from [first, last] (bridge networking), or none. */
    addresses?: { first: number; last: number } | undefined;
    publish?: PublishedPort[];
    keepConsole?: boolean;
    ownerUid: number;
    /** A pool member's shape: no owner until it is handed out (src/sessions/pool.ts). */
    pool?: string | undefined;
    profile: Profile;
    /** What it boots inside (--init), if anything. */
    init?: Init | undefined;
    /** Volumes to mount, by id: `unavailable` (sessionRows.ts's volumeUnavailable) says why one cannot be from its state (undefined: no row), in the same transaction as the row. */
    volumes?: { id: string; target: string; readonly: boolean; unavailable: (state: string | undefined) => string | undefined }[];
    /** The owner's budget, checked against its live sessions in the same transaction (throws to refuse). */
    admit?: ((usage: Usage) => void) | undefined;
    idleTimeoutS?: number | undefined;
    /** Its plain environment; root's authorized OpenSSH key (sshd runs inside). */ env?: string[] | undefined; sshKey?: string | undefined;
    /** Made for a fleet's placement (migration 022). */
    placed?: boolean | undefined;
  }): SessionRow {
    const now = new Date().toISOString();
    this.db
      .transaction(() => {
        const free = this.freeSlot(args.slots);
        args.admit?.(this.usageOf(args.ownerUid));
        if (!free) throw new SlotsExhaustedError(`all ${args.slots} ID-range slots are in use`);
        this.q(
            `INSERT INTO sessions (id, name, state, hostname, id_slot, limits, created_at, updated_at, network, keep_console, owner_uid, profile, idle_timeout_s, env, ssh_key, pool, init, placed)
             VALUES (?, ?, 'creating', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(args.id, args.name, args.hostname, free.slot, JSON.stringify(args.limits), now, now, args.addresses ? 'bridge' : 'none', args.keepConsole ? 1 : 0, args.pool === undefined ? args.ownerUid : null, args.profile, args.idleTimeoutS ?? null, args.env?.length ? JSON.stringify(args.env) : null, args.sshKey ?? null, args.pool ?? null, args.init ?? null, args.placed ? 1 : 0);
        this.q('INSERT INTO id_slots (slot, session_id) VALUES (?, ?)').run(free.slot, args.id);
        if (args.addresses) {
          const { first, last } = args.addresses;
          const lease = this.q(
              `SELECT s.address + 1 AS address FROM (SELECT ? AS address UNION ALL SELECT address FROM ip_leases) s
               WHERE s.address + 1 BETWEEN ? AND ? AND NOT EXISTS (SELECT 1 FROM ip_leases t WHERE t.address = s.address + 1)
               ORDER BY s.address LIMIT 1`,
            )
            .get(first - 1, first, last) as { address: number } | undefined;
          if (!lease) throw new AddressesExhaustedError(`all ${last - first + 1} session addresses of the subnet are leased`);
          this.q('INSERT INTO ip_leases (address, session_id) VALUES (?, ?)').run(lease.address, args.id);
        }
        const port = this.q('INSERT INTO published_ports (host_ip, host_port, session_id, session_port) VALUES (?, ?, ?, ?)');
        for (const p of args.publish ?? []) {
          const taken = this.portHolder(p);
          if (taken) throw new PortTakenError(`${p.host_ip}:${p.host_port}`, taken.session_id, taken.owner_uid);
          port.run(p.host_ip, p.host_port, args.id, p.session_port);
        }
        this.recordObjects(args.id, args.objects);
        for (const v of args.volumes ?? []) {
          const why = v.unavailable((this.q('SELECT state FROM volumes WHERE id = ?').get(v.id) as { state: string } | undefined)?.state);
          if (why) throw new VolumeUnavailableError(why);
          this.q('INSERT INTO session_volumes (session_id, volume, target, readonly) VALUES (?, ?, ?, ?)').run(args.id, v.id, v.target, v.readonly ? 1 : 0);
        }
      })
      .immediate();
    return this.get(args.id)!;
  }

  /** The lowest free ID slot below `slots`. */
  private freeSlot(slots: number): { slot: number } | undefined {
    return this.q(
      `SELECT s.slot + 1 AS slot FROM (SELECT -1 AS slot UNION ALL SELECT slot FROM id_slots) s
       WHERE s.slot + 1 < ? AND NOT EXISTS (SELECT 1 FROM id_slots t WHERE t.slot = s.slot + 1)
       ORDER BY s.slot LIMIT 1`,
    ).get(slots) as { slot: number } | undefined;
  }

  private recordObjects(id: string, objects: KernelObject[]): void {
    const obj = this.q('INSERT INTO kernel_objects (session_id, kind, ref) VALUES (?, ?, ?)');
    for (const o of objects) obj.run(id, o.kind, o.ref);
  }

  /**
   * A stopped session starts: an ID slot and its kernel objects recorded
   * before any exists, and the owner's budget checked, in one transaction;
   * false if it is not stopped (any more).
   */
  reserveStart(id: string, args: { slots: number; objects: KernelObject[]; admit?: ((usage: Usage) => void) | undefined }): boolean {
    return this.db
      .transaction(() => {
        const row = this.q('SELECT state, owner_uid FROM sessions WHERE id = ?').get(id) as { state: string; owner_uid: number | null } | undefined;
        if (row?.state !== 'stopped') return false;
        args.admit?.(this.usageOf(row.owner_uid ?? 0));
        const free = this.freeSlot(args.slots);
        if (!free) throw new SlotsExhaustedError(`all ${args.slots} ID-range slots are in use`);
        this.q('INSERT INTO id_slots (slot, session_id) VALUES (?, ?)').run(free.slot, id);
        this.recordObjects(id, args.objects);
        this.q(`UPDATE sessions SET state = 'starting', id_slot = ?, last_error = NULL, exit_code = NULL, exit_signal = NULL, updated_at = ? WHERE id = ?`).run(free.slot, new Date().toISOString(), id);
        return true;
      })
      .immediate();
  }

  /** Sessions per state, from the state index (no scan of history rows). */
  countByState(): Map<string, number> {
    const rows = this.q('SELECT state, count(*) AS n FROM sessions INDEXED BY sessions_state GROUP BY state').all() as { state: string; n: number }[];
    return new Map(rows.map((r) => [r.state, r.n]));
  }

  /** Keep the newest `keep` ended sessions; delete the rest. Returns how many went. */
  pruneHistory(keep: number): number {
    // A session whose link is still going keeps its row (its lease refers to it).
    return deleteEnded(this.db, (sql) => this.q(sql), `SELECT id FROM sessions WHERE state IN ${ENDED_SQL} AND id NOT IN (SELECT session_id FROM ip_leases) ORDER BY updated_at DESC, rowid DESC LIMIT -1 OFFSET ?`, keep);
  }

  /** Store the plan before anything executes it. */
  setPlan(id: string, planJson: string): void {
    this.q(`INSERT OR REPLACE INTO session_plans (session_id, plan) SELECT id, ? FROM sessions WHERE id = ? AND state IN ('creating', 'starting')`).run(planJson, id);
  }

  markRunning(id: string, pid: number, startTime: string): void {
    this.q(`UPDATE sessions SET state = 'running', init_pid = ?, init_start_time = ?, updated_at = ? WHERE id = ? AND state IN ('creating', 'starting')`)
      .run(pid, startTime, new Date().toISOString(), id);
  }

  /** The intent to destroy, recorded before acting: survives a daemon crash mid-destroy. */
  markDestroying(id: string, reason: string | undefined): void {
    this.q(`UPDATE sessions SET state = 'destroying', stop_reason = ?, updated_at = ? WHERE id = ?`)
      .run(reason ?? null, new Date().toISOString(), id);
  }

  /** The intent to stop, and why (a caller, or idleness). */
  markStopping(id: string, because: string): void {
    this.q(`UPDATE sessions SET state = 'stopping', stopped_because = ?, updated_at = ? WHERE id = ?`).run(because, new Date().toISOString(), id);
  }

  /** A stop that could not store the files: the session runs on, saying why. */
  stopAbandoned(id: string, error: string): void {
    this.q(`UPDATE sessions SET state = 'running', last_error = ?, updated_at = ? WHERE id = ? AND state = 'stopping'`).run(error, new Date().toISOString(), id);
  }

  /** How the init ended, when the daemon saw it. */
  recordExit(id: string, code: number | null, signal: number | null): void {
    this.q('UPDATE sessions SET exit_code = ?, exit_signal = ? WHERE id = ?').run(code, signal, id);
  }

  kernelObjects(id: string): KernelObject[] {
    return this.q('SELECT kind, ref FROM kernel_objects WHERE session_id = ? ORDER BY ref').all(id) as KernelObject[];
  }

  /** The firewall's elements: every address leased now (live sessions' and ended ones' whose link is still going), every port published by a session with processes, with its address. */
  firewallElements(): { leased: number[]; published: (PublishedPort & { session_id: string; address: number })[] } {
    const leased = (this.q('SELECT address FROM ip_leases ORDER BY address').all() as { address: number }[]).map((r) => r.address);
    // A stopped session keeps its ports in the database, not in the table: nothing answers for it.
    const published = this.q(
      `SELECT p.session_id, p.host_ip, p.host_port, p.session_port, l.address FROM published_ports p JOIN ip_leases l USING (session_id) JOIN sessions s ON s.id = p.session_id
       WHERE s.state IN ${ACTIVE_SQL} ORDER BY p.host_ip, p.host_port`,
    ).all();
    return { leased, published: published as (PublishedPort & { session_id: string; address: number })[] };
  }

  leaseOf(id: string): number | undefined {
    const r = this.q('SELECT address FROM ip_leases WHERE session_id = ?').get(id) as { address: number } | undefined;
    return r?.address;
  }

  portsOf(id: string): PublishedPort[] {
    return this.q('SELECT host_ip, host_port, session_port FROM published_ports WHERE session_id = ? ORDER BY host_ip, host_port').all(id) as PublishedPort[];
  }

  private portHolder(p: { host_ip: string; host_port: number }): { session_id: string; owner_uid: number | null } | undefined {
    return this.q('SELECT p.session_id, s.owner_uid FROM published_ports p JOIN sessions s ON s.id = p.session_id WHERE p.host_ip = ? AND p.host_port = ?').get(p.host_ip, p.host_port) as
      | { session_id: string; owner_uid: number | null }
      | undefined;
  }

  /** One more published port of a live session, refused if another session has that host address and port. */
  addPort(id: string, p: PublishedPort): void {
    this.db
      .transaction(() => {
        const taken = this.portHolder(p);
        if (taken) throw new PortTakenError(`${p.host_ip}:${p.host_port}`, taken.session_id, taken.owner_uid);
        this.q('INSERT INTO published_ports (host_ip, host_port, session_id, session_port) VALUES (?, ?, ?, ?)').run(p.host_ip, p.host_port, id, p.session_port);
      })
      .immediate();
  }

  /** Whether that port was this session's (and is no longer). */
  removePort(id: string, hostIp: string, hostPort: number): boolean {
    return this.q('DELETE FROM published_ports WHERE session_id = ? AND host_ip = ? AND host_port = ?').run(id, hostIp, hostPort).changes === 1;
  }

  /**
   * Final state, with the slot, lease, ports and kernel-object records given
   * back, in one transaction. With `linkPending` the veth record and the
   * lease stay until linkGone(): the kernel is still removing the link.
   */
  settle(id: string, state: 'destroyed' | 'failed', lastError?: string, linkPending = false): void {
    this.db
      .transaction(() => {
        this.q(linkPending ? `DELETE FROM kernel_objects WHERE session_id = ? AND kind != 'veth'` : 'DELETE FROM kernel_objects WHERE session_id = ?').run(id);
        this.q('DELETE FROM id_slots WHERE session_id = ?').run(id);
        if (!linkPending) this.q('DELETE FROM ip_leases WHERE session_id = ?').run(id);
        this.q('DELETE FROM published_ports WHERE session_id = ?').run(id);
        this.q(`UPDATE sessions SET state = ?, last_error = coalesce(?, last_error), updated_at = ? WHERE id = ?`)
          .run(state, lastError ?? null, new Date().toISOString(), id);
      })
      .immediate();
  }

  /**
   * Stopped (or back to stopped after a failed start): the ID slot and the
   * kernel-object records go; the name, address, ports, volumes and secrets
   * stay. With `linkPending` the veth record stays until linkGone().
   */
  settleStopped(id: string, s: { linkPending: boolean; storedBytes?: number | undefined; lastError?: string | undefined }): void {
    this.db
      .transaction(() => {
        this.q(s.linkPending ? `DELETE FROM kernel_objects WHERE session_id = ? AND kind != 'veth'` : 'DELETE FROM kernel_objects WHERE session_id = ?').run(id);
        this.q('DELETE FROM id_slots WHERE session_id = ?').run(id);
        this.q(
          `UPDATE sessions SET state = 'stopped', id_slot = NULL, init_pid = NULL, init_start_time = NULL,
             stored_bytes = coalesce(?, stored_bytes), last_error = coalesce(?, last_error), updated_at = ? WHERE id = ?`,
        ).run(s.storedBytes ?? null, s.lastError ?? null, new Date().toISOString(), id);
      })
      .immediate();
  }

  /** A started session's stored files are gone (it runs from them now). */
  clearStored(id: string): void {
    this.q('UPDATE sessions SET stored_bytes = NULL WHERE id = ?').run(id);
  }

  /** A session's link is gone: its record goes, and the address of an ended one (a stopped one keeps its own). */
  linkGone(id: string): void {
    this.db
      .transaction(() => {
        this.q(`DELETE FROM kernel_objects WHERE session_id = ? AND kind = 'veth'`).run(id);
        this.q(`DELETE FROM ip_leases WHERE session_id = ? AND session_id IN (SELECT id FROM sessions WHERE state IN ${ENDED_SQL})`).run(id);
      })
      .immediate();
  }

  /** Ended or stopped sessions whose link was not yet seen gone (a daemon that died while the kernel removed it). */
  endedWithLinks(): { id: string; ref: string }[] {
    return this.q(`SELECT k.session_id AS id, k.ref FROM kernel_objects k JOIN sessions s ON s.id = k.session_id WHERE k.kind = 'veth' AND s.state NOT IN ${ACTIVE_SQL}`)
      .all() as { id: string; ref: string }[];
  }

  /** The secrets a session declared, by kind (names only: values are not in this database); another owner's as UID:NAME. */
  secretNamesOf(id: string): { auth: string[]; env_tokens: string[] } {
    return secretNames(this.q(`SELECT ${HELD_NAME} AS name, h.kind FROM session_secrets h JOIN sessions s ON s.id = h.session_id WHERE h.session_id = ? ORDER BY h.rowid`).all(id) as { name: string; kind: string }[]);
  }

  /** The volumes a session mounts, by target: their names as the session's owner calls them. */
  volumesOf(id: string): { name: string; target: string; readonly: boolean }[] {
    return (this.q(`SELECT v.session_id, ${VOLUME_NAME_AS_SEEN} AS name, v.target, v.readonly ${VOLUMES_OF} WHERE v.session_id = ? ORDER BY v.target`).all(id) as VolumeUseRow[]).map(volumeUse);
  }

  /** The volume ids a session mounts, by target (for its plan). */
  volumeIdsOf(id: string): { id: string; target: string; readonly: boolean }[] {
    return (this.q('SELECT volume AS id, target, readonly FROM session_volumes WHERE session_id = ? ORDER BY target').all(id) as { id: string; target: string; readonly: number }[]).map((r) => ({ ...r, readonly: r.readonly === 1 }));
  }

  slotOf(id: string): number | undefined {
    const r = this.q('SELECT slot FROM id_slots WHERE session_id = ?').get(id) as { slot: number } | undefined;
    return r?.slot;
  }
}
