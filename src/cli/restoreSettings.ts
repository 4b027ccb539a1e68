// `session create --from FILE`: the create body from the snapshot's
// settings and the command line's flags. Pure. A flag wins over the
// setting it names: each limit, --profile, --network and --console alone,
// and a list flag (--publish, --volume, --env, --auth, --env-token) replaces
// that whole list. Settings that cannot hold beside a flag go with a note:
// the snapshot's ports under --network none, its root size under --profile
// strict. The volumes a snapshot holds the contents of are mounted as the
// new volumes restored from it. The body is then checked like any create
// body, and by the daemon like any create (budgets, owners, secrets).
import { createSessionRequest, type CreateSessionRequest } from '../api/schemas.js';
import type { Manifest } from '../api/manifest.js';
import { formatZodError } from '../vocab/errors.js';
import { CliError } from './client.js';

type Body = Record<string, unknown>;

/** The name a restored volume gets: its source's, and the snapshot's id (restoring the same snapshot twice clashes, and says so). */
export function restoredName(name: string, snapshotId: string): string {
  return `${name.slice(0, 56)}-${snapshotId.slice(0, 6)}`;
}

export interface RestorePlan {
  body: CreateSessionRequest;
  /** Volumes to create and fill from the snapshot: archive index, new name, size. */
  volumes: { index: number; name: string; size_mb: number }[];
  /** What of the snapshot is not taken, for stderr. */
  notes: string[];
}

/** `flags`: the create body the command line gave (only what it said); `useSettings`: false with --no-settings. */
export function restorePlan(flags: Body, manifest: Manifest | undefined, useSettings: boolean): RestorePlan {
  const notes: string[] = [];
  const settings: Body = useSettings && manifest?.settings ? { ...manifest.settings } : {};
  const archived = manifest?.volumes ?? [];
  const volumes: RestorePlan['volumes'] = [];
  if (archived.length > 0 && (!useSettings || 'volumes' in flags)) {
    notes.push(`the snapshot holds the contents of ${archived.length} volume(s), not restored: ${useSettings ? '--volume replaces its volumes' : '--no-settings'}`);
  } else if (archived.length > 0) {
    const mounts = (settings.volumes as { name: string; target: string; readonly: boolean }[]).map((m) => {
      const a = archived.find((v) => v.target === m.target);
      if (!a) return m;
      const name = restoredName(a.name, manifest!.snapshot_id!);
      volumes.push({ index: a.index, name, size_mb: a.size_mb });
      return { ...m, name };
    });
    settings.volumes = mounts;
  }
  const body: Body = { ...settings, ...flags };
  if (body.network === 'none' && 'publish' in settings && !('publish' in flags)) {
    delete body.publish;
    notes.push("the snapshot's published ports are not taken: --network none");
  }
  if (body.profile === 'strict' && 'root_mb' in settings && !('root_mb' in flags)) {
    delete body.root_mb;
    notes.push("the snapshot's root size is not taken: --profile strict has no writable root");
  }
  const checked = createSessionRequest.safeParse(body);
  if (!checked.success) {
    const from = checked.error.issues.some((i) => !(String(i.path[0]) in flags)) ? " (from the snapshot's settings: give the flag to replace it, or --no-settings)" : '';
    throw new CliError(`session create --from: ${formatZodError(checked.error)}${from}`, 2);
  }
  return { body: checked.data, volumes, notes };
}
