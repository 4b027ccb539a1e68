// `enclave doctor`'s view of the daemon's state, read without the daemon:
// the database's integrity, kernel objects no row owns (orphans) and rows
// whose kernel objects are gone, and who holds the resource locks.
// `--repair` removes the orphans listed, and nothing else.
import { ACTIVE_STATES } from '../vocab/states.js';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Config } from '../config/schema.js';
import { removeDescendants } from '../isolation/cgroupDelegation.js';
import { detectCgroupLayout, killCgroup, parentDirs, removeCgroup, versionOf } from '../isolation/cgroups.js';
import { addon } from '../native/addon.js';
import { bridgePorts, linkExists } from '../network/hostNetwork.js';
import { lockHeld } from '../daemon/locks.js';
import { dropSnapshotCgroups, sessionOfCgroup } from '../snapshots/snapshotCgroups.js';
import type { Check } from './doctor.js';

export interface Orphan {
  kind: 'cgroup' | 'link';
  ref: string;
}

interface Row {
  id: string;
  state: string;
  init_pid: number | null;
  /** Set for a pool member (sessions made ahead). */
  pool: string | null;
}

/** Sessions with processes: their cgroups and links are theirs; any other's are orphans. */
const LIVE = new Set<string>(ACTIVE_STATES);

function readRows(path: string): { rows: Row[]; problem?: string; version?: number } {
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    const check = (db.pragma('quick_check', { simple: false }) as { quick_check: string }[]).map((r) => r.quick_check).filter((m) => m !== 'ok');
    if (check.length) return { rows: [], problem: check.slice(0, 3).join('; ') };
    const version = (db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number } | undefined)?.v;
    // A database a daemon of before the pool has not migrated yet has no such column.
    const pool = db.prepare("SELECT 1 FROM pragma_table_info('sessions') WHERE name = 'pool'").get() === undefined ? 'NULL AS pool' : 'pool';
    return { rows: db.prepare(`SELECT id, state, init_pid, ${pool} FROM sessions`).all() as Row[], version };
  } catch (e) {
    return { rows: [], problem: (e as Error).message };
  } finally {
    db?.close();
  }
}

const alive = (pid: number) => existsSync(`/proc/${pid}`);

/**
 * The daemon of another installation that holds this lock (a parent or a
 * bridge of the same name under another state dir), if one does: what is
 * under it is that daemon's, never an orphan of ours.
 */
function otherHolder(config: Config, file: string): string | undefined {
  const path = join(config.locks_dir, file);
  if (!existsSync(path) || !lockHeld(path)) return undefined;
  const ours = existsSync(config.state_dir) ? realpathSync(config.state_dir) : config.state_dir;
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as { pid?: unknown; state_dir?: unknown };
    return h.state_dir === ours ? undefined : `PID ${String(h.pid)} with state dir ${String(h.state_dir)}`;
  } catch {
    return 'a daemon whose lock cannot be read';
  }
}

/** The checks, and the orphans found (for --repair). */
export function stateChecks(config: Config): { checks: Check[]; orphans: Orphan[] } {
  const checks: Check[] = [];
  const dbPath = join(config.state_dir, 'enclave.db');
  const { rows, problem, version } = existsSync(dbPath) ? readRows(dbPath) : { rows: [], problem: undefined, version: undefined };
  if (!existsSync(dbPath)) checks.push({ name: 'database', ok: true, required: false, detail: `${dbPath} does not exist yet (no daemon has run with this state dir)` });
  else if (problem) checks.push({ name: 'database', ok: false, required: false, detail: `${dbPath}: ${problem}` });
  else {
    // Pool members (made ahead, nobody's yet) apart: how many there are at a moment depends on refills under way.
    const users = rows.filter((r) => r.pool === null);
    const ahead = rows.filter((r) => r.pool !== null && LIVE.has(r.state)).length;
    const counts = `${users.filter((r) => LIVE.has(r.state)).length} running, ${users.filter((r) => r.state === 'stopped').length} stopped of ${users.length} sessions`;
    checks.push({ name: 'database', ok: true, required: false, detail: `${dbPath}: integrity ok, schema ${version}, ${counts}${ahead ? `, ${ahead} made ahead (pool)` : ''}` });
  }

  const byId = new Map(rows.map((r) => [r.id, r]));
  const orphans: Orphan[] = [];
  if (!problem) {
    const layout = detectCgroupLayout(config.cgroups.root);
    // Only what this installation owns can be its orphan: its database must exist, and its parent and bridge must not be another daemon's.
    const notJudged: string[] = [];
    const cgroupOwner = otherHolder(config, `cgroup-${config.cgroups.parent}.lock`);
    const bridgeOwner = otherHolder(config, `bridge-${config.network.bridge}.lock`);
    if (!existsSync(dbPath)) notJudged.push(`no database at ${dbPath}, so nothing under cgroup parent ${config.cgroups.parent} or bridge ${config.network.bridge} is known to be this installation's`);
    if (cgroupOwner) notJudged.push(`cgroup parent ${config.cgroups.parent} belongs to another installation (${cgroupOwner})`);
    if (bridgeOwner) notJudged.push(`bridge ${config.network.bridge} belongs to another installation (${bridgeOwner})`);
    const judgeCgroups = existsSync(dbPath) && !cgroupOwner;
    const judgeLinks = existsSync(dbPath) && !bridgeOwner;
    for (const dir of judgeCgroups ? parentDirs(layout, config.cgroups.parent) : []) {
      if (!existsSync(dir)) continue;
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const id = sessionOfCgroup(e.name);
        if (e.isDirectory() && id !== undefined && !LIVE.has(byId.get(id)?.state ?? '')) orphans.push({ kind: 'cgroup', ref: join(dir, e.name) });
      }
    }
    for (const port of judgeLinks ? bridgePorts(config.network.bridge) : []) {
      if (port.startsWith('ve-') && !LIVE.has(byId.get(`s-${port.slice(3)}`)?.state ?? '')) orphans.push({ kind: 'link', ref: port });
    }
    checks.push({
      name: 'orphans',
      ok: orphans.length === 0,
      required: false,
      detail:
        (orphans.length === 0 ? 'no cgroup or link without a live session' : `${orphans.map((o) => `${o.kind} ${o.ref}`).join(', ')} (enclave doctor --repair removes them)`) +
        (notJudged.length ? `; not judged: ${notJudged.join('; ')} (run doctor with that installation's --config)` : ''),
    });
    const gone = rows.filter((r) => r.state === 'running' && (r.init_pid === null || !alive(r.init_pid)));
    checks.push({
      name: 'sessions',
      ok: gone.length === 0,
      required: false,
      detail: gone.length === 0 ? 'every running session has its init' : `running in the database but their init is gone: ${gone.map((r) => r.id).join(', ')} (the daemon marks them failed at its next start)`,
    });
  }

  const holders: string[] = [];
  if (existsSync(config.locks_dir)) {
    for (const f of readdirSync(config.locks_dir).sort()) {
      const path = join(config.locks_dir, f);
      if (!lockHeld(path)) continue; // a stale file, now gone
      try {
        const h = JSON.parse(readFileSync(path, 'utf8')) as { pid: number; state_dir: string; resource: string };
        holders.push(`${h.resource}: PID ${h.pid} (state dir ${h.state_dir})`);
      } catch {
        holders.push(`${f}: held`);
      }
    }
  }
  checks.push({ name: 'locks', ok: true, required: false, detail: holders.length ? holders.join('; ') : `nothing is locked under ${config.locks_dir} (no daemon runs)` });
  if (config.sessions.rootfs === '/') {
    checks.push({ name: 'rootfs', ok: false, required: false, detail: 'sessions.rootfs is the host\'s whole "/": sessions can read every world-readable host file; hide what they must not see with sessions.hide' });
  }
  return { checks, orphans };
}

/** Remove exactly these orphans; what could not be removed is returned. */
export function repair(config: Config, orphans: Orphan[]): string[] {
  const layout = detectCgroupLayout(config.cgroups.root);
  const left: string[] = [];
  for (const o of orphans) {
    if (o.kind === 'link') {
      if (!addon().deleteLink(o.ref) && linkExists(o.ref)) left.push(`link ${o.ref}`);
      continue;
    }
    let removed = false;
    for (let i = 0; i < 100 && !removed; i++) {
      // A snapshot's cgroups and a system session's sub-cgroups first: an rmdir of a cgroup with a child fails.
      dropSnapshotCgroups(o.ref, versionOf(layout, o.ref));
      removeDescendants(o.ref, versionOf(layout, o.ref));
      killCgroup(o.ref, versionOf(layout, o.ref));
      removed = removeCgroup(o.ref);
      if (!removed) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
    if (!removed) left.push(`cgroup ${o.ref}`);
  }
  return left;
}
