// Is this failure the disk holding the state dir being full? SQLite says
// SQLITE_FULL, or, when it cannot even grow its WAL or shared-memory file,
// an I/O error; the file system says ENOSPC. The statfs check tells a full
// disk from a real I/O error.
import { statfsSync } from 'node:fs';

/** Bytes free to an unprivileged writer on the file system holding path, or undefined. */
export function bytesFree(path: string): number | undefined {
  try {
    const s = statfsSync(path);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

export function isDiskFull(e: unknown, stateDir: string): boolean {
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === 'string' ? err.code : '';
  const message = typeof err?.message === 'string' ? err.message : '';
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT' || /database or disk is full|no space left/i.test(message)) return true;
  // Root may write into the reserved blocks that bavail leaves out: less than a page free counts as full.
  if (code.startsWith('SQLITE_IOERR') || /disk I\/O error/i.test(message)) return (bytesFree(stateDir) ?? Infinity) < 64 * 1024;
  return false;
}

export function diskFullMessage(stateDir: string): string {
  const free = bytesFree(stateDir);
  return `the disk holding the state dir ${stateDir} is full${free === undefined ? '' : ` (${free} bytes free)`}: free space there and try again`;
}
