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
 * Every owner under `root`, itself included, on its file system alone (as
 * tar --one-file-system reads it): at most `limit` entries, else thrown.
 */
export async function ownersUnder(root: string, limit: number, ids: OwnerIds, tooMany: (limit: number) => Error): Promise<void> {
  let top;
  try {
    top = lstatSync(root);
  } catch {
    return; // nothing there: nothing archived
  }
  ids.add(top.uid, top.gid);
  if (!top.isDirectory()) return;
  let seen = 0;
  const visit = async (dir: string): Promise<void> => {
    for (const name of readdirSync(dir)) {
      if (++seen > limit) throw tooMany(limit);
      if (seen % SLICE === 0) await new Promise((r) => setImmediate(r));
      const p = join(dir, name);
      const st = lstatSync(p);
      if (st.dev !== top.dev) continue; // a mount (a volume under /home): not archived here
      ids.add(st.uid, st.gid);
      if (st.isDirectory()) await visit(p);
    }
  };
  await visit(root);
}
