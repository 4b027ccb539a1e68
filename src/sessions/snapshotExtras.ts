// What a snapshot records beside a session's files: the settings its create
// took, so that `create --from` takes them again (secrets by name, never a
// value), and with volumes, the volumes it mounts, held for reading while the
// snapshot runs (no other session may write them meanwhile; this one is
// frozen).
import { snapshotSettings, type ArchivedVolume, type SnapshotSettings } from '../api/manifest.js';
import type { SnapshotExtras } from '../snapshots/snapshot.js';
import type { SessionRow } from '../store/sessionStore.js';
import { ApiError } from '../vocab/errors.js';
import type { Kit } from './kit.js';

/** A secret's name inside the session: UID:NAME (another owner's shared one) is NAME there. */
const bare = (ref: string) => ref.slice(ref.indexOf(':') + 1);

/** The settings of a session's create, as a create body would say them; undefined if they no longer fit the schema (logged). */
export function settingsOf(kit: Kit, row: SessionRow): SnapshotSettings | undefined {
  const d = kit.store.detailsOf(row.id);
  const settings = {
    ...row.limits,
    profile: row.profile,
    network: row.network,
    ...(d.ports.length ? { publish: d.ports } : {}),
    console: row.keep_console,
    idle_timeout_s: row.idle_timeout_s ?? 0,
    ...(row.env.length ? { env: row.env } : {}),
    ...(d.secrets.auth.length ? { auth: d.secrets.auth } : {}),
    ...(d.secrets.env_tokens.length ? { env_tokens: d.secrets.env_tokens } : {}),
    ...(d.volumes.length ? { volumes: d.volumes } : {}),
  };
  const r = snapshotSettings.safeParse(settings);
  if (r.success) return r.data;
  kit.log.warn({ session: row.id, err: r.error.message }, 'snapshot: the session\'s settings do not fit a create body: left out');
  return undefined;
}

/**
 * The extras of a snapshot of `row`, and the release of what they hold.
 * With volumes: each volume the session mounts, held for reading; refused
 * (409) if another live session may write one.
 */
export async function snapshotExtras(kit: Kit, row: SessionRow, withVolumes: boolean): Promise<{ extras: SnapshotExtras; release: () => void }> {
  const extras: SnapshotExtras = { settings: settingsOf(kit, row), volumes: [] };
  const releases: (() => void)[] = [];
  const release = () => releases.forEach((r) => r());
  if (!withVolumes) return { extras, release };
  const mounts = kit.store.volumeIdsOf(row.id);
  const names = new Map(kit.store.volumesOf(row.id).map((m) => [m.target, m.name]));
  if (new Set(mounts.map((m) => m.id)).size !== mounts.length) throw new ApiError('conflict', `session ${row.id} mounts a volume twice: snapshot it without --with-volumes`);
  try {
    for (const [index, m] of mounts.entries()) {
      const v = kit.volumes.get(m.id);
      if (!v) throw new ApiError('conflict', `session ${row.id}: its volume at ${m.target} is gone`);
      const { path, release: done } = await kit.volumes.holdForReading(v, (u) => u.session_owner === row.owner_uid, row.id);
      releases.push(done);
      const archived: ArchivedVolume = { index, name: bare(names.get(m.target) ?? v.name), target: m.target, readonly: m.readonly, size_mb: v.size_mb };
      extras.volumes.push({ archived, mount: path });
    }
  } catch (e) {
    release();
    throw e;
  }
  if (extras.volumes.length > 0 && !extras.settings) {
    release();
    throw new ApiError('conflict', `session ${row.id}: its settings cannot be recorded, and a snapshot's volumes need them (where they mount): snapshot it without --with-volumes`);
  }
  return { extras, release };
}
