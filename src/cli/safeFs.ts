// openat(2) for Node, which has none: a name is looked up in a directory we
// hold open, through /proc/self/fd/N/NAME (the magic link is the directory
// itself, whatever happens to its path), and every open below a copy's
// destination or source says O_NOFOLLOW. So a symlink anywhere below the
// directory the caller named is never followed, however and whenever it got
// there (a tar's own entry, a host process racing us): the kernel refuses.
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readlinkSync, symlinkSync, unlinkSync, type Stats } from 'node:fs';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

/** A name a directory can hold: one component, not "." or "..". */
export function isComponent(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

/** The path of NAME in the directory open as dirFd. */
export function at(dirFd: number, name: string): string {
  if (!isComponent(name)) throw new Error(`not a single path component: '${name}'`);
  return `/proc/self/fd/${dirFd}/${name}`;
}

export const errnoCode = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;

/** The entry NAME itself (a symlink is not followed), or undefined if there is none. */
export function lstatAt(dirFd: number, name: string): Stats | undefined {
  return lstatSync(at(dirFd, name), { throwIfNoEntry: false });
}

/** Open the directory NAME; ELOOP or ENOTDIR if it is a symlink or not a directory. */
export function openDirAt(dirFd: number, name: string): number {
  return openSync(at(dirFd, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
}

/** Open a directory the caller named (its own path, resolved as any command resolves one). */
export function openDir(path: string): number {
  return openSync(path, O_RDONLY | O_DIRECTORY);
}

/** Create the directory NAME (never through a symlink: mkdir does not follow one). */
export function mkdirAt(dirFd: number, name: string, mode: number): void {
  mkdirSync(at(dirFd, name), { mode });
}

/** Create the file NAME, which must not exist (O_EXCL: a symlink there is EEXIST, never followed). */
export function createAt(dirFd: number, name: string, mode: number): number {
  return openSync(at(dirFd, name), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
}

/** Open the regular file NAME to read it; a symlink is ELOOP, a FIFO does not block. */
export function openFileAt(dirFd: number, name: string): number {
  return openSync(at(dirFd, name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
}

export function unlinkAt(dirFd: number, name: string): void {
  unlinkSync(at(dirFd, name));
}

/** Make NAME a symlink to target (symlink() never follows NAME). */
export function symlinkAt(dirFd: number, name: string, target: string): void {
  symlinkSync(target, at(dirFd, name));
}

export function readlinkAt(dirFd: number, name: string): string {
  return readlinkSync(at(dirFd, name));
}

/** Names in the open directory, as raw bytes (a name need not be UTF-8). */
export function namesIn(dirFd: number): Buffer[] {
  return readdirSync(`/proc/self/fd/${dirFd}`, { encoding: 'buffer' });
}

/** The file the fd is, and whether it is still the one lstat saw (not swapped under us). */
export function sameFile(fd: number, seen: Stats): Stats | undefined {
  const st = fstatSync(fd);
  return st.ino === seen.ino && st.dev === seen.dev ? st : undefined;
}

export function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    closeSync(fd);
  } catch {
    /* already gone */
  }
}
