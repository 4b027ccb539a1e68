// Start-up reconciliation with the kernel: what a crash can leave behind.
// Adoption of live sessions is the lifecycle's (it owns their state); these
// sweeps remove leftovers of sessions this daemon's database knows and that
// are no longer live. Anything else (a name no row of ours has) was not made
// by this daemon: it is logged and left alone.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { killCgroup, parentDirs, removeCgroup, versionOf, type CgroupLayout } from '../isolation/cgroups.js';
import { removeDescendants } from '../isolation/cgroupDelegation.js';
import { addon } from '../native/addon.js';
import { dropSnapshotCgroups, sessionOfCgroup } from '../snapshots/snapshotCgroups.js';
import { bridgePorts } from '../network/hostNetwork.js';
import type { SessionStore } from '../store/sessionStore.js';
import { ACTIVE_STATES } from '../vocab/states.js';

/** 'ended': ours and without processes (stopped, or over: remove it); 'live': keep; 'unknown': not ours to touch. */
function standing(store: SessionStore, id: string): 'ended' | 'live' | 'unknown' {
  const state = store.stateOf(id);
  return state === undefined ? 'unknown' : ACTIVE_STATES.includes(state) ? 'live' : 'ended';
}

/** Cgroups of sessions that have ended are leftovers of a crash: remove them (their snapshot cgroups first). */
export function sweepOrphanCgroups(layout: CgroupLayout, parent: string, store: SessionStore, log: Logger): void {
  for (const dir of parentDirs(layout, parent)) {
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const id = sessionOfCgroup(entry.name);
      if (!entry.isDirectory() || id === undefined) continue;
      const cg = join(dir, entry.name);
      const s = standing(store, id);
      if (s === 'unknown') log.warn({ cgroup: cg }, 'a session cgroup no row of this daemon records: left alone');
      if (s !== 'ended') continue;
      const version = versionOf(layout, cg);
      // Killed tar and zstd take a moment to exit; the next start retries what is still busy.
      // And the sub-cgroups a system session made, deepest first.
      for (let i = 0; i < 50 && !(dropSnapshotCgroups(cg, version) && removeDescendants(cg, version)); i++) pause(10);
      killCgroup(cg, version);
      if (removeCgroup(cg)) log.warn({ cgroup: cg }, 'removed leftover session cgroup');
    }
  }
}

const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Bridge ports of sessions that have ended: a crash left them. */
export function sweepOrphanLinks(bridge: string, store: SessionStore, log: Logger): void {
  for (const port of bridgePorts(bridge)) {
    if (!port.startsWith('ve-')) continue;
    const s = standing(store, `s-${port.slice(3)}`);
    if (s === 'unknown') log.warn({ link: port }, 'a session link no row of this daemon records: left alone');
    if (s !== 'ended') continue;
    if (addon().deleteLink(port)) log.warn({ link: port }, 'removed leftover session link');
  }
}
