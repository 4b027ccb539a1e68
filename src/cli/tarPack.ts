// Pack a host path into a tar for a session, as the caller: every file is
// read by this process, with the caller's rights (the daemon never opens a
// caller's path). Below the path the caller named nothing is followed: each
// name is looked up in a directory held open and opened O_NOFOLLOW
// (src/cli/safeFs.ts), and a file is read only if it is still the one lstat
// saw. Symlinks go as symlinks, hard links as files; devices, FIFOs and
// sockets are skipped, with a warning.
import { fstatSync, readSync, type Stats } from 'node:fs';
import { Header, Pax, type HeaderData } from 'tar';
import { closeQuietly, lstatAt, namesIn, openDirAt, openFileAt, readlinkAt, sameFile } from './safeFs.js';
import { CliError } from './client.js';

/** What the tar holds. */
export interface PackSource {
  /** The directory holding the source (or, for a contents copy, the source itself), open. */
  dirFd: number;
  /** The source's name in it; null: a contents copy of dirFd itself. */
  name: string | null;
  /**
   * The name the source's root takes in the tar (docker cp's naming, from
   * the session's answer); null: a contents copy's entries as they are,
   * without a root entry (into a directory that exists).
   */
  as: string | null;
  /** How messages name the source. */
  display: string;
  /** Told of what is skipped. */
  warn: (message: string) => void;
}

const BLOCK = 512;
const CHUNK = 256 * 1024;

/** One entry's header blocks: a PAX header first when a name or a number does not fit ustar. */
function header(h: HeaderData): Buffer {
  const head = new Header(h);
  const needPax = head.encode();
  const block = head.block!;
  if (!needPax) return block;
  const pax = new Pax({ path: h.path, linkpath: h.linkpath, size: h.size, uid: h.uid, gid: h.gid, mtime: h.mtime });
  return Buffer.concat([pax.encode(), block]);
}

const meta = (st: Stats) => ({ mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtime });

function utf8Name(raw: Buffer, where: string): string {
  const name = raw.toString('utf8');
  if (!Buffer.from(name, 'utf8').equals(raw)) throw new CliError(`cannot copy a name under ${where} that is not UTF-8 (${raw.toString('hex')})`);
  return name;
}

/** The tar of a host source, in chunks of about 256 KiB. */
export async function* packHost(src: PackSource): AsyncGenerator<Buffer> {
  const out: Buffer[] = [];
  let size = 0;
  const push = (b: Buffer) => {
    out.push(b);
    size += b.length;
  };
  const flush = () => {
    const b = Buffer.concat(out);
    out.length = 0;
    size = 0;
    return b;
  };
  const walk = function* (dirFd: number, name: string, path: string, shown: string): Generator<void> {
    const st = lstatAt(dirFd, name);
    if (!st) throw new CliError(`cannot copy ${shown}: it is gone`);
    if (st.isSymbolicLink()) {
      push(header({ path, type: 'SymbolicLink', linkpath: readlinkAt(dirFd, name), size: 0, ...meta(st) }));
      yield;
    } else if (st.isFile()) {
      yield* file(dirFd, name, path, shown, st);
    } else if (st.isDirectory()) {
      const fd = openDirAt(dirFd, name);
      try {
        const now = sameFile(fd, st);
        if (!now) throw new CliError(`cannot copy ${shown}: it changed while being read`);
        push(header({ path: `${path}/`, type: 'Directory', size: 0, ...meta(now) }));
        yield;
        yield* children(fd, path, shown);
      } finally {
        closeQuietly(fd);
      }
    } else {
      src.warn(`skipped ${shown}: not a file, directory or symlink`);
    }
  };
  const children = function* (fd: number, path: string | null, shown: string): Generator<void> {
    const names = namesIn(fd)
      .map((raw) => utf8Name(raw, shown))
      .sort();
    for (const n of names) yield* walk(fd, n, path === null ? n : `${path}/${n}`, `${shown}/${n}`);
  };
  const file = function* (dirFd: number, name: string, path: string, shown: string, seen: Stats): Generator<void> {
    const fd = openFileAt(dirFd, name);
    try {
      const st = sameFile(fd, seen);
      if (!st || !st.isFile()) throw new CliError(`cannot copy ${shown}: it changed while being read`);
      push(header({ path, type: 'File', size: st.size, ...meta(st) }));
      let left = st.size;
      while (left > 0) {
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, left));
        const n = readSync(fd, buf, 0, buf.length, null);
        if (n === 0) throw new CliError(`cannot copy ${shown}: it shrank while being read`);
        push(buf.subarray(0, n));
        left -= n;
        yield;
      }
      const pad = (BLOCK - (st.size % BLOCK)) % BLOCK;
      if (pad) push(Buffer.alloc(pad));
      yield;
    } finally {
      closeQuietly(fd);
    }
  };

  const self = function* (as: string): Generator<void> {
    push(header({ path: `${as}/`, type: 'Directory', size: 0, ...meta(fstatSync(src.dirFd)) }));
    yield* children(src.dirFd, as, src.display);
  };
  let steps: Generator<void>;
  if (src.name !== null) {
    if (src.as === null) throw new Error('a named source needs a name in the tar');
    steps = walk(src.dirFd, src.name, src.as, src.display);
  } else steps = src.as === null ? children(src.dirFd, null, src.display) : self(src.as);
  for (const _ of steps) {
    if (size >= CHUNK) yield flush();
  }
  push(Buffer.alloc(BLOCK * 2));
  yield flush();
}
