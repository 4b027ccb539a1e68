// Start-up after a snapshot the last daemon did not finish (it crashed or
// was killed mid-stream): the session may still be frozen, and its snapshot
// cgroups may be left. Re-adoption calls this for every running session.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { sessionCgroupDirs, type CgroupDir, type CgroupLayout } from '../isolation/cgroups.js';
import { removeSnapshotCgroups, snapshotCgroupsFor } from './snapshotCgroups.js';

/** Thaw the session if it was left frozen (logged), and remove its snapshot cgroups. */
export async function recoverFromSnapshot(layout: CgroupLayout, parent: string, sessionId: string, log: Logger): Promise<void> {
  for (const d of sessionCgroupDirs(layout, parent, sessionId)) {
    if (d.version === 2) thawIfFrozen(d, log);
  }
  const left = snapshotCgroupsFor(layout, parent, sessionId).filter((c) => existsSync(c.path));
  if (left.length === 0) return;
  try {
    await removeSnapshotCgroups(left);
    log.warn({ cgroups: left.map((c) => c.path) }, 'removed the cgroups of a snapshot the last daemon did not finish');
  } catch (e) {
    log.error({ err: (e as Error).message }, 'cannot remove the cgroups of an unfinished snapshot');
  }
}

function thawIfFrozen(dir: CgroupDir, log: Logger): void {
  const file = join(dir.path, 'cgroup.freeze');
  try {
    if (readFileSync(file, 'utf8').trim() !== '1') return;
    writeFileSync(file, '0');
    log.warn({ cgroup: dir.path }, 'thawed a session left frozen (a snapshot the last daemon did not finish)');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') log.error({ cgroup: dir.path, err: (e as Error).message }, 'cannot thaw a session left frozen');
  }
}
