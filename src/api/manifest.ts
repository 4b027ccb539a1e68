// A snapshot's manifest: what the daemon writes at the head of a snapshot,
// and what `session create --from` reads back. A snapshot may come from
// anyone, so the manifest is hostile input: it is parsed with this schema,
// and its settings are exactly what a create body may say (the same schema,
// less the name), so they pass the daemon's checks as flags do. Older
// snapshots have no settings and no volumes: they restore files only.
import { z } from 'zod';
import { createSessionRequest, volumeSizeMb, volumeTarget } from './schemas.js';
import { VOLUME_NAME } from '../vocab/names.js';

export const SNAPSHOT_FORMAT = 'enclave-snapshot';
export const SNAPSHOT_VERSION = 1;
/** The largest manifest a reader takes: settings are bounded by the create schema, far below this. */
export const MAX_MANIFEST_BYTES = 256 * 1024;
/**
 * A zstd snapshot ends with a skippable frame (magic 0x184D2A50, which zstd
 * -d skips) holding the manifest, so a reader needs no decompressor: its data
 * is MANIFEST_FRAME_TAG, the manifest's JSON, then a footer of the data's
 * length (u32 LE) and MANIFEST_FRAME_END, the file's last 12 bytes.
 */
export const MANIFEST_FRAME_MAGIC = 0x184d2a50;
export const MANIFEST_FRAME_TAG = 'enclave-manifest\n';
export const MANIFEST_FRAME_END = 'ENCLMANI';
/** Where archived volume i's contents are in the archive. */
export const volumeDir = (i: number) => `.enclave/volumes/${i}`;

/** What `session create` took (all but the name), with resolved limits. Secrets by name only. */
export const snapshotSettings = createSessionRequest.omit({ name: true });
export type SnapshotSettings = z.infer<typeof snapshotSettings>;

/** A volume whose contents the snapshot holds (--with-volumes) under volumeDir(index). */
export const archivedVolume = z
  .object({
    index: z.number().int().min(0).max(7),
    /** Its name (bare): a restore names the new volume after it. */
    name: z.string().regex(VOLUME_NAME, 'must be a volume name'),
    target: volumeTarget,
    readonly: z.boolean(),
    size_mb: volumeSizeMb,
  })
  .strict();
export type ArchivedVolume = z.infer<typeof archivedVolume>;

export const manifestSchema = z
  .object({
    format: z.literal(SNAPSHOT_FORMAT),
    version: z.literal(SNAPSHOT_VERSION),
    session: z.string().max(64),
    created_at: z.string().max(64),
    parts: z.array(z.string().max(4096)).max(64),
    entries: z.number().int().min(0),
    deleted: z.number().int().min(0),
    /** Random, per snapshot: restored volumes are named NAME-<first 6>. */
    snapshot_id: z.string().regex(/^[0-9a-f]{12}$/, 'must be 12 hex digits').optional(),
    settings: snapshotSettings.optional(),
    volumes: z.array(archivedVolume).max(8).optional(),
  })
  .superRefine((m, ctx) => {
    const vs = m.volumes ?? [];
    if (vs.length === 0) return;
    if (!m.snapshot_id) ctx.addIssue({ code: 'custom', path: ['snapshot_id'], message: 'is required with volumes' });
    if (vs.some((v, i) => v.index !== i)) ctx.addIssue({ code: 'custom', path: ['volumes'], message: 'must be numbered 0, 1, ... in order' });
    const mounts = m.settings?.volumes ?? [];
    for (const [i, v] of vs.entries()) {
      if (!mounts.some((x) => x.target === v.target && x.readonly === v.readonly)) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'target'], message: `${v.target} is not a volume mount of the settings` });
    }
  });
export type Manifest = z.infer<typeof manifestSchema>;
