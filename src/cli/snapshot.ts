// `enclave session snapshot S -o FILE` (a download, download.ts) and the
// files of `session create --from FILE`: a restore replays the file inside
// the new session, as its root and under its confinement. Nothing of the
// file but its manifest (snapshotHead.ts) is parsed on the host.
import { closeSync, createReadStream, openSync, readSync, statSync } from 'node:fs';
import { Transform, Writable } from 'node:stream';
import { SNAPSHOT_TRAILER } from '../api/protocol.js';
import { ROUTES } from '../api/routes.js';
import { CliError, routePath } from './client.js';
import { download, progress } from './download.js';
import { runExecClient } from './execClient.js';
import { tarHeader } from './snapshotHead.js';
import { RESTORE_SCRIPT as RESTORE } from '../snapshots/restoreScript.js';

/** What the file holds: zstd or a plain tar (checked locally, before anything is created). `flag` names it in errors. */
export function snapshotKind(file: string, flag = '--from', what = 'a snapshot'): 'zstd' | 'none' {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new CliError(`${flag} ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, 2);
  }
  const head = Buffer.alloc(512);
  const n = readSync(fd, head, 0, 512, 0);
  closeSync(fd);
  if (n >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (n === 512 && head.toString('latin1', 257, 262) === 'ustar') {
    if (tarHeader(head)) return 'none';
    throw new CliError(`${flag} ${file}: not ${what} (its first tar header's checksum is wrong)`, 2);
  }
  throw new CliError(`${flag} ${file}: not ${what} (neither zstd nor tar)`, 2);
}

/** The last `max` bytes written to it: a failed restore's stderr, for its message (tar and zstd say much, mostly noise). */
class Tail extends Writable {
  private buf = Buffer.alloc(0);
  constructor(private readonly max = 4096) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (this.buf.length > this.max) this.buf = this.buf.subarray(this.buf.length - this.max);
    done();
  }
  /** The last line that says something. */
  lastLine(): string | undefined {
    return this.buf
      .toString('utf8')
      .split('\n')
      .map((l) => l.replace(/[\x00-\x1f\x7f]+/g, ' ').trim())
      .filter(Boolean)
      .at(-1);
  }
}

/**
 * Replay a snapshot in the new session. A failure says why in one line: the
 * session ran out of memory (the exec's status says so), else the last line
 * the restore wrote on stderr and its exit code.
 */
export async function restoreSnapshot(socket: string, session: string, file: string, kind: 'zstd' | 'none'): Promise<void> {
  const p = progress(`restore into ${session}`, statSync(file).size);
  // Counted as the exec stream takes it: nothing flows before its socket is open.
  const counted = createReadStream(file).pipe(
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        p.add(chunk.length);
        done(null, chunk);
      },
    }),
  );
  const errors = new Tail();
  let reason: string | undefined;
  const code = await runExecClient({ socket, session, command: ['sh', '-c', RESTORE, 'restore', kind], env: [], stdin: counted, stderr: errors, onReason: (r) => (reason = r) });
  p.done();
  if (code === 0) return;
  const said = errors.lastLine();
  throw new CliError(`restoring ${file} into ${session} failed: ${reason ?? `exit ${code}${said ? `: ${said}` : ''}`}`);
}

export function takeSnapshot(socket: string, session: string, file: string, compression: 'zstd' | 'none' | undefined, volumes = false): Promise<void> {
  const path = routePath(ROUTES.snapshot, { params: { session }, query: { ...(compression ? { compression } : {}), ...(volumes ? { volumes: '1' as const } : {}) } });
  return download(socket, path, file, `snapshot ${session}`, SNAPSHOT_TRAILER);
}
