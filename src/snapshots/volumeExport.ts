// A volume's contents as one tar stream (zstd when asked), for `enclave
// volume export`. The daemon reads the volume's host mount with tar as
// root, as a snapshot reads a frozen layer: the tree cannot change
// meanwhile, because no live session may mount the volume read-write
// during an export (Volumes.holdForReading). tar never follows a symlink when it
// archives and stays on the volume's filesystem. Owners are written as they
// are stored, which is the volume's own ID space (the session-relative IDs
// every session sees through its idmapped mount), so an import into any
// volume gives them back. xattrs are not kept. The output goes to the caller
// over the API; the daemon never opens a path of the caller's.
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { ApiError } from '../vocab/errors.js';
import type { VolumeRow, VolumeUse } from '../store/volumeStore.js';
import type { Volumes } from '../volumes/volumes.js';
import { ArchiveError, runArchive, timedOut } from './archive.js';

export interface ExportOptions {
  compress: boolean;
  /** The longest an export may hold the volume (sessions.snapshot_timeout_ms). */
  timeoutMs: number;
  /** Which sessions an error may name. */
  seen: (u: VolumeUse) => boolean;
  log: Logger;
}

/** Pure: tar's arguments for a volume's host mount: every entry under it, as ./PATH. */
export function exportTarArgs(mount: string): string[] {
  return ['-c', '-f', '-', '--numeric-owner', '--sparse', '--one-file-system', '-C', mount, '.'];
}

/** Stream the volume's contents into out: the bytes written, once the stream is whole. */
export async function exportVolume(volumes: Volumes, v: VolumeRow, out: Writable, o: ExportOptions): Promise<number> {
  const { path, release } = await volumes.holdForReading(v, o.seen);
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), o.timeoutMs);
  const t0 = process.hrtime.bigint();
  try {
    const bytes = await runArchive(
      { tarArgs: exportTarArgs(path), procs: [], compress: o.compress, signal: deadline.signal, timeoutError: timedOut(o.timeoutMs, 'export', 'sessions.snapshot_timeout_ms'), nice: true },
      out,
    );
    o.log.info({ volume: v.id, bytes, compress: o.compress, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, 'volume exported');
    return bytes;
  } catch (e) {
    if (!(e instanceof ArchiveError)) throw e;
    o.log.warn({ volume: v.id, err: e.message }, 'volume export failed');
    throw new ApiError('conflict', `export of volume ${v.name}: ${e.message}`);
  } finally {
    clearTimeout(timer);
    release();
  }
}
