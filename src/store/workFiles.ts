// The state dir's tmp/: work under way of the daemon that holds the state
// dir, a snapshot's scratch directory or a drain's upload of a moved
// session's files or volumes. A daemon that died mid-way leaves it behind; the next one,
// holding the state dir's lock (so no other daemon's work is under way), removes
// it at start. Anything else found there is left alone.
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

export const workDir = (stateDir: string): string => join(stateDir, 'tmp');

/** A new name in the work dir (made if missing) for a move's file of session or volume `id` (UPLOAD below sweeps it). */
export function moveFile(stateDir: string, id: string): string {
  mkdirSync(workDir(stateDir), { recursive: true, mode: 0o700 });
  return join(workDir(stateDir), `moved-in-${id}.${randomBytes(8).toString('hex')}`);
}

/** What a daemon's own work there is named: `snapshot-XXXXXX` (a directory of plain files), `moved-in-ID.HEX` (a file: a session's files, or a volume's, sent or received). */
const SNAPSHOT = /^snapshot-[A-Za-z0-9]{6}$/;
const UPLOAD = /^moved-in-[sv]-[0-9a-f]{10}\.[0-9a-f]{16}$/;

export function sweepWork(stateDir: string, log: Logger): void {
  let names: string[];
  try {
    names = readdirSync(workDir(stateDir));
  } catch {
    return; // none yet
  }
  for (const name of names) {
    const path = join(workDir(stateDir), name);
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (!st || !((SNAPSHOT.test(name) && st.isDirectory()) || (UPLOAD.test(name) && st.isFile()))) continue;
    try {
      rmSync(path, { recursive: true, force: true });
      log.info({ path }, 'removed the work a daemon left unfinished');
    } catch (e) {
      // A leftover is not worth refusing to start over.
      log.warn({ path, err: (e as Error).message }, 'cannot remove the work a daemon left unfinished');
    }
  }
}
