// What `enclave session cp` runs inside the session: the session's own sh
// and tar, started by its init like any exec (its namespaces, cgroups,
// capabilities and seccomp filter, as the session's root), so every path is
// resolved in the session's mount namespace and reaches nothing of the host.
// The paths are arguments, never part of the script. What the command sends
// back is the session's: the CLI treats the tar as hostile.
import type { CpQuery } from '../api/schemas.js';
import { copyPath } from '../vocab/copyPath.js';

/**
 * out: $1 the directory to archive from, $2 the member ("." for the
 * contents), $3 "dir" when it must be a directory, $4 the path as asked.
 * Hard links are stored as files (--hard-dereference): the CLI refuses link
 * entries, which only a hostile tar then holds.
 */
const OUT = `cd -- "$1" || exit 1
if [ ! -e "$2" ] && [ ! -h "$2" ]; then echo "enclave: $4: no such file or directory in the session" >&2; exit 1; fi
if [ "$3" = dir ] && [ ! -d "$2" ]; then echo "enclave: $4: not a directory" >&2; exit 1; fi
exec tar -c -f - --numeric-owner --hard-dereference -- "$2"`;

/**
 * in: $1 the destination, $2 its parent, then tar's owner options. The first
 * line out says what the destination is (dir, file or none); the CLI names
 * its entries from it (docker cp's rules) and the tar extracts into the
 * destination if it is a directory, else into its parent. Existing
 * directories keep their modes and owners (--no-overwrite-dir).
 */
const IN = `d=$1; p=$2; shift 2
if [ -d "$d" ]; then cd -- "$d" || exit 1; echo dir
elif [ -e "$d" ] || [ -h "$d" ]; then cd -- "$p" || exit 1; echo file
else cd -- "$p" || exit 1; echo none; fi
exec tar -x -f - --no-overwrite-dir "$@"`;

/** The argv of the session-side command of a copy. */
export function copyArgv(q: CpQuery): string[] {
  const p = copyPath(q.path);
  if (q.direction === 'out') {
    return p.name === null ? ['sh', '-c', OUT, 'enclave-cp', p.dir, '.', 'dir', q.path] : ['sh', '-c', OUT, 'enclave-cp', p.dir, p.name, p.mustBeDir ? 'dir' : 'any', q.path];
  }
  // A root or "/." destination is a directory: no parent to fall back to.
  const owners = q.archive ? ['--same-owner', '--numeric-owner'] : ['--no-same-owner'];
  return ['sh', '-c', IN, 'enclave-cp', p.path, p.name === null ? p.path : p.dir, ...owners];
}
