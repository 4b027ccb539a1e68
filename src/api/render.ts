// Human tables and --json output, as the CLI prints them. In the api layer
// so that the daemon renders `?format=text` replies (the native front end's)
// with the same functions: a table row is formatted in one place.
import type { Session, SessionStats } from './schemas.js';
import { LIMITS } from '../vocab/limitTable.js';

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** A session's age, `s` seconds, as the list prints it. */
function ageOf(s: number): string {
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

/** What the list's table shows of a session: the daemon reads only these for `?format=text` (src/sessions/view.ts toListed). */
export type SessionListed = Pick<Session, 'id' | 'name' | 'owner_uid' | 'state' | 'hostname' | 'init_pid' | 'id_range' | 'created_at'> & { network: Pick<Session['network'], 'mode' | 'address'> } & Pick<Session, 'node'>;

/** Whose it is, when not the caller's own. */
const owner = (s: Pick<Session, 'owner_uid'>) => (s.owner_uid === null ? 'uid 0' : `uid ${s.owner_uid}`);

export function sessionTable(sessions: readonly SessionListed[], me = process.getuid?.() ?? 0): string {
  // Another owner's session shows its owner, so two sessions called "web" are told apart.
  const others = sessions.some((s) => (s.owner_uid ?? 0) !== me);
  // Fleet mode: which node runs each (a pending one none yet).
  const fleet = sessions.some((s) => s.node !== undefined);
  // AGE, last, is not padded (nor kept: it moves with the clock).
  const shown = COLUMNS.flatMap((c, i) => ((c === 'OWNER' && !others) || (c === 'NODE' && !fleet) ? [] : [i]));
  const rows = sessions.map(cellsOf);
  const widths = shown.map((c) => COLUMNS[c]!.length);
  for (const r of rows) for (let i = 0; i < shown.length; i++) if (r.cells[shown[i]!]!.length > widths[i]!) widths[i] = r.cells[shown[i]!]!.length;
  const key = `${shown.join(',')} ${widths.join(',')}`;
  const now = Date.now();
  let out = `${shown.map((c, i) => `${COLUMNS[c]!.padEnd(widths[i]!)}  `).join('')}AGE\n`;
  for (const r of rows) {
    // A kept row's padded cells are kept too while the columns and their widths stand (they do, list after list).
    let head = r.head?.key === key ? r.head.text : undefined;
    if (head === undefined) {
      head = shown.map((c, i) => `${r.cells[c]!.padEnd(widths[i]!)}  `).join('');
      if (r.kept) r.head = { key, text: head };
    }
    out += `${head}${ageOf(Math.max(0, Math.round((now - r.created) / 1000)))}\n`;
  }
  return out;
}

/** The table's columns but AGE, in the order cellsOf() gives their cells. */
const COLUMNS = ['ID', 'NAME', 'OWNER', 'STATE', 'NODE', 'HOSTNAME', 'ADDRESS', 'PID', 'HOST IDS'] as const;

/** A row's cells but its age, its creation time, and (kept rows) its padded cells as last printed. */
interface Cells {
  cells: readonly string[];
  created: number;
  kept: boolean;
  head?: { key: string; text: string };
}

/**
 * A deep-frozen row's cells are made once and kept with it (a WeakMap: they
 * go with the row): another node's rows are the same objects list after list
 * (src/fleet/publishedLists.ts). Any other row's are made for this table.
 */
const cellCache = new WeakMap<object, Cells>();
function cellsOf(s: SessionListed): Cells {
  const kept = Object.isFrozen(s);
  let c = kept ? cellCache.get(s) : undefined;
  if (c === undefined) {
    c = {
      cells: [
        s.id,
        s.name ?? '-',
        owner(s),
        s.state,
        s.node ?? '-',
        s.hostname,
        s.network.address ?? (s.network.mode === 'none' ? 'none' : '-'),
        s.init_pid === null ? '-' : String(s.init_pid),
        s.id_range ? `${s.id_range.host_base}+${s.id_range.size}` : '-',
      ],
      created: Date.parse(s.created_at),
      kept,
    };
    if (kept) cellCache.set(s, c);
  }
  return c;
}

/** `session list -q`: the ids, one per line. */
export const sessionIds = (sessions: readonly Pick<Session, 'id'>[]): string => sessions.map((s) => `${s.id}\n`).join('');

/** What `session stop` and `session start` print. */
export const stateLine = (s: Session): string => `${s.id} ${s.state}\n`;

export function sessionDetails(s: Session): string {
  const rows: [string, string][] = [
    ['id', s.id],
    ['name', s.name ?? '-'],
    ['owner', owner(s)],
    ['state', s.state],
    ['hostname', s.hostname],
    ['init pid', s.init_pid === null ? '-' : String(s.init_pid)],
    ['host ids', s.id_range ? `${s.id_range.host_base}..${s.id_range.host_base + s.id_range.size - 1}` : '-'],
    ...LIMITS.map((r): [string, string] => {
      const v = s.limits[r.key];
      return [r.label, v !== undefined ? r.show(v) : 'writableRootOnly' in r ? 'read-only' : '-'];
    }),
    ['profile', s.profile],
    ['created', s.created_at],
    ['updated', s.updated_at],
  ];
  if (s.init) rows.push(['boots', `${s.init}, as the init of its own PID namespace (--init)`]);
  rows.push(['network', s.network.mode === 'bridge' ? `bridge ${s.network.address ?? '-'} via ${s.network.gateway ?? '-'}` : 'none (lo only)']);
  for (const v of s.volumes) rows.push(['volume', `${v.name} on ${v.target}${v.readonly ? ' (read-only)' : ''}`]);
  for (const p of s.network.published) rows.push(['published', `${p.host_ip}:${p.host_port} -> ${p.session_port}/tcp`]);
  const con = s.console.running ? `running, ${s.console.viewers} viewer(s)` : 'not running (starts on attach)';
  rows.push(['console', s.console.keep ? `${con}; kept (--console)` : con]);
  if (s.secrets.auth.length) rows.push(['auth', s.secrets.auth.join(', ')]);
  if (s.secrets.env_tokens.length) rows.push(['env tokens', s.secrets.env_tokens.join(', ')]);
  if (s.ssh) {
    const port = s.network.published.find((p) => p.session_port === 22);
    rows.push(['ssh', port ? `sshd on port 22: ssh -p ${port.host_port} root@${port.host_ip}` : 'sshd on port 22 (publish it to reach it: enclave session publish SESSION 2222:22)']);
  }
  if (s.idle_timeout_s !== null) rows.push(['idle stop', `after ${duration(s.idle_timeout_s)} idle`]);
  if (s.stopped_because && (s.state === 'stopped' || s.state === 'stopping')) rows.push(['stopped', s.stopped_because]);
  if (s.stored_bytes !== null) rows.push(['stored', `${(s.stored_bytes / 1048576).toFixed(1)} MiB (root layer and /home, compressed)`]);
  if (s.last_error) rows.push(['last error', s.last_error]);
  if (s.moved_to) rows.push(['moved to', `node ${s.moved_to} (a drain): this is its old copy`]);
  if (s.exit) rows.push(['init exit', s.exit.signal !== null ? `signal ${s.exit.signal}` : `code ${s.exit.code}`]);
  rows.push(['oom kills', oomText(s.oom)]);
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

/** Seconds as the CLI takes them: 90 -> 1m30s. */
export function duration(secs: number): string {
  const parts: string[] = [];
  for (const [unit, n] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (secs >= n || (unit === 's' && parts.length === 0)) parts.push(`${Math.floor(secs / n)}${unit}`);
    secs %= n;
  }
  return parts.join('');
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

/** The kill count, and the last victim the kernel log named (its command and host PID), and when. */
function oomText(o: Session['oom']): string {
  if (o.kills === 0) return '0';
  const v = o.last_victim;
  if (!v) return String(o.kills);
  const who = v.command === null ? 'not in the kernel log any more' : `${v.command}${v.pid === null ? '' : ` (host pid ${v.pid})`}`;
  return `${o.kills}; last: ${who} at ${v.at}`;
}

/** 1536 -> 1.5 KiB. */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function statsTable(stats: SessionStats[]): string {
  return table(
    ['ID', 'NAME', 'CPU%', 'MEM USED / LIMIT', 'PIDS', 'NET RX / TX', 'LAYER', 'HOME', 'TMP', 'VOLUMES', 'OOM KILLS'],
    stats.map((s) => [
      s.id,
      s.name ?? '-',
      s.cpu.percent === null ? '-' : s.cpu.percent.toFixed(1),
      `${bytes(s.memory.used_bytes)} / ${s.memory.limit_bytes === null ? 'none' : bytes(s.memory.limit_bytes)}`,
      `${s.pids.current ?? '-'} / ${s.pids.limit ?? 'none'}`,
      s.network ? `${bytes(s.network.rx_bytes)} / ${bytes(s.network.tx_bytes)}` : 'none',
      bytes(s.disk.layer_bytes),
      bytes(s.disk.home_bytes),
      bytes(s.disk.tmp_bytes),
      s.disk.volumes.length ? bytes(s.disk.volumes.reduce((n, v) => n + v.bytes, 0)) : '-',
      String(s.oom.kills),
    ]),
  );
}
