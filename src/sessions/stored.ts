// A stopped session's files: its writable root layer and /home as one
// snapshot (src/snapshots/: a tar, zstd when the host has it), stored under
// <state_dir>/stopped/<id>, root-only. Stop writes it into a new file of an
// unpredictable name and renames it into place once it is whole and on
// disk, so a crash leaves either the whole file or none; start replays it
// inside the new session through its init, as create --from does.
import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, constants } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { addon } from '../native/addon.js';
import { RESTORE_SCRIPT } from '../snapshots/restoreScript.js';
import { hasZstd } from '../snapshots/snapshot.js';
import { snapshotSession, type SnapshotConfig } from '../snapshots/sessionSnapshot.js';
import type { SessionRow } from '../store/sessionStore.js';
import type { SessionState } from '../vocab/states.js';
import { agentError, StartFailure, type SessionAgent } from './agent.js';
import { commandEnv } from './command.js';

const dirOf = (config: Config) => join(config.state_dir, 'stopped');
const ZSTD = '.tar.zst';
const TAR = '.tar';

/** Where a stopped session's files are, if they are. */
export function storedFile(config: Config, id: string): { path: string; zstd: boolean } | undefined {
  for (const [ext, zstd] of [[ZSTD, true], [TAR, false]] as const) {
    const path = join(dirOf(config), id + ext);
    try {
      if (statSync(path).isFile()) return { path, zstd };
    } catch {
      /* not this one */
    }
  }
  return undefined;
}

export function removeStored(config: Config, id: string): void {
  for (const ext of [ZSTD, TAR]) rmSync(join(dirOf(config), id + ext), { force: true });
}

/** Store the (stopping) session's files: the bytes stored. Nothing is left behind if it fails. */
export async function storeFiles(config: Config, where: SnapshotConfig, row: SessionRow, log: Logger): Promise<number> {
  const dir = dirOf(config);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const zstd = hasZstd();
  const partial = join(dir, `${row.id}.${randomBytes(8).toString('hex')}.partial`);
  const fd = openSync(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  const out = createWriteStream('', { fd, autoClose: false });
  try {
    const bytes = await snapshotSession(where, row, out, zstd, log);
    out.end();
    await finished(out);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(partial, join(dir, row.id + (zstd ? ZSTD : TAR)));
    return bytes;
  } catch (e) {
    out.destroy();
    try {
      closeSync(fd);
    } catch {
      /* closed above */
    }
    rmSync(partial, { force: true });
    throw e;
  }
}

/** Stored files no stopped session will start from (a crash between a start and its cleanup), and partial ones: removed at start-up. */
export function sweepStored(config: Config, stateOf: (id: string) => SessionState | undefined, log: Logger): void {
  let names: string[];
  try {
    names = readdirSync(dirOf(config));
  } catch {
    return;
  }
  for (const name of names) {
    const id = /^(s-[0-9a-f]{10})\./.exec(name)?.[1];
    const state = id === undefined ? undefined : stateOf(id);
    if (!name.endsWith('.partial') && (state === 'stopped' || state === 'stopping' || state === 'starting')) continue;
    rmSync(join(dirOf(config), name), { force: true });
    log.info({ file: name }, 'removed stored files nothing will start from');
  }
}

/** The last bytes a restore wrote to stderr: what its failure says. */
const TAIL = 2000;

/** A volume's export (volumeExport.ts: ./PATH entries, numeric owners) unpacked at its mount target ($2), inside the session. */
export const VOLUME_RESTORE_SCRIPT = `set -eu
cd -- "$2"
if [ "$1" = zstd ]; then zstd -dcq; else cat; fi | tar -x -f - -p --numeric-owner --same-owner`;

/**
 * Replay the stored files inside the (starting) session (RESTORE_SCRIPT), or
 * with `into` a volume's contents at the target it mounts that volume on (a
 * drain's move): the script runs as its root, under its confinement and in
 * its cgroups, fed through a pipe (the session sees no host file). Throws
 * with tar's last words.
 */
export async function restoreFiles(agent: SessionAgent, hostname: string, stored: { path: string; zstd: boolean }, timeoutMs: number, into?: string): Promise<void> {
  const a = addon();
  const stdin = a.pipe();
  const stdout = a.pipe();
  const stderr = a.pipe();
  const theirs = [stdin[0], stdout[1], stderr[1]];
  let started;
  try {
    started = await agent.start({ tty: false, argv: into === undefined ? ['sh', '-c', RESTORE_SCRIPT, 'restore', stored.zstd ? 'zstd' : 'none'] : ['sh', '-c', VOLUME_RESTORE_SCRIPT, 'restore', stored.zstd ? 'zstd' : 'none', into], env: commandEnv(hostname, { env: [], tty: false }), cwd: '/', cols: 0, rows: 0, fds: theirs, stdin: true });
  } catch (e) {
    for (const fd of [stdin[1], stdout[0], stderr[0]]) a.closeFd(fd);
    throw e instanceof StartFailure ? agentError(e, into === undefined ? 'restore its files' : `restore the volume at ${into}`) : e;
  } finally {
    for (const fd of theirs) a.closeFd(fd);
  }
  const input = new Socket({ fd: stdin[1], readable: false, writable: true });
  const out = new Socket({ fd: stdout[0], readable: true, writable: false });
  const err = new Socket({ fd: stderr[0], readable: true, writable: false });
  let said = '';
  out.resume(); // its stdout says nothing we keep
  err.on('data', (b: Buffer) => (said = (said + b.toString('utf8')).slice(-TAIL)));
  for (const s of [input, out, err]) s.on('error', () => undefined); // the exit status says what happened
  const file = createReadStream(stored.path);
  file.on('error', () => input.destroy());
  file.pipe(input);
  const timer = setTimeout(() => agent.signal(started.id, 9), timeoutMs);
  try {
    const exit = await started.exited;
    if (exit === null) throw new Error('the session ended while its files were restored');
    if (exit.code !== 0) {
      const how = exit.code === null ? `was killed by signal ${exit.signal}${exit.signal === 9 ? ' (out of memory, or past sessions.snapshot_timeout_ms)' : ''}` : `exited with ${exit.code}`;
      throw new Error(`restoring ${into === undefined ? 'its files' : `the volume at ${into}`} ${how}: ${said.trim().split('\n').slice(-3).join(' ')}`);
    }
  } finally {
    clearTimeout(timer);
    file.destroy();
    for (const s of [input, out, err]) s.destroy();
  }
}
