// A session path of `enclave session cp`, read the way docker cp reads one:
// a trailing "/." means a directory's contents, a trailing "/" that it must
// be a directory. The daemon builds the session-side command from it and
// the CLI names tar entries from it; both read it through this one function.
// A leaf.

/** What a session path names for a copy. */
export interface CopyPath {
  /** The path as normalized: no empty or "." components, no trailing slash ("/" for the root). */
  path: string;
  /** Its parent directory ("/" for the root). */
  dir: string;
  /** Its last component; null when the path names a directory's contents ("/x/." or "/"). */
  name: string | null;
  /** A trailing "/" (or "/."): it must be a directory. */
  mustBeDir: boolean;
}

export const COPY_PATH_MAX = 4096;

/** Why a session path cannot be copied, or null when it can. */
export function copyPathProblem(p: string): string | null {
  if (!p.startsWith('/')) return 'must be an absolute path (start with /)';
  if (p.length > COPY_PATH_MAX) return `must be at most ${COPY_PATH_MAX} bytes`;
  if (p.includes('\0')) return 'must not contain NUL';
  if (p.split('/').includes('..')) return "must not contain '..'";
  return null;
}

/** The copy path of an absolute session path; throws on one copyPathProblem refuses. */
export function copyPath(p: string): CopyPath {
  const problem = copyPathProblem(p);
  if (problem) throw new RangeError(`session path '${p.slice(0, 80)}' ${problem}`);
  const parts = p.split('/');
  const last = parts[parts.length - 1];
  const contents = last === '.' || p === '/';
  const mustBeDir = contents || last === '';
  const comps = parts.filter((c) => c !== '' && c !== '.');
  if (comps.length === 0) return { path: '/', dir: '/', name: null, mustBeDir: true };
  const path = `/${comps.join('/')}`;
  if (contents) return { path, dir: path, name: null, mustBeDir: true };
  return { path, dir: `/${comps.slice(0, -1).join('/')}`, name: comps[comps.length - 1]!, mustBeDir };
}
