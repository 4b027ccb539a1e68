// The API view of a session: a row plus what the store and the console hub
// know about it. Read-only; no kernel access.
import type { Session } from '../api/schemas.js';
import type { SessionListed } from '../api/render.js';
export type { SessionListed };
import { rangeForSlot, type IdPool } from '../isolation/idRange.js';
import { intToIp } from '../network/addressing.js';
import { ACTIVE_STATES, LIVE_STATES } from '../vocab/states.js';
import type { SessionDetails, SessionSummary, TableRow } from '../store/sessionStore.js';
import { deepFreeze } from '../vocab/frozen.js';

/** Whether a session's console runs and who watches it (the console hub knows). */
export type ConsoleInfo = (id: string) => { running: boolean; viewers: number };
export const NO_CONSOLE: ConsoleInfo = () => ({ running: false, viewers: 0 });

export interface ViewDeps {
  ids: IdPool;
  /** The bridge's gateway address, once the host network is up. */
  gateway: number | undefined;
}

type Placed = Pick<SessionSummary, 'state' | 'id_slot' | 'init_pid'>;

/** Where a session runs, as both views show it: a stopped session keeps its address and ports; only one with processes has an init and an ID range. */
function placement(row: Placed, lease: number | undefined | null, deps: ViewDeps) {
  const live = LIVE_STATES.includes(row.state);
  const active = ACTIVE_STATES.includes(row.state);
  const range = row.id_slot !== null && active ? rangeForSlot(deps.ids, row.id_slot) : null;
  return {
    live,
    active,
    init_pid: active ? row.init_pid : null,
    id_range: range && { host_base: range.hostBase, size: range.size },
    address: live && lease !== undefined && lease !== null ? intToIp(lease) : null,
  };
}

/** What `session list` shows of a session: its table's columns (src/api/render.ts sessionTable); `node`: the fleet node it is on. */
export function toListed(row: TableRow, deps: ViewDeps, node?: string): SessionListed {
  const p = placement(row, row.lease, deps);
  const listed: SessionListed = { id: row.id, name: row.name, owner_uid: row.owner_uid, state: row.state, hostname: row.hostname, init_pid: p.init_pid, id_range: p.id_range, created_at: row.created_at, network: { mode: row.network, address: p.address } };
  if (node !== undefined) listed.node = node;
  return listed;
}

export function toApi(row: SessionSummary, details: SessionDetails, deps: ViewDeps, consoles: ConsoleInfo = NO_CONSOLE): Session {
  const { live, active, init_pid, id_range, address } = placement(row, details.lease, deps);
  const gateway = deps.gateway === undefined ? null : intToIp(deps.gateway);
  return {
    id: row.id,
    name: row.name,
    state: row.state,
    hostname: row.hostname,
    init_pid,
    id_range,
    limits: row.limits,
    profile: row.profile,
    init: row.init,
    network: {
      mode: row.network,
      address,
      gateway: row.network === 'bridge' ? gateway : null,
      published: live ? details.ports : [],
    },
    console: { keep: row.keep_console, ...(active ? consoles(row.id) : { running: false, viewers: 0 }) },
    created_at: row.created_at,
    updated_at: row.updated_at,
    last_error: row.last_error,
    owner_uid: row.owner_uid,
    secrets: details.secrets,
    volumes: details.volumes,
    exit: row.exit_code === null && row.exit_signal === null ? null : { code: row.exit_code, signal: row.exit_signal },
    idle_timeout_s: row.idle_timeout_s,
    stopped_because: row.stopped_because,
    stored_bytes: row.state === 'stopped' ? row.stored_bytes : null,
    oom: { kills: row.oom_kills, last_victim: row.oom_at === null ? null : { command: row.oom_victim, pid: row.oom_victim_pid, at: row.oom_at } },
    ssh: row.ssh_key !== null,
    ...(row.moved_to !== null ? { moved_to: row.moved_to } : {}),
  };
}

// Each listed session's view, made again only when something it is made of
// changed: its row and its details (each the same object while unchanged:
// src/store/checkedRows.ts, src/store/listings.ts), its console's state, the
// deps (ID pool, gateway) and the node it is on. toApi() is a pure function
// of those, so a view kept is the view that would be made. Frozen: every
// list shares it, and its JSON is kept by its identity (src/daemon/
// listJson.ts). Only the views of the last list are kept.
interface Kept {
  row: SessionSummary;
  details: SessionDetails;
  console: ReturnType<ConsoleInfo>;
  /** The deps and the node, as text. */
  deps: string;
  view: Readonly<Session>;
}

export class ListViews {
  private views = new Map<string, Kept>();

  /** `details`: the same object for a session while its details are the same (a new one, equal or not, makes its view again). */
  list(rows: readonly SessionSummary[], details: (id: string) => SessionDetails, deps: ViewDeps, consoles: ConsoleInfo, node: string | undefined): Session[] {
    const next = new Map<string, Kept>();
    // Whole, not field by field: a field added to either is in the key too.
    const depsKey = JSON.stringify([deps, node ?? null]);
    const out = rows.map((row) => {
      const d = details(row.id);
      const c = consoles(row.id);
      const kept = this.views.get(row.id);
      const hit = kept !== undefined && kept.row === row && kept.details === d && kept.deps === depsKey && sameFields(kept.console, c);
      const view = hit ? kept.view : deepFreeze(node === undefined ? toApi(row, d, deps, () => c) : { ...toApi(row, d, deps, () => c), node });
      next.set(row.id, { row, details: d, console: c, deps: depsKey, view });
      return view;
    });
    this.views = next;
    return out;
  }
}

/** The same keys with the same values (a console's state: flat). */
function sameFields(a: object, b: object): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => (a as Record<string, unknown>)[k] === (b as Record<string, unknown>)[k]);
}
