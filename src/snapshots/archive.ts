// tar (| zstd) into a writable: the one runner of snapshots and volume
// exports. tar writes straight into zstd's stdin (a pipe the daemon holds no
// end of); the daemon reads the last process's stdout into the output with
// back-pressure, and settles when every process has exited and the output
// has taken everything, or at once when the output closes (the client went
// away), a child fails, or the deadline passes: then the children are
// SIGKILLed.
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { JOIN_FAILED, spawnIn } from './snapshotCgroups.js';

export class ArchiveError extends Error {}

export const timedOut = (ms: number, what = 'snapshot', key = 'sessions.snapshot_timeout_ms') => new ArchiveError(`the ${what} took longer than ${key} (${ms} ms): cut`);

export interface RunOptions {
  tarArgs: string[];
  /** cgroup.procs files tar and zstd join before they exec. */
  procs: string[];
  compress: boolean;
  /** Aborted at the deadline; the error says which. */
  signal: AbortSignal;
  timeoutError: ArchiveError;
  /** Bytes that go out after the archive's (a snapshot's manifest frame). */
  suffix?: Buffer | undefined;
  /** Run tar and zstd at nice 10 (a volume export: no session's cgroup to charge them to). */
  nice?: boolean;
}

/**
 * tar (| zstd) into out: the byte count, or an error with tar's last words.
 * tar writes straight into zstd's stdin (a pipe the daemon holds no end
 * of), so nothing in the daemon can hit EPIPE between them. Settles on the
 * processes' exits plus the end of the output, or at once when out closes
 * (the client went away), a stream or child fails, or the deadline passes:
 * then the children are SIGKILLed and every stream destroyed.
 */
export function runArchive(o: RunOptions, out: Writable): Promise<number> {
  return new Promise((resolve, reject) => {
    const children: ChildProcess[] = [];
    const streams: (Readable | Writable)[] = [];
    let settled = false;
    let err = '';
    let bytes = 0;
    const finish = (e?: ArchiveError) => {
      if (settled) return;
      settled = true;
      o.signal.removeEventListener('abort', onAbort);
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      for (const s of streams) s.destroy();
      if (e) reject(e);
      else resolve(bytes);
    };
    const onAbort = () => finish(o.timeoutError);
    o.signal.addEventListener('abort', onAbort);
    out.on('error', () => finish(new ArchiveError('the client went away')));
    out.on('close', () => finish(new ArchiveError('the client went away')));
    if (out.destroyed) return finish(new ArchiveError('the client went away'));

    const keep = (b: Buffer) => (err = (err + b.toString()).slice(-2000));
    const exits = new Map<ChildProcess, string>();
    let ended = false;
    const check = () => {
      if (ended && exits.size === children.length) finish();
    };
    const watch = (what: string, c: ChildProcess) => {
      children.push(c);
      c.on('error', (e) => finish(new ArchiveError(`${what}: ${e.message}`)));
      c.on('exit', (code, signal) => {
        exits.set(c, what);
        if (code === 0) return check();
        // tar exits 1 when a file changed as it was read: the session is frozen, so that is a real failure too.
        const report = () => finish(new ArchiveError(code === JOIN_FAILED ? `${what} could not join the snapshot cgroups` : `${what} exited with ${code ?? signal}: ${err.trim().split('\n').slice(-3).join(' ')}`));
        // Its last words may still be in the pipe: a moment for them, no more.
        c.stderr?.once('close', report);
        setTimeout(report, 200).unref();
      });
      for (const s of [c.stdin, c.stdout, c.stderr]) {
        if (!s) continue;
        streams.push(s);
        s.on('error', () => undefined); // an exit status or a destroy reports it
      }
      c.stderr?.on('data', keep);
    };
    const cmd = (c: string, args: string[]): [string, string[]] => (o.nice ? ['nice', ['-n', '10', c, ...args]] : [c, args]);
    // --single-thread: no worker thread, whose job buffers (~50 MB RSS at -3, even with -T1) would not fit in a small session's memory, to which zstd is charged.
    const z = o.compress ? spawnIn(o.procs, ...cmd('zstd', ['-q', '-c', '-3', '--single-thread']), { stdio: ['pipe', 'pipe', 'pipe'] }) : undefined;
    if (z) watch('zstd', z);
    const tar = spawnIn(o.procs, ...cmd('tar', o.tarArgs), { stdio: ['ignore', z ? z.stdin! : 'pipe', 'pipe'] });
    watch('tar', tar);
    // tar has its own copy of zstd's stdin: ours goes, so zstd sees EOF when tar is done.
    z?.stdin!.destroy();
    const src = (z ?? tar).stdout!;
    src.on('data', (b: Buffer) => {
      bytes += b.length;
      if (!settled && !out.write(b)) src.pause();
    });
    out.on('drain', () => src.resume());
    src.on('end', () => {
      if (o.suffix && !settled) {
        bytes += o.suffix.length;
        out.write(o.suffix);
      }
      ended = true;
      check();
    });
  });
}
