// The cgroups a snapshot's tar and zstd run in, so that their CPU, memory
// and tasks count against the session, not the host.
//
// Hybrid and legacy hosts: a `snapshot` child of the session's directory in
// each v1 hierarchy that holds limits (children are charged to their parent,
// memory.use_hierarchy is 1); not in cpuset or cpuacct alone, which hold
// what the session is shown, not what it may use. Not in the v2 tree: the session's directory
// there is the one frozen, and a frozen parent freezes its children.
// Unified hosts: the session's v2 directory is both, so a sibling
// `<id>.snapshot` with the session's own limits copied: bounded like the
// session, not charged to it.
//
// Every snapshot cgroup of a session is derived from a session directory
// (child or sibling), so whoever removes that directory removes them first
// (release, the start-up sweep, doctor): an rmdir with a child fails EBUSY.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SESSION_ID } from '../vocab/names.js';
import { holdsLimits, killCgroup, removeCgroup, sessionCgroupDirs, type CgroupLayout } from '../isolation/cgroups.js';

export const SNAPSHOT_CHILD = 'snapshot';
export const SNAPSHOT_SIBLING_SUFFIX = '.snapshot';
/** What a unified host's sibling copies from the session's directory. */
const COPIED_LIMITS = ['memory.max', 'cpu.max', 'pids.max', 'cpuset.cpus'];

export interface SnapshotCgroup {
  path: string;
  version: 1 | 2;
  /** The session directory whose limits are copied (unified hosts). */
  limitsFrom?: string;
}

/** Pure: where a session's snapshot runs, one directory per hierarchy that holds its limits. */
export function snapshotCgroupsFor(layout: CgroupLayout, parent: string, sessionId: string): SnapshotCgroup[] {
  const dirs = sessionCgroupDirs(layout, parent, sessionId);
  if (layout.mode === 'unified') return dirs.map((d) => ({ path: `${d.path}${SNAPSHOT_SIBLING_SUFFIX}`, version: 2, limitsFrom: d.path }));
  return dirs.filter((d) => d.version === 1 && holdsLimits(d)).map((d) => ({ path: join(d.path, SNAPSHOT_CHILD), version: 1 }));
}

/** Pure: the session a cgroup directory name belongs to: its own, or its snapshot sibling (unified hosts). */
export function sessionOfCgroup(name: string): string | undefined {
  const id = name.endsWith(SNAPSHOT_SIBLING_SUFFIX) ? name.slice(0, -SNAPSHOT_SIBLING_SUFFIX.length) : name;
  return SESSION_ID.test(id) ? id : undefined;
}

/** Pure: every snapshot cgroup a session directory can have (the child, the unified sibling). */
export function snapshotCgroupsOf(sessionDir: string): string[] {
  return [join(sessionDir, SNAPSHOT_CHILD), `${sessionDir}${SNAPSHOT_SIBLING_SUFFIX}`];
}

/**
 * One pass: SIGKILL what is in the session directory's snapshot cgroups and
 * rmdir them. True when none is left (the killed need a moment to exit:
 * callers try again).
 */
export function dropSnapshotCgroups(sessionDir: string, version: 1 | 2): boolean {
  let gone = true;
  for (const dir of snapshotCgroupsOf(sessionDir)) {
    if (!existsSync(dir)) continue;
    killCgroup(dir, version);
    if (!removeCgroup(dir)) gone = false;
  }
  return gone;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Kill and remove these snapshot cgroups, waiting up to ms for their processes to exit. */
export async function removeSnapshotCgroups(cgroups: SnapshotCgroup[], ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (const cg of cgroups) {
    for (;;) {
      killCgroup(cg.path, cg.version);
      if (removeCgroup(cg.path)) break;
      if (Date.now() > deadline) throw new Error(`cgroup ${cg.path} still has processes`);
      await sleep(5);
    }
  }
}

/**
 * Make the snapshot's cgroups, limits first (before anything joins). A
 * leftover of an earlier snapshot is removed first. Returns their
 * cgroup.procs files.
 */
export async function createSnapshotCgroups(cgroups: SnapshotCgroup[]): Promise<string[]> {
  await removeSnapshotCgroups(cgroups.filter((c) => existsSync(c.path)), 2000);
  for (const cg of cgroups) {
    mkdirSync(cg.path);
    // cpuset.cpus is there only where the cpuset controller is enabled.
    for (const f of cg.limitsFrom ? COPIED_LIMITS : []) if (existsSync(join(cg.limitsFrom!, f))) writeFileSync(join(cg.path, f), readFileSync(join(cg.limitsFrom!, f)));
  }
  return cgroups.map((c) => join(c.path, 'cgroup.procs'));
}

/**
 * Joins the cgroup.procs files given first ($1 of them), then execs the
 * rest: the process is in the snapshot cgroups before tar or zstd runs, with
 * no moment in the daemon's. 125 when a join failed.
 */
const JOIN_AND_EXEC = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n - 1)); done; exec "$@"';
export const JOIN_FAILED = 125;

/** spawn(command, args) inside the cgroups whose cgroup.procs files are given. */
export function spawnIn(procs: string[], command: string, args: string[], opts: SpawnOptions): ChildProcess {
  return spawn('/bin/sh', ['-c', JOIN_AND_EXEC, 'sh', String(procs.length), ...procs, command, ...args], opts);
}
