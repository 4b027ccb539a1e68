// A snapshot of one running session, from its row: where its layer, IDs and
// freezer are, and the errors a caller gets.
import { mkdirSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { ApiError } from '../vocab/errors.js';
import { sessionCgroupDirs, type CgroupLayout } from '../isolation/cgroups.js';
import { rangeForSlot, type IdPool } from '../isolation/idRange.js';
import { parseStoredPlan } from '../isolation/plan.js';
import type { SessionRow } from '../store/sessionStore.js';
import { ArchiveError } from './archive.js';
import { writeSnapshot, type SnapshotExtras } from './snapshot.js';
import { snapshotCgroupsFor } from './snapshotCgroups.js';
import { workDir } from '../store/workFiles.js';

export interface SnapshotConfig {
  layout: CgroupLayout;
  cgroupParent: string;
  ids: IdPool;
  stateDir: string;
  /** Entries a layer and /home may hold (their inode caps). */
  maxEntries: number;
  timeoutMs: number;
}

/** Stream a running session's writable layer and /home into out: the bytes written. */
export async function snapshotSession(c: SnapshotConfig, row: SessionRow, out: Writable, compress: boolean, log: Logger, extras: SnapshotExtras = { volumes: [] }): Promise<number> {
  const id = row.id;
  // A stop stores its files the same way, while it is 'stopping'.
  if (row.state !== 'running' && row.state !== 'stopping') throw new ApiError('conflict', `session ${id} is ${row.state}, not running`);
  const v2 = sessionCgroupDirs(c.layout, c.cgroupParent, id).find((d) => d.version === 2);
  if (!v2 || row.init_pid === null || row.plan === null || row.id_slot === null) throw new ApiError('conflict', `session ${id} cannot be snapshotted on this host (it needs cgroup v2 for the freeze)`);
  const range = rangeForSlot(c.ids, row.id_slot);
  // Volume files keep their own IDs (0..size-1) through the owner maps of the session's host range: the two must not meet.
  if (extras.volumes.length > 0 && range.hostBase < range.size) throw new ApiError('conflict', `session ${id}: its host IDs start at ${range.hostBase}, inside a volume's ID space (0..${range.size - 1}): snapshot it without its volumes`);
  const tmp = workDir(c.stateDir);
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  const t0 = process.hrtime.bigint();
  try {
    const bytes = await writeSnapshot(
      {
        id,
        initPid: row.init_pid,
        plan: parseStoredPlan(row.plan, `session ${id}`),
        hostBase: range.hostBase,
        idSize: range.size,
        cgroupV2: v2.path,
        cgroups: snapshotCgroupsFor(c.layout, c.cgroupParent, id),
        maxEntries: c.maxEntries,
        timeoutMs: c.timeoutMs,
        tmpDir: tmp,
        log,
        extras,
      },
      out,
      compress,
    );
    log.info({ bytes, compress, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, 'snapshot written');
    return bytes;
  } catch (e) {
    if (!(e instanceof ArchiveError)) throw e;
    log.warn({ err: e.message, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, 'snapshot failed');
    throw new ApiError('conflict', `snapshot of ${id}: ${e.message}`);
  }
}
