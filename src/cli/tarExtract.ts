// Extract a tar that came out of a session into a host directory, as the
// caller. The tar is hostile (the session's own tar made it, or whatever
// replaced it): node-tar's Parser reads it (checksums, bounded extended
// headers), and every entry is then checked and written here, never by a
// library that follows paths:
//  - an absolute path, a '..' component, or a path outside the copied root
//    is refused, and so is a hard link (the session's tar stores files);
//  - every directory on the way is opened O_NOFOLLOW below the destination
//    (src/cli/safeFs.ts), so a path through a symlink (one this tar made, or
//    any other) is refused by the kernel, and files are created O_EXCL;
//  - setuid and setgid bits are dropped; owners are the caller's, or with
//    --archive the session's numbers (0-65535) when the caller is root;
//  - an existing directory keeps its mode and owner; a directory never
//    replaces a file, nor a file or symlink a directory.
// The first refusal stops the copy (fail closed): what came before stays.
import { closeSync, fchmodSync, fchownSync, futimesSync, lchownSync, lutimesSync, writeSync } from 'node:fs';
import { Parser, type ReadEntry } from 'tar';
import { at, closeQuietly, createAt, errnoCode, lstatAt, mkdirAt, openDirAt, symlinkAt, unlinkAt } from './safeFs.js';

/** Where the tar lands. */
export interface ExtractTarget {
  /** The directory everything lands in, open (the caller's own path, resolved once). */
  dirFd: number;
  /** What the copy's root is called in it; null: the tar's contents land in the directory itself. */
  name: string | null;
  /** The copy's root in the tar ("hosts" for SESSION:/etc/hosts); null when the tar holds "./" and a directory's contents. */
  root: string | null;
  /** How messages name the destination. */
  display: string;
  /** Keep the tar's owners (the caller must be root). */
  archive: boolean;
}

/** IDs a session has: its range is 65536 long. */
const MAX_SESSION_ID = 65535;
/** Longer names than the kernel takes are not a copy's. */
const MAX_ENTRY_PATH = 4096;

/** An entry the copy will not write, or cannot. */
export class Refused extends Error {}
/** A stream that is not a tar, or not a whole one. */
export class Broken extends Refused {}

interface Pending {
  comps: string[];
  mode: number;
  uid: number | undefined;
  gid: number | undefined;
  mtime: Date | undefined;
}

export class TarExtractor {
  private readonly parser: Parser;
  private failure: Error | undefined;
  /** Directories this copy made, metadata applied at the end (children first), by path. */
  private readonly made = new Map<string, Pending>();
  /** The last parent directory walked to, and its fd (a directory held open, not a path). */
  private cached: { key: string; fd: number } | undefined;
  private sniffed = false;
  readonly skipped: string[] = [];
  entries = 0;

  constructor(private readonly t: ExtractTarget) {
    this.parser = new Parser({ strict: true, zstd: false, maxMetaEntrySize: 1024 * 1024 });
    this.parser.on('entry', (e: ReadEntry) => this.onEntry(e));
    this.parser.on('ignoredEntry', (e: ReadEntry) => this.fail(new Refused(`refused '${shown(e.path)}': an entry of type ${e.type} (or an oversized extended header)`)));
    this.parser.on('error', (e: Error) => this.fail(new Broken(`the session sent a broken tar: ${e.message}`)));
  }

  /** Why the copy stopped, if it did. */
  get error(): Error | undefined {
    return this.failure;
  }

  write(chunk: Buffer): void {
    if (this.failure) return;
    if (!this.sniffed) {
      this.sniffed = true;
      // The session's tar writes plain tar; a compressed stream would be unpacked by the parser.
      if (chunk[0] === 0x1f && chunk[1] === 0x8b) return this.fail(new Broken('the session sent a compressed stream, not a tar'));
    }
    this.parser.write(chunk);
  }

  /** The stream ended: apply the directories' metadata; the error, if the copy failed. */
  end(): Error | undefined {
    if (!this.failure) this.parser.end();
    this.dropCache();
    for (const [key, p] of [...this.made].reverse()) {
      try {
        this.applyDir(p);
      } catch (e) {
        this.fail(new Refused(`cannot set the mode of ${this.shownAt(p.comps)}: ${(e as Error).message}`));
      }
      this.made.delete(key);
    }
    return this.failure;
  }

  private fail(e: Error): void {
    this.failure ??= e;
  }

  private shownAt(comps: string[]): string {
    return shown([this.t.display, ...comps].join('/'));
  }

  /** Where an entry lands, as components under the target directory; [] is the directory itself. */
  private place(path: string): string[] {
    if (path.length > MAX_ENTRY_PATH) throw new Refused(`refused an entry whose path is ${path.length} bytes long`);
    if (path.startsWith('/')) throw new Refused(`refused '${shown(path)}': an absolute path`);
    const comps = path.split('/').filter((c) => c !== '' && c !== '.');
    if (comps.includes('..')) throw new Refused(`refused '${shown(path)}': a '..' component`);
    if (this.t.root !== null && comps.shift() !== this.t.root) throw new Refused(`refused '${shown(path)}': outside '${shown(this.t.root)}', the path copied`);
    return this.t.name === null ? comps : [this.t.name, ...comps];
  }

  private onEntry(e: ReadEntry): void {
    if (this.failure) return void e.resume();
    try {
      this.entries++;
      this.take(e);
    } catch (err) {
      e.resume();
      this.fail(err instanceof Refused ? err : new Refused(`cannot write '${shown(e.path)}' under ${this.t.display}: ${(err as Error).message}`));
    }
  }

  private take(e: ReadEntry): void {
    const comps = this.place(e.path);
    const ids = this.ids(e);
    if (comps.length === 0) {
      // The directory itself ("./" of a contents copy): it exists, and keeps its mode.
      if (e.type !== 'Directory') throw new Refused(`refused '${shown(e.path)}': the copy's root is not a directory, but ${this.t.display} is one`);
      return void e.resume();
    }
    const leaf = comps[comps.length - 1]!;
    switch (e.type) {
      case 'Directory':
        return this.directory(e, comps, leaf, ids);
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        return this.file(e, comps, leaf, ids);
      case 'SymbolicLink':
        return this.symlink(e, comps, leaf, ids);
      case 'Link':
        throw new Refused(`refused '${shown(e.path)}': a hard link (the session's tar stores files, not links)`);
      default:
        // Devices, FIFOs: not files the host gets from a session.
        this.skipped.push(`${this.shownAt(comps)} (${e.type})`);
        e.resume();
    }
  }

  private ids(e: ReadEntry): { uid: number; gid: number } | undefined {
    if (!this.t.archive) return undefined;
    const { uid, gid } = e;
    for (const id of [uid, gid]) {
      if (id === undefined || !Number.isInteger(id) || id < 0 || id > MAX_SESSION_ID) throw new Refused(`refused '${shown(e.path)}': owner ${uid}:${gid} is not a session's (0-${MAX_SESSION_ID})`);
    }
    return { uid: uid!, gid: gid! };
  }

  /** The directory holding comps' last component, walked to without following anything. */
  private parent(comps: string[]): number {
    const dirs = comps.slice(0, -1);
    const key = dirs.join('/');
    if (this.cached?.key === key) return this.cached.fd;
    this.dropCache();
    let fd = this.t.dirFd;
    for (let i = 0; i < dirs.length; i++) {
      const name = dirs[i]!;
      let next: number;
      try {
        next = openDirAt(fd, name);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOENT') {
          // A parent the tar did not list: made as a plain directory.
          mkdirAt(fd, name, 0o700);
          this.made.set(dirs.slice(0, i + 1).join('/'), { comps: dirs.slice(0, i + 1), mode: 0o755, uid: undefined, gid: undefined, mtime: undefined });
          next = openDirAt(fd, name);
        } else {
          if (fd !== this.t.dirFd) closeQuietly(fd);
          if (code === 'ELOOP' || code === 'ENOTDIR') throw new Refused(`refused '${shown(comps.join('/'))}': ${this.shownAt(dirs.slice(0, i + 1))} is a symlink or not a directory`);
          throw err;
        }
      }
      if (fd !== this.t.dirFd) closeSync(fd);
      fd = next;
    }
    if (fd !== this.t.dirFd) this.cached = { key, fd };
    return fd;
  }

  private dropCache(): void {
    if (this.cached) closeQuietly(this.cached.fd);
    this.cached = undefined;
  }

  /** Make room for a new non-directory NAME: an old file or symlink goes, a directory stays (refused). */
  private clear(dir: number, leaf: string, comps: string[], what: string): void {
    const st = lstatAt(dir, leaf);
    if (!st) return;
    if (st.isDirectory()) throw new Refused(`refused to replace the directory ${this.shownAt(comps)} with ${what}`);
    unlinkAt(dir, leaf);
  }

  private directory(e: ReadEntry, comps: string[], leaf: string, ids: { uid: number; gid: number } | undefined): void {
    e.resume();
    const dir = this.parent(comps);
    const st = lstatAt(dir, leaf);
    const key = comps.join('/');
    const pending = { comps, mode: e.mode ?? 0o755, uid: ids?.uid, gid: ids?.gid, mtime: e.mtime };
    if (!st) {
      mkdirAt(dir, leaf, 0o700);
      this.made.set(key, pending);
    } else if (!st.isDirectory()) {
      throw new Refused(`cannot copy a directory to ${this.shownAt(comps)}: it exists and is not a directory`);
    } else if (this.made.has(key)) {
      this.made.set(key, pending);
    }
    // A directory that was there before keeps its mode and owner.
  }

  private file(e: ReadEntry, comps: string[], leaf: string, ids: { uid: number; gid: number } | undefined): void {
    const dir = this.parent(comps);
    this.clear(dir, leaf, comps, 'a file');
    const fd = createAt(dir, leaf, 0o600);
    let open = true;
    const done = (err?: Error) => {
      if (!open) return;
      open = false;
      try {
        if (!err) {
          if (ids) fchownSync(fd, ids.uid, ids.gid);
          // Not a setuid or setgid program on the host, whoever the caller is.
          fchmodSync(fd, (e.mode ?? 0o644) & 0o777);
          if (e.mtime) futimesSync(fd, e.mtime, e.mtime);
        }
      } catch (x) {
        err ??= x as Error;
      }
      closeQuietly(fd);
      if (err) this.fail(new Refused(`cannot write ${this.shownAt(comps)}: ${err.message}`));
    };
    e.on('data', (chunk: Buffer) => {
      if (!open) return;
      try {
        for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
      } catch (x) {
        done(x as Error);
      }
    });
    e.on('end', () => done());
  }

  private symlink(e: ReadEntry, comps: string[], leaf: string, ids: { uid: number; gid: number } | undefined): void {
    e.resume();
    const target = e.linkpath ?? '';
    if (target === '' || target.length > MAX_ENTRY_PATH) throw new Refused(`refused '${shown(e.path)}': a symlink without a usable target`);
    const dir = this.parent(comps);
    this.clear(dir, leaf, comps, 'a symlink');
    // Stored as it is: a link is never followed by this copy, whatever it points at.
    symlinkAt(dir, leaf, target);
    if (ids) lchownSync(at(dir, leaf), ids.uid, ids.gid);
    if (e.mtime) lutimesSync(at(dir, leaf), e.mtime, e.mtime);
  }

  private applyDir(p: Pending): void {
    let fd = this.t.dirFd;
    try {
      for (const name of p.comps) {
        const next = openDirAt(fd, name);
        if (fd !== this.t.dirFd) closeSync(fd);
        fd = next;
      }
      if (p.uid !== undefined && p.gid !== undefined) fchownSync(fd, p.uid, p.gid);
      // The sticky bit stays; setuid and setgid do not.
      fchmodSync(fd, p.mode & 0o1777);
      if (p.mtime) futimesSync(fd, p.mtime, p.mtime);
    } finally {
      if (fd !== this.t.dirFd) closeQuietly(fd);
    }
  }
}

/** A name from the tar, fit for one line of a message. */
export function shown(s: string): string {
  const clean = s.replace(/[\x00-\x1f\x7f]/g, '?');
  return clean.length > 200 ? `${clean.slice(0, 200)}...` : clean;
}
