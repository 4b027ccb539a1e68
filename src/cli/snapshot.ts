// `enclave session snapshot S -o FILE` and `session create --from FILE`.
// The snapshot streams from the daemon into a new file of an unpredictable
// name next to FILE (created O_EXCL, so no planted symlink is followed),
// renamed over FILE only once the daemon's trailer says the stream is whole. A restore replays the file
// inside the new session, as its root and under its confinement: nothing of
// the file is parsed on the host.
import { randomBytes } from 'node:crypto';
import { closeSync, constants, createReadStream, createWriteStream, openSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { basename, dirname, join, resolve } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { ROUTES } from '../api/routes.js';
import { CliError, errorMessage, routePath } from './client.js';
import { runExecClient } from './execClient.js';
import { RESTORE_SCRIPT as RESTORE } from '../snapshots/restoreScript.js';

const MIB = 1024 * 1024;
const TRAILER = 'x-enclave-snapshot';

/** A progress line on a terminal (stderr), at most 4 times a second; a summary at the end. */
export function progress(what: string, total?: number): { add(n: number): void; done(): void } {
  const t0 = Date.now();
  let bytes = 0;
  let last = 0;
  const tty = process.stderr.isTTY;
  const line = () => {
    const s = Math.max((Date.now() - t0) / 1000, 0.001);
    const of = total ? ` of ${(total / MIB).toFixed(1)} MiB` : '';
    return `${what}: ${(bytes / MIB).toFixed(1)} MiB${of} in ${s.toFixed(1)} s (${(bytes / MIB / s).toFixed(1)} MiB/s)`;
  };
  return {
    add(n) {
      bytes += n;
      if (tty && Date.now() - last > 250) {
        last = Date.now();
        process.stderr.write(`\r\x1b[K${line()}`);
      }
    },
    done() {
      if (tty) process.stderr.write(`\r\x1b[K${line()}\n`);
    },
  };
}

/**
 * A new file next to FILE for the stream: O_CREAT|O_EXCL (never follows a
 * symlink, never opens what exists) under an unpredictable name, mode 0600.
 * A planted FILE.partial (or any guessed name) is never written through.
 */
function openPartial(file: string): { path: string; fd: number } {
  const dir = dirname(resolve(file));
  for (let i = 0; ; i++) {
    const path = join(dir, `${basename(file)}.${randomBytes(8).toString('hex')}.partial`);
    try {
      return { path, fd: openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || i >= 3) throw new CliError(`cannot write ${file}: ${(e as Error).message}`);
    }
  }
}

export function takeSnapshot(socket: string, session: string, file: string, compression: 'zstd' | 'none' | undefined): Promise<void> {
  const partial = openPartial(file);
  // Ctrl-C or a kill: the partial file goes too.
  const onSignal = (sig: NodeJS.Signals) => {
    rmSync(partial.path, { force: true });
    process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const settle = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  return new Promise<void>((done, reject) => {
    let over = false;
    const fail = (e: CliError) => {
      if (over) return;
      over = true;
      out.destroy();
      rmSync(partial.path, { force: true });
      reject(e);
    };
    const out = createWriteStream('', { fd: partial.fd });
    out.on('error', (e) => fail(new CliError(`cannot write ${file}: ${e.message}`)));
    const req = request({ socketPath: socket, method: 'GET', path: routePath(ROUTES.snapshot, { params: { session }, query: compression ? { compression } : {} }) }, (res) => {
      if (res.statusCode !== 200) {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            body = undefined;
          }
          fail(new CliError(errorMessage({ status: res.statusCode ?? 0, body })));
        });
        return;
      }
      const p = progress(`snapshot ${session}`);
      res.on('data', (c: Buffer) => p.add(c.length));
      res.pipe(out);
      res.on('aborted', () => fail(new CliError('the snapshot stream was cut: the daemon log says why')));
      res.on('error', () => fail(new CliError('the snapshot stream was cut: the daemon log says why')));
      out.on('finish', () => {
        p.done();
        if (!String(res.trailers[TRAILER] ?? '').startsWith('complete')) return fail(new CliError('the snapshot stream ended incomplete: the daemon log says why'));
        if (over) return;
        // rename() replaces FILE itself, even a symlink there: it never writes through one.
        try {
          renameSync(partial.path, file);
        } catch (e) {
          return fail(new CliError(`cannot write ${file}: ${(e as Error).message}`));
        }
        over = true;
        done();
      });
    });
    req.on('error', (e) => fail(new CliError(`cannot reach the daemon at ${socket}: ${e.message}`)));
    req.end();
  }).finally(settle);
}

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
  if (n === 512 && head.toString('latin1', 257, 262) === 'ustar') return 'none';
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
