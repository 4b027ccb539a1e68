// Session cgroups: detect the host's cgroup mode the way runc does, then one
// interface over two backends. Limits are written here, by the daemon as host
// root. A system session's directories are delegated to its root (delegate):
// it makes sub-cgroups below them, never writes their limits.
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { LIMITS, type Limits } from '../vocab/limitTable.js';

export type CgroupMode = 'unified' | 'hybrid' | 'legacy';

export interface CgroupLayout {
  mode: CgroupMode;
  /** v1 controller -> mount point of its hierarchy (co-mounted ones share one). */
  v1: Map<string, string>;
  /** v1 mount point -> every controller of its hierarchy, as mount takes them ("cpu,cpuacct"). */
  v1Controllers: Map<string, string>;
  /** Mount point of the cgroup2 hierarchy, if any. */
  v2: string | null;
  /** The v1 name=systemd hierarchy (hybrid, legacy): only a session that boots systemd (--init) is placed there. */
  named?: string | undefined;
}

export const SYSTEMD_HIERARCHY = 'name=systemd'; // the v1 hierarchy systemd keeps its own tree in, as mount(2) names it

/** Controllers whose limits the daemon writes (the limits table's). */
export const LIMIT_CONTROLLERS = ['memory', 'pids', 'cpu'] as const;
/**
 * Controllers a session is placed in for what it is shown, not for a
 * limit: cpuset holds the CPUs its CPU limit is a count of (nproc, lxcfs's
 * cpuinfo), cpuacct its CPU time (lxcfs's stat and uptime). v2 has no
 * cpuacct (cpu.stat is always there).
 */
export const VIEW_CONTROLLERS = ['cpuset', 'cpuacct'] as const;
/**
 * v1 devices: no limit of ours (a session's devices.list is its parent's),
 * but runc refuses to start a container whose devices cgroup it cannot
 * join, so Docker inside a system session needs the session placed there.
 */
export const RUNTIME_CONTROLLERS = ['devices'] as const;
const SESSION_CONTROLLERS: readonly string[] = [...LIMIT_CONTROLLERS, ...VIEW_CONTROLLERS, ...RUNTIME_CONTROLLERS];
const V2_CONTROLLERS = [...LIMIT_CONTROLLERS, 'cpuset'];
/** Options of a v1 mount that are not controllers. */
const V1_NOT_CONTROLLERS = /^(rw|ro|xattr|noprefix|clone_children|cpuset_v2_mode|favordynmods|nofavordynmods|release_agent=.*|name=.*)$/;

/**
 * Pure: derive the layout from /proc/self/mountinfo text. unified: cgroup2 at
 * the root; hybrid: v1 controllers plus a cgroup2 tree (as at
 * /sys/fs/cgroup/unified); legacy: v1 only.
 */
export function parseCgroupLayout(mountinfo: string, root = '/sys/fs/cgroup'): CgroupLayout {
  const v1 = new Map<string, string>();
  const v1Controllers = new Map<string, string>();
  let v2: string | null = null, named: string | undefined;
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const mountPoint = left[4];
    const fstype = right[0];
    if (!mountPoint || !mountPoint.startsWith(root)) continue;
    if (fstype === 'cgroup2') {
      v2 = mountPoint;
    } else if (fstype === 'cgroup') {
      const opts = (right[2] ?? '').split(',');
      if (opts.includes(SYSTEMD_HIERARCHY)) named = mountPoint;
      const ours = opts.filter((o) => SESSION_CONTROLLERS.includes(o));
      for (const opt of ours) v1.set(opt, mountPoint);
      if (ours.length > 0) v1Controllers.set(mountPoint, opts.filter((o) => o && !V1_NOT_CONTROLLERS.test(o)).join(','));
    }
  }
  const mode: CgroupMode = v2 === root ? 'unified' : v1.size > 0 ? (v2 ? 'hybrid' : 'legacy') : 'unified';
  return mode === 'unified' ? { mode, v1: new Map(), v1Controllers: new Map(), v2 } : { mode, v1, v1Controllers, v2, ...(named ? { named } : {}) };
}

export function detectCgroupLayout(root = '/sys/fs/cgroup'): CgroupLayout {
  return parseCgroupLayout(readFileSync('/proc/self/mountinfo', 'utf8'), root);
}

export interface CgroupDir {
  path: string;
  /** The controllers of ours in this directory: limits written here, or the view (VIEW_CONTROLLERS). */
  controllers: string[];
  version: 1 | 2;
}

/** Does the directory hold a limit (not only what the session is shown)? */
export const holdsLimits = (d: CgroupDir): boolean => d.controllers.some((c) => (LIMIT_CONTROLLERS as readonly string[]).includes(c));

/** The session's directories in every hierarchy Enclave uses; with `boot` (--init systemd), name=systemd's too. */
export function sessionCgroupDirs(layout: CgroupLayout, parent: string, sessionId: string, boot = false): CgroupDir[] {
  const dirs: CgroupDir[] = [];
  if (layout.mode === 'unified' && layout.v2) {
    return [{ path: join(layout.v2, parent, sessionId), controllers: [...V2_CONTROLLERS], version: 2 }];
  }
  const byMount = new Map<string, string[]>();
  for (const [ctrl, mount] of layout.v1) byMount.set(mount, [...(byMount.get(mount) ?? []), ctrl]);
  for (const [mount, ctrls] of byMount) dirs.push({ path: join(mount, parent, sessionId), controllers: ctrls.sort(), version: 1 });
  // Hybrid: the controller-less v2 tree tracks the session (and gives cgroup.kill).
  if (layout.v2) dirs.push({ path: join(layout.v2, parent, sessionId), controllers: [], version: 2 });
  if (boot && layout.named) dirs.push({ path: join(layout.named, parent, sessionId), controllers: [SYSTEMD_HIERARCHY], version: 1 });
  return dirs;
}

export function parentDirs(layout: CgroupLayout, parent: string): string[] {
  const mounts = new Set<string>(layout.v1.values());
  if (layout.v2) mounts.add(layout.v2);
  if (layout.named) mounts.add(layout.named);
  return [...mounts].map((m) => join(m, parent));
}

type CgroupLimit = Extract<(typeof LIMITS)[number], { cgroup: string }>;
type Writer = (value: number, version: 1 | 2, oom: 'process' | 'session') => [string, string][];

/** How each limit of the table that a cgroup enforces is written, per hierarchy version. */
const WRITERS: Record<CgroupLimit['key'], Writer> = {
  memory_mb: (mb, version, oom) => {
    const bytes = String(mb * 1024 * 1024);
    if (version === 2) return [['memory.max', bytes], ...(oom === 'session' ? ([['memory.oom.group', '1']] as [string, string][]) : [])];
    // v1 charges socket buffers to a cgroup only once this is set (v2 always
    // charges them to memory.max): without it a session pins host TCP memory
    // that every other tenant shares. Written before any task joins. v1 has no
    // oom.group: the daemon watches instead.
    return [['memory.limit_in_bytes', bytes], ['memory.kmem.tcp.limit_in_bytes', bytes]];
  },
  pids: (n) => [['pids.max', String(n)]],
  cpu_percent: (percent, version) => {
    const period = 100_000;
    const quota = Math.round((percent / 100) * period);
    return version === 1 ? [['cpu.cfs_period_us', String(period)], ['cpu.cfs_quota_us', String(quota)]] : [['cpu.max', `${quota} ${period}`]];
  },
};

/** Pure: the files and values that express the limits in one directory (the table's rows its controllers enforce). */
export function limitFiles(dir: CgroupDir, limits: Partial<Limits>, oom: 'process' | 'session' = 'process'): [string, string][] {
  const files: [string, string][] = [];
  for (const c of dir.controllers) {
    for (const row of LIMITS) {
      const value = limits[row.key];
      if ('cgroup' in row && row.cgroup === c && value !== undefined) files.push(...WRITERS[row.key](value, dir.version, oom));
    }
  }
  return files;
}

/** Which hierarchy version a session cgroup path belongs to. */
export function versionOf(layout: CgroupLayout, path: string): 1 | 2 {
  return layout.v2 !== null && (path === layout.v2 || path.startsWith(layout.v2 + '/')) ? 2 : 1;
}

export function ensureParents(layout: CgroupLayout, parent: string): void {
  for (const dir of parentDirs(layout, parent)) mkdirSync(dir, { recursive: true });
  if (layout.mode === 'unified' && layout.v2) {
    // Controllers must be enabled top-down before children can use them.
    // cpuset only where the kernel offers it (it is for the view, not a limit): without it nproc counts the host's CPUs.
    const offered = readFileSync(join(layout.v2, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
    const enable = V2_CONTROLLERS.filter((c) => (LIMIT_CONTROLLERS as readonly string[]).includes(c) || offered.includes(c));
    for (const dir of [layout.v2, join(layout.v2, parent)]) writeFileSync(join(dir, 'cgroup.subtree_control'), enable.map((c) => `+${c}`).join(' '));
  }
  const cpuset = layout.v1.get('cpuset');
  if (cpuset) {
    // A v1 cpuset takes no task until it has CPUs and memory nodes: the
    // parent gets the hierarchy's, and clone_children hands a parent's to
    // each new child (the session's directory, and its snapshot child).
    const dir = join(cpuset, parent);
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      if (readFileSync(join(dir, f), 'utf8').trim() === '') writeFileSync(join(dir, f), readFileSync(join(cpuset, f)));
    }
    writeFileSync(join(dir, 'cgroup.clone_children'), '1');
  }
}

/** Make one of the session's directories with its limits; `cpus` (a cpuset list) goes where the cpuset controller is. */
export function createSessionCgroup(dir: CgroupDir, limits: Limits, oom: 'process' | 'session', cpus?: string): void {
  mkdirSync(dir.path);
  // The session reads it from inside (its /sys/fs/cgroup view): the daemon's umask would make it 0700. Its files stay host root's.
  chmodSync(dir.path, 0o755);
  for (const [file, value] of limitFiles(dir, limits, oom)) writeFileSync(join(dir.path, file), value);
  if (cpus !== undefined && dir.controllers.includes('cpuset') && existsSync(join(dir.path, 'cpuset.cpus'))) writeFileSync(join(dir.path, 'cpuset.cpus'), cpus);
}

/** The sub-cgroups of a cgroup directory (its subdirectories; the rest are its files). */
function subCgroups(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(dir, e.name));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/** Every cgroup below dir (a delegated session's own), parents before children; iterative, so no depth a session makes exhausts a stack. */
export function descendants(dir: string): string[] {
  const order: string[] = [];
  const stack = subCgroups(dir);
  while (stack.length > 0) {
    const d = stack.pop()!;
    order.push(d);
    stack.push(...subCgroups(d));
  }
  return order;
}

/** Where the session's own cgroups are mounted in its /sys/fs/cgroup: "" is /sys/fs/cgroup itself (a unified host). */
export interface CgroupView {
  at: string;
  version: 1 | 2;
  /** v1: every controller of the hierarchy, as mount(2) wants them. */
  controllers?: string;
}

/**
 * Pure: the hierarchies the session is in, as they are laid out on the
 * host, for its read-only view. Only those: one it did not join would be
 * rooted at the daemon's cgroup there, not at the session's.
 */
export function sessionCgroupView(layout: CgroupLayout, dirs: CgroupDir[]): CgroupView[] {
  if (layout.mode === 'unified') return dirs.some((d) => d.version === 2) ? [{ at: '', version: 2 }] : [];
  const view: CgroupView[] = [];
  for (const d of dirs) {
    const mount = mountOf(layout, d);
    if (!mount) continue;
    const at = basename(mount);
    const controllers = d.controllers[0] === SYSTEMD_HIERARCHY ? `none,${SYSTEMD_HIERARCHY}` : (layout.v1Controllers.get(mount) ?? d.controllers.join(','));
    view.push(d.version === 2 ? { at, version: 2 } : { at, version: 1, controllers });
  }
  return view;
}

/** Where a session directory's hierarchy is mounted on the host. */
export const mountOf = (layout: CgroupLayout, d: CgroupDir) => (d.version === 2 ? layout.v2 : d.controllers[0] === SYSTEMD_HIERARCHY ? layout.named : layout.v1.get(d.controllers[0] ?? ''));

/** The v1 memory directory whose OOM events the daemon must watch, if any. */
export function v1MemoryDir(dirs: CgroupDir[]): string | undefined {
  return dirs.find((d) => d.version === 1 && d.controllers.includes('memory'))?.path;
}

export function cgroupPids(dirPath: string): number[] {
  try {
    return readFileSync(join(dirPath, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/** SIGKILL everything in the cgroup: cgroup.kill on v2 (atomic), a sweep on v1. */
export function killCgroup(dir: string, version: 1 | 2): void {
  if (version === 2) {
    try {
      writeFileSync(join(dir, 'cgroup.kill'), '1');
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    }
  }
  for (const pid of cgroupPids(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/**
 * `daemon --cleanup`: the daemon's parent cgroups, deepest first, in every
 * hierarchy, as long as they are empty (a child cgroup or a task keeps them).
 * Returns the directories removed.
 */
export function removeParents(layout: CgroupLayout, parent: string): string[] {
  const removed: string[] = [];
  const parts = parent.split('/').filter(Boolean);
  for (const mount of new Set<string>([...layout.v1.values(), ...(layout.v2 ? [layout.v2] : []), ...(layout.named ? [layout.named] : [])])) {
    for (let depth = parts.length; depth > 0; depth--) {
      const dir = join(mount, ...parts.slice(0, depth));
      if (!existsSync(dir)) continue;
      try {
        if (!removeCgroup(dir)) break;
      } catch {
        break; // not empty, or not ours to remove
      }
      removed.push(dir);
    }
  }
  return removed;
}

/** rmdir; true when the directory is gone. EBUSY means tasks remain. */
export function removeCgroup(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return true;
    if (code === 'EBUSY') return false;
    throw e;
  }
}

/** The session's cgroup as the kernel names it (relative to its hierarchy's root), as in the kernel log's oom-kill lines. */
export function cgroupName(parent: string, sessionId: string): string {
  return `/${[...parent.split('/').filter(Boolean), sessionId].join('/')}`;
}
