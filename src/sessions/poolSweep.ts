// `enclave daemon --cleanup` after a daemon that did not stop (a crash, a
// SIGKILL): the pool's members it left are nobody's, so nobody could stop
// or destroy them; the cleanup ends them itself, without a daemon, from what
// is recorded: each member's cgroups are killed and removed, its veth
// deleted, its files removed, then its row ended and its slot and lease
// given back. A member whose cgroup keeps a process is left recorded, and
// the cleanup refuses as it does for any live session (fail closed).
import { rmSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { cgroupPids, killCgroup, removeCgroup, sessionCgroupDirs, versionOf, type CgroupLayout } from '../isolation/cgroups.js';
import { addon } from '../native/addon.js';
import { hostIfName } from '../network/addressing.js';
import type { SessionStore } from '../store/sessionStore.js';
import { sessionDir } from './planning.js';

const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** End every live pool member; the ids ended. */
export function sweepPoolOffline(config: Config, store: SessionStore, layout: CgroupLayout): string[] {
  const ended: string[] = [];
  for (const id of store.pool.live()) {
    // Only what this daemon's naming would have made for the session, as the steps' undo checks.
    const mine = new Set([...sessionCgroupDirs(layout, config.cgroups.parent, id).map((d) => `cgroup ${d.path}`), `veth ${hostIfName(id)}`]);
    const objects = store.kernelObjects(id).filter((o) => mine.has(`${o.kind} ${o.ref}`));
    let gone = true;
    for (const o of objects.filter((x) => x.kind === 'cgroup')) {
      const version = versionOf(layout, o.ref);
      for (let i = 0; i < 200 && !(cgroupPids(o.ref).length === 0 && removeCgroup(o.ref)); i++) {
        killCgroup(o.ref, version);
        pause(5);
      }
      gone &&= cgroupPids(o.ref).length === 0;
    }
    if (!gone) continue;
    for (const o of objects.filter((x) => x.kind === 'veth')) addon().deleteLink(o.ref);
    rmSync(sessionDir(config, id), { recursive: true, force: true });
    store.settle(id, 'destroyed', 'discarded by daemon --cleanup (a pool member its daemon left)');
    ended.push(id);
  }
  return ended;
}
