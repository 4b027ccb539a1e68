// Start-up reconciliation with the kernel: what a crash can leave behind and
// the database no longer accounts for. Adoption of live sessions is the
// lifecycle's (it owns their state); these sweeps remove leftovers.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { SESSION_ID } from '../api/schemas.js';
import { killCgroup, parentDirs, removeCgroup, versionOf, type CgroupLayout } from '../isolation/cgroups.js';
import { addon } from '../native/addon.js';
import { bridgePorts } from '../network/hostNetwork.js';
import { LIVE_STATES, type SessionStore } from '../store/sessionStore.js';

const isLive = (store: SessionStore, id: string) => {
  const row = store.get(id);
  return row !== undefined && LIVE_STATES.includes(row.state);
};

/** Session cgroups with no live session are leftovers of a crash: remove them. */
export function sweepOrphanCgroups(layout: CgroupLayout, parent: string, store: SessionStore, log: Logger): void {
  for (const dir of parentDirs(layout, parent)) {
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || !SESSION_ID.test(entry.name) || isLive(store, entry.name)) continue;
      const cg = join(dir, entry.name);
      killCgroup(cg, versionOf(layout, cg));
      if (removeCgroup(cg)) log.warn({ cgroup: cg }, 'removed leftover session cgroup');
    }
  }
}

/** Bridge ports of ours whose session is not live: a crash left them. */
export function sweepOrphanLinks(bridge: string, store: SessionStore, log: Logger): void {
  for (const port of bridgePorts(bridge)) {
    if (!port.startsWith('ve-') || isLive(store, `s-${port.slice(3)}`)) continue;
    if (addon().deleteLink(port)) log.warn({ link: port }, 'removed leftover session link');
  }
}
