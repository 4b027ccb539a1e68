// A system session's cgroups are delegated to its root: it makes
// sub-cgroups below its own directories (systemd, container runtimes) and
// moves its processes between them; its limits stay the daemon's, and
// every sub-cgroup is charged to the session's (v1 and v2 are hierarchical).
import { chownSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { descendants, killCgroup, removeCgroup, mountOf, type CgroupDir, type CgroupLayout } from './cgroups.js';

/**
 * What a delegated directory's owner may write, per version, after the
 * kernel's cgroup-v2.rst "Delegation Containment" (v1 keeps its per-thread
 * tasks file): the directory (mkdir of children), moving its own processes
 * between its cgroups and, on v2, enabling controllers for its children.
 * The limit files stay host root's: the session cannot raise its own limits.
 */
export const DELEGATED_FILES: Record<1 | 2, readonly string[]> = { 1: ['cgroup.procs', 'tasks'], 2: ['cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads'] };

/** Hand a freshly made session directory (limits written) to the session's root, as host IDs. */
export function delegateCgroup(dir: CgroupDir, owner: { uid: number; gid: number }): void {
  chownSync(dir.path, owner.uid, owner.gid);
  for (const f of DELEGATED_FILES[dir.version]) if (existsSync(join(dir.path, f))) chownSync(join(dir.path, f), owner.uid, owner.gid);
}

/**
 * A v1 hierarchy with a release agent would run it as host root for every
 * emptied cgroup whose notify_on_release is set, and a delegated session
 * sets that in its own sub-cgroups: such a hierarchy is not delegated.
 * Returns why, or undefined.
 */
export function delegationRefused(layout: CgroupLayout, dirs: CgroupDir[]): string | undefined {
  for (const d of dirs) {
    if (d.version !== 1) continue;
    const mount = mountOf(layout, d);
    if (!mount) continue;
    let agent = '';
    try {
      agent = readFileSync(join(mount, 'release_agent'), 'utf8').trim();
    } catch {
      /* no release_agent file: nothing to run */
    }
    if (agent) return `the cgroup hierarchy at ${mount} has a release agent (${agent}), which a delegated session could make run`;
  }
  return undefined;
}

/**
 * One pass over what a delegated session made below its directory:
 * deepest first, SIGKILL the processes of each sub-cgroup and rmdir it (a
 * cgroup with a child cannot be removed). True when none is left; callers
 * try again while the killed exit. The directory itself stays.
 */
export function removeDescendants(dir: string, version: 1 | 2): boolean {
  let gone = true;
  for (const d of descendants(dir).reverse()) {
    killCgroup(d, version);
    if (!removeCgroup(d)) gone = false;
  }
  return gone;
}
