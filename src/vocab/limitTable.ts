// The one table of session limits. Each row is a limit a caller may ask for
// at create: its API field, CLI flag, unit, range, config default, the
// per-user budget defaults (a ceiling per session and a total over a user's
// live sessions), and how it is shown. The API and config schemas
// (src/vocab/limits.ts), the CLI flags and usage, `session show`, the
// budgets and the cgroup writers (src/isolation/cgroups.ts, by `cgroup`) all
// derive from it: a new limit is one row, plus a writer if the kernel needs
// one (a row added later is `optional`: sessions stored before it lack it).
// Plain data, no imports: the CLI's usage text loads it without zod.

export interface LimitRow {
  /** API field and config key (in [limits]). */
  key: string;
  /** CLI flag, without the dashes. */
  flag: string;
  /** Metavariable in the usage text. */
  meta: string;
  /** What it bounds, for help and errors. */
  what: string;
  unit: 'MiB' | '%' | 'tasks';
  min: number;
  max: number;
  /** Config default (limits.KEY) for sessions created without the flag. */
  default: number;
  /** Budget defaults for non-root callers (access.budget.KEY). */
  budget: { session: number; total: number };
  /** The cgroup controller that enforces it, if one does (else a mount size). */
  cgroup?: 'memory' | 'cpu' | 'pids';
  /** Only sessions with a writable root have it. */
  writableRootOnly?: true;
  /**
   * A session may lack it: rows added after sessions were stored must say so
   * (those sessions were made without it), as must writableRootOnly ones.
   */
  optional?: true;
  /** `session show`: label and value. */
  label: string;
  show(v: number): string;
}

const MIB_MAX = 1024 * 1024;

export const LIMITS = [
  { key: 'memory_mb', flag: 'memory', meta: 'MB', what: 'memory (cgroup), tmpfs included', unit: 'MiB', min: 16, max: MIB_MAX, default: 1024, budget: { session: 4096, total: 8192 }, cgroup: 'memory', label: 'memory', show: (v) => `${v} MiB` },
  { key: 'pids', flag: 'pids', meta: 'N', what: 'tasks (cgroup)', unit: 'tasks', min: 8, max: 4_194_304, default: 1024, budget: { session: 4096, total: 16384 }, cgroup: 'pids', label: 'pids', show: String },
  { key: 'cpu_percent', flag: 'cpu', meta: 'PERCENT', what: 'CPU time, 100 = one CPU (cgroup)', unit: '%', min: 1, max: 100 * 1024, default: 100, budget: { session: 200, total: 400 }, cgroup: 'cpu', label: 'cpu', show: (v) => `${v}%` },
  { key: 'tmp_mb', flag: 'tmp-size', meta: 'MB', what: 'the /tmp tmpfs', unit: 'MiB', min: 1, max: MIB_MAX, default: 512, budget: { session: 4096, total: 16384 }, label: '/tmp', show: (v) => `${v} MiB` },
  { key: 'home_mb', flag: 'home-size', meta: 'MB', what: 'the /home tmpfs', unit: 'MiB', min: 1, max: MIB_MAX, default: 512, budget: { session: 4096, total: 16384 }, label: '/home', show: (v) => `${v} MiB` },
  { key: 'root_mb', flag: 'root-size', meta: 'MB', what: 'the writable root layer (workspace)', unit: 'MiB', min: 1, max: MIB_MAX, default: 512, budget: { session: 4096, total: 16384 }, writableRootOnly: true, optional: true, label: 'root', show: (v) => `writable, ${v} MiB` },
] as const satisfies readonly LimitRow[];

export type LimitKey = (typeof LIMITS)[number]['key'];
type Required = Exclude<(typeof LIMITS)[number], { optional: true }>['key'];

/** The limits of one session: every row, the optional ones only where they apply. */
export type Limits = { [K in Required]: number } & { [K in Exclude<LimitKey, Required>]?: number | undefined };

/** What one owner's live sessions hold now, summed over the table (budgets). */
export type Usage = { sessions: number } & Record<LimitKey, number>;

/** --memory etc. for memory_mb etc., for messages. */
export const FLAG_OF: Readonly<Record<string, string>> = Object.fromEntries(LIMITS.map((r) => [r.key, `--${r.flag}`]));

export const limitRow = (key: LimitKey): LimitRow => LIMITS.find((r) => r.key === key)!;

/** Usage lines for session create's limit flags: "[--memory MB] [--pids N] ...". */
export const LIMIT_FLAGS_USAGE = LIMITS.map((r) => `[--${r.flag} ${r.meta}]`).join(' ');
