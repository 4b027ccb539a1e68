// `enclave session cp [-a] SRC DST`: one side SESSION:/PATH, the other a
// host path or "-" (a tar on stdin or stdout), with docker cp's rules for
// paths (a trailing "/." copies a directory's contents; an existing
// directory receives the source under its own name; a missing DST is
// created; a trailing "/" must be a directory). This process, running as
// the caller, reads and writes every host file; the daemon relays a tar
// between it and a tar run inside the session.
import { lstatSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { sessionRef } from '../api/schemas.js';
import { copyPath, copyPathProblem } from '../vocab/copyPath.js';
import { CliError } from './client.js';
import { CopyStream } from './copyStream.js';
import { closeQuietly, openDir } from './safeFs.js';
import { Broken, TarExtractor, shown } from './tarExtract.js';
import { packHost, type PackSource } from './tarPack.js';

export type Side = { kind: 'session'; session: string; path: string } | { kind: 'host'; path: string } | { kind: 'stdio' };

/** SESSION:/PATH (SESSION an id, a name or UID:NAME), "-", or a host path (one with a colon before any slash: write ./PATH). */
export function parseSide(arg: string): Side | string {
  if (arg === '-') return { kind: 'stdio' };
  const m = /^([^/]*):(\/.*)$/.exec(arg);
  if (m) {
    if (!sessionRef.safeParse(m[1]).success) return `'${m[1]}' is neither a session id, a valid name, nor UID:NAME (a host path with a colon: write ./${arg})`;
    const problem = copyPathProblem(m[2]!);
    return problem ? `session path '${m[2]}' ${problem}` : { kind: 'session', session: m[1]!, path: m[2]! };
  }
  const colon = arg.indexOf(':');
  const slash = arg.indexOf('/');
  if (colon > 0 && (slash < 0 || colon < slash)) return `'${arg}': a session path must be absolute (SESSION:/PATH); a host path with a colon: write ./${arg}`;
  if (arg === '') return 'an empty path';
  return { kind: 'host', path: arg };
}

export interface CopyArgs {
  socket: string;
  src: Side;
  dst: Side;
  archive: boolean;
}

/** Exit 0 when the copy is whole; anything else throws with the reason. */
export async function runCopy(a: CopyArgs): Promise<number> {
  if (a.src.kind === 'session' && a.dst.kind !== 'session') return copyOut(a, a.src, a.dst);
  if (a.dst.kind === 'session' && a.src.kind !== 'session') return copyIn(a, a.src, a.dst);
  throw new CliError('one of SRC and DST must be SESSION:/PATH and the other a host path or -', 2);
}

function finished(stream: CopyStream, code: number | undefined, what: string): void {
  stream.summary();
  if (code === undefined) throw new CliError(`${what}: the stream ended without an exit status (the daemon's log says why)`);
  if (code !== 0) throw new CliError(`${what} failed in the session (exit ${code})`);
}

// ---- out of the session: the dangerous direction -----------------------------

interface HostTarget {
  dirFd: number;
  name: string | null;
}

/** Where a copy out lands, by docker cp's rules; the caller's own path, resolved once. */
function hostTarget(dst: string, srcIsContents: boolean): HostTarget {
  const st = statSync(dst, { throwIfNoEntry: false });
  if (st?.isDirectory()) return { dirFd: openDir(dst), name: null };
  const leaf = basename(dst);
  if (st) {
    if (dst.endsWith('/')) throw new CliError(`${dst}: not a directory`);
    if (srcIsContents) throw new CliError(`cannot copy a directory to ${dst}: it exists and is not a directory`);
  } else if (dst.endsWith('/') || leaf === '.' || leaf === '..') throw new CliError(`${dst}: no such directory (the destination directory must exist)`);
  const parent = dirname(dst);
  if (!statSync(parent, { throwIfNoEntry: false })?.isDirectory()) throw new CliError(`${parent}: no such directory`);
  return { dirFd: openDir(parent), name: leaf };
}

async function copyOut(a: CopyArgs, src: Extract<Side, { kind: 'session' }>, dst: Exclude<Side, { kind: 'session' }>): Promise<number> {
  const what = `copy from ${src.session}:${src.path}`;
  if (dst.kind === 'stdio') {
    // The session's tar as it is: whoever reads it must treat it as hostile.
    const stream = await CopyStream.open(a.socket, src.session, { direction: 'out', path: src.path, archive: a.archive });
    stream.onStdout = (c) => {
      if (!process.stdout.write(c)) {
        stream.pause();
        process.stdout.once('drain', () => stream.resume());
      }
    };
    finished(stream, await stream.closed, what);
    return 0;
  }
  // Only root can give a file away: fail before anything moves.
  if (a.archive && process.getuid?.() !== 0) throw new CliError('--archive keeps the session\'s owners on the host, which needs root: copy without -a to own the files');
  const p = copyPath(src.path);
  const target = hostTarget(dst.path, p.name === null);
  const display = target.name === null ? dst.path.replace(/\/+$/, '') || '/' : dirname(dst.path);
  // Into an existing directory the source keeps its name; else it takes DST's.
  const ex = new TarExtractor({ dirFd: target.dirFd, name: target.name ?? p.name, root: p.name, display, archive: a.archive });
  try {
    const stream = await CopyStream.open(a.socket, src.session, { direction: 'out', path: src.path, archive: a.archive });
    stream.onStdout = (c) => {
      ex.write(c);
      if (ex.error) stream.abort();
    };
    const code = await stream.closed;
    const err = ex.end();
    for (const s of ex.skipped.slice(0, 20)) process.stderr.write(`enclave: skipped ${s}: not copied to the host\n`);
    if (ex.skipped.length > 20) process.stderr.write(`enclave: skipped ${ex.skipped.length - 20} more\n`);
    // A refusal is the news; a broken stream from a command that failed is its failure.
    if (err && (code === 0 || code === undefined || !(err instanceof Broken))) throw new CliError(`${what}: ${err.message}`);
    finished(stream, code, what);
    return 0;
  } finally {
    closeQuietly(target.dirFd);
  }
}

// ---- into the session ------------------------------------------------------------

interface HostSource {
  dirFd: number;
  name: string | null;
  /** The source's own name (for an existing directory in the session), null for a contents copy. */
  base: string | null;
  isDir: boolean;
}

/** The host source, by docker cp's rules: a symlink is copied as itself unless a trailing slash says "the directory". */
function hostSource(src: string): HostSource {
  const leaf = basename(src);
  const contents = src === '/' || /(^|\/)\.\/*$/.test(src);
  const st = lstatSync(src, { throwIfNoEntry: false });
  if (!st) throw new CliError(`${src}: no such file or directory`);
  if (contents || src.endsWith('/') || leaf === '..') {
    if (!statSync(src).isDirectory()) throw new CliError(`${src}: not a directory`);
    // "dir/" is the directory dir (a symlink to one included); "a/.." the one it resolves to.
    const base = contents ? null : leaf === '..' ? basename(realpathSync(src)) : leaf;
    return { dirFd: openDir(src), name: null, base: base || null, isDir: true };
  }
  return { dirFd: openDir(dirname(src)), name: leaf, base: leaf, isDir: st.isDirectory() };
}

/** The session's first line: what the destination is. */
function probe(stream: CopyStream): Promise<'dir' | 'file' | 'none' | undefined> {
  return new Promise((resolve) => {
    let line = Buffer.alloc(0);
    stream.onStdout = (c) => {
      line = Buffer.concat([line, c]);
      const nl = line.indexOf(10);
      if (nl < 0 && line.length < 8) return;
      stream.onStdout = () => undefined; // tar -x says nothing more; a session that does is ignored
      const word = nl < 0 ? '' : line.subarray(0, nl).toString();
      resolve(word === 'dir' || word === 'file' || word === 'none' ? word : undefined);
    };
    void stream.closed.then(() => resolve(undefined));
  });
}

async function copyIn(a: CopyArgs, src: Exclude<Side, { kind: 'session' }>, dst: Extract<Side, { kind: 'session' }>): Promise<number> {
  const what = `copy to ${dst.session}:${dst.path}`;
  const d = copyPath(dst.path);
  const source = src.kind === 'host' ? hostSource(src.path) : undefined;
  try {
    const stream = await CopyStream.open(a.socket, dst.session, { direction: 'in', path: dst.path, archive: a.archive });
    const kind = await probe(stream);
    if (!kind) {
      stream.abort();
      const code = await stream.closed;
      stream.summary();
      throw new CliError(code ? `${what} failed in the session (exit ${code})` : `${what}: the session did not say what ${dst.path} is`);
    }
    const refuse = (why: string): never => {
      stream.abort();
      throw new CliError(`${what}: ${why}`);
    };
    let as: string | null;
    if (kind === 'dir') as = source?.base ?? null;
    else if (d.mustBeDir || d.name === null) as = refuse(kind === 'file' ? `${dst.path} is not a directory` : `${dst.path}: no such directory in the session`);
    else if (!source) as = refuse(`a tar on stdin goes into a directory, and ${dst.path} is not one`);
    else if (kind === 'file' && source.isDir) as = refuse(`cannot copy a directory to ${dst.path}: it exists and is not a directory`);
    else as = d.name;
    if (source) {
      const pack: PackSource = { dirFd: source.dirFd, name: source.name, as, display: src.kind === 'host' ? src.path : '-', warn: (m) => process.stderr.write(`enclave: ${shown(m)}\n`) };
      for await (const chunk of packHost(pack)) await stream.send(chunk);
    } else {
      for await (const chunk of process.stdin) await stream.send(chunk as Buffer);
    }
    stream.endInput();
    finished(stream, await stream.closed, what);
    return 0;
  } finally {
    closeQuietly(source?.dirFd);
  }
}
