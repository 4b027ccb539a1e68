// Streams from the daemon into a file of the caller's: `session snapshot -o`
// and `volume export -o`. The daemon never opens a path of the caller's (it
// would as root): the CLI writes the file, into a new file of an
// unpredictable name next to FILE (created O_EXCL, so no planted symlink is
// followed), renamed over FILE only once the daemon's trailer says the
// stream is whole.
import { randomBytes } from 'node:crypto';
import { constants, createWriteStream, openSync, renameSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { basename, dirname, join, resolve } from 'node:path';
import { CliError, streamError } from './client.js';

const MIB = 1024 * 1024;

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

/**
 * GET `path` (a stream route) into FILE: through a new partial file, renamed
 * over FILE only when the daemon's `trailer` says the stream is complete.
 * `what` names it in progress and errors ("snapshot web").
 */
export function download(socket: string, path: string, file: string, what: string, trailer: string): Promise<void> {
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
    const req = request({ socketPath: socket, method: 'GET', path }, (res) => {
      if (res.statusCode !== 200) return streamError(res, fail);
      const p = progress(what);
      res.on('data', (c: Buffer) => p.add(c.length));
      res.pipe(out);
      res.on('aborted', () => fail(new CliError(`the ${what} stream was cut: the daemon log says why`)));
      res.on('error', () => fail(new CliError(`the ${what} stream was cut: the daemon log says why`)));
      out.on('finish', () => {
        p.done();
        if (!String(res.trailers[trailer] ?? '').startsWith('complete')) return fail(new CliError(`the ${what} stream ended incomplete: the daemon log says why`));
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
