// The IDs a snapshot's files are owned by, for GNU tar's --owner-map and
// --group-map (host base + k -> k): only those in use, found as the files
// are walked, not the session's whole range. tar holds its maps in memory,
// charged to the session (snapshotCgroups.ts): a map of all 65536 IDs took
// it 30 MB, so a 16 MiB session could be neither snapshotted nor stopped.
// The session is frozen (or its processes ended) while it is walked and
// archived, so no file changes owner in between.
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Entries walked between turns of the event loop. */
const SLICE = 256;

export class OwnerIds {
  private readonly ids = new Set<number>();

  add(uid: number, gid: number): void {
    this.ids.add(uid);
    this.ids.add(gid);
  }

  /** The map file's text: each ID in use within [hostBase, hostBase + size), as its ID in the session. */
  map(hostBase: number, size: number): string {
    return [...this.ids]
      .filter((id) => id >= hostBase && id < hostBase + size)
      .sort((a, b) => a - b)
      .map((id) => `+${id} +${id - hostBase}\n`)
      .join('');
  }
}

/**
 * Every owner under `root`, itself included, as tar --one-file-system reads
 * it: an entry on another file system is archived (a directory's header, a
 * bind-mounted file) but not entered; `skip` (relative to `root`) is left
 * out whole, as tar's --exclude leaves it. At most `limit` entries, else
 * `tooMany`; `stop` is checked between slices (the snapshot's deadline).
 * A file system error ends the walk as `fail` says (the snapshot's error).
 */
export async function ownersUnder(root: string, o: { limit: number; ids: OwnerIds; skip: ReadonlySet<string>; stop: AbortSignal; tooMany: (limit: number) => Error; fail: (e: Error) => Error }): Promise<void> {
  if (o.skip.has('')) return;
  let top;
  try {
    top = lstatSync(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // nothing there: nothing archived
    throw o.fail(e as Error);
  }
  o.ids.add(top.uid, top.gid);
  if (!top.isDirectory()) return;
  let seen = 0;
  const visit = async (rel: string): Promise<void> => {
    let names: string[];
    try {
      names = readdirSync(rel ? join(root, rel) : root);
    } catch (e) {
      throw o.fail(e as Error);
    }
    for (const name of names) {
      if (++seen > o.limit) throw o.tooMany(o.limit);
      if (seen % SLICE === 0) {
        await new Promise((r) => setImmediate(r));
        if (o.stop.aborted) throw o.fail(new Error('the deadline passed'));
      }
      const sub = rel ? `${rel}/${name}` : name;
      if (o.skip.has(sub)) continue;
      let st;
      try {
        st = lstatSync(join(root, sub));
      } catch (e) {
        throw o.fail(e as Error);
      }
      o.ids.add(st.uid, st.gid);
      // Another file system (a mount in /home): its header is archived, its contents are not.
      if (st.isDirectory() && st.dev === top.dev) await visit(sub);
    }
  };
  await visit('');
}
