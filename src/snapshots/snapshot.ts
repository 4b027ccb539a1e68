// A session snapshot: its writable root layer and its /home as one tar
// stream (zstd when the host has it), with a manifest and the list of paths
// the layer deletes, so that a new session can replay it (restoreScript).
//
// Consistency: the session's cgroup is frozen (cgroup v2 cgroup.freeze)
// from the walk of the layer to the end of the stream, so the tree is one
// moment's, and nothing in the session can swap a directory for a symlink
// while host tar reads it. The layer is read through the init's fd of it
// (/proc/PID/fd/UPPER_KEEP_FD, native/src/init.c), /home through /proc/PID/root: paths
// the session cannot redirect (a mount point cannot be renamed). tar never
// follows a symlink when it archives; owners are written as the session's
// own IDs (host base + k -> k), so they land the same in any session. tar
// and zstd run charged to the session (snapshotCgroups.ts).
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { addon } from '../native/addon.js';
import type { SessionPlan } from '../isolation/plan.js';
import { planView } from '../isolation/planView.js';
import { UPPER_KEEP_FD } from '../native/contract.gen.js';
import { MANIFEST_FRAME_END, MANIFEST_FRAME_MAGIC, MANIFEST_FRAME_TAG, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, volumeDir, type ArchivedVolume, type Manifest, type SnapshotSettings } from '../api/manifest.js';
import { ArchiveError, runArchive, timedOut } from './archive.js';
import { createSnapshotCgroups, removeSnapshotCgroups, type SnapshotCgroup } from './snapshotCgroups.js';
import { OwnerIds, ownersUnder } from './ownerIds.js';

/** Top-level names of the root layer that are mount points of other filesystems. */
const MOUNT_POINTS = new Set(['usr', 'home', 'tmp', 'run', 'proc', 'sys', 'dev']);

export class SnapshotError extends ArchiveError {}

/** What a snapshot records beside its files: the session's settings, and the volumes whose contents it holds. */
export interface SnapshotExtras {
  settings?: SnapshotSettings | undefined;
  /** Each with its host mount (read as the layer is: frozen, never followed). */
  volumes: { archived: ArchivedVolume; mount: string }[];
}

export interface Section {
  /** Directory of the upper layer, relative to its root ("root", "usr"). */
  upper: string;
  /** The read-only layer it sits on (host path), for what an opaque directory hides. */
  lower: string;
  /** Where it is in the session ("" for /). */
  at: string;
}

/** The overlays of a stored plan: upper directory name, lower layer, mount point. */
export function sectionsOf(plan: SessionPlan): Section[] {
  const v = planView(plan);
  if (v.rootLayer === undefined || v.upper === undefined) return [];
  const sections: Section[] = [{ upper: 'root', lower: v.layers[v.rootLayer]!, at: '' }];
  for (const o of v.overlays) sections.push({ upper: o.at.replaceAll('/', '_'), lower: o.source, at: o.at });
  return sections;
}

/** Why a session of this plan cannot be snapshotted (nor stopped, which stores a snapshot), if it cannot. */
export function unsnapshottable(id: string, plan: SessionPlan): string | undefined {
  const sections = sectionsOf(plan);
  if (sections.length === 0) return `session ${id} has no writable root layer (a strict session, or sessions.rootfs "/"): nothing to snapshot but /home`;
  const nested = sections.find((s) => s.at && s.upper !== s.at);
  if (nested) return `overlay ${nested.at}: snapshots take overlays on top-level directories only`;
  return undefined;
}

/** Entries walked between turns of the event loop: a layer of any size never holds up another caller. */
const WALK_SLICE = 256;

/**
 * Walk one upper directory (frozen): every entry to archive, and what the
 * layer deletes: whiteouts (0/0 character devices) and, under an opaque
 * directory, the lower layer's entries it hides. Bounded by `limit` entries;
 * it yields to the event loop every WALK_SLICE entries.
 */
export async function walk(base: string, s: Section, out: { entries: string[]; deleted: string[] }, limit: number, ids?: OwnerIds): Promise<void> {
  const rel = (p: string) => (s.at ? `${s.at}/${p}` : p);
  let slice = 0;
  const visit = async (dir: string): Promise<void> => {
    for (const e of readdirSync(join(base, dir), { withFileTypes: true })) {
      const p = dir ? `${dir}/${e.name}` : e.name;
      if (!dir && !s.at && MOUNT_POINTS.has(e.name)) continue;
      if (out.entries.length + out.deleted.length >= limit) throw new SnapshotError(`the layer has more than ${limit} entries`);
      if (++slice % WALK_SLICE === 0) await new Promise((r) => setImmediate(r));
      if (e.isCharacterDevice() && lstatSync(join(base, p)).rdev === 0) {
        out.deleted.push(rel(p));
        continue;
      }
      out.entries.push(p);
      if (ids) {
        const st = lstatSync(join(base, p));
        ids.add(st.uid, st.gid);
      }
      if (!e.isDirectory()) continue;
      if (addon().isOpaqueDir(join(base, p))) {
        const upperNames = new Set(readdirSync(join(base, p)));
        const lowerDir = join(s.lower, p);
        let lower: string[] = [];
        try {
          if (lstatSync(lowerDir).isDirectory()) lower = readdirSync(lowerDir);
        } catch {
          /* nothing below */
        }
        for (const n of lower) if (!upperNames.has(n)) out.deleted.push(rel(`${p}/${n}`));
      }
      await visit(p);
    }
  };
  await visit('');
}


export interface SnapshotSource {
  id: string;
  initPid: number;
  plan: SessionPlan;
  hostBase: number;
  idSize: number;
  /** The session's cgroup v2 directory (cgroup.freeze). */
  cgroupV2: string;
  /** Where tar and zstd run (snapshotCgroups.ts). */
  cgroups: SnapshotCgroup[];
  /** Upper bound on entries (the layer's and /home's inode caps). */
  maxEntries: number;
  /** The longest the session may stay frozen (sessions.snapshot_timeout_ms). */
  timeoutMs: number;
  tmpDir: string;
  log: Logger;
  extras: SnapshotExtras;
}

async function setFrozen(dir: string, frozen: boolean): Promise<void> {
  writeFileSync(join(dir, 'cgroup.freeze'), frozen ? '1' : '0');
  if (!frozen) return;
  for (let i = 0; i < 200; i++) {
    if (/^frozen 1$/m.test(readFileSync(join(dir, 'cgroup.events'), 'utf8'))) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new SnapshotError('the session did not freeze within 2 s');
}

export const hasZstd = () => ['/usr/bin/zstd', '/bin/zstd'].some((p) => existsSync(p));

/**
 * Write the snapshot to `out`; resolves with the bytes written once the
 * stream is complete. Whatever happens (an error, the client gone, the
 * timeout) the session is thawed and the snapshot's cgroups are removed,
 * with anything left in them.
 */
export async function writeSnapshot(src: SnapshotSource, out: Writable, compress: boolean): Promise<number> {
  const problem = unsnapshottable(src.id, src.plan);
  if (problem) throw new SnapshotError(problem);
  const sections = sectionsOf(src.plan);
  if (!existsSync(join(src.cgroupV2, 'cgroup.freeze'))) throw new SnapshotError('this host has no cgroup v2 freezer for the session: cannot take a consistent snapshot');
  const work = mkdtempSync(join(src.tmpDir, 'snapshot-'));
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), src.timeoutMs);
  try {
    const procs = await createSnapshotCgroups(src.cgroups).catch((e: Error) => {
      throw new SnapshotError(`cannot make the snapshot's cgroups: ${e.message}`);
    });
    // Inside the try: a freeze that does not complete is undone too.
    await setFrozen(src.cgroupV2, true);
    const { args, manifest } = await archiveArgs(src, sections, work, deadline.signal);
    if (deadline.signal.aborted) throw timedOut(src.timeoutMs);
    // Compressed, the manifest also ends the file as a skippable frame: a reader gets it without a decompressor.
    const suffix = compress ? manifestFrame(manifest) : undefined;
    return await runArchive({ tarArgs: args, procs, compress, signal: deadline.signal, timeoutError: timedOut(src.timeoutMs), suffix }, out);
  } finally {
    clearTimeout(timer);
    thaw(src);
    await removeSnapshotCgroups(src.cgroups).catch((e: Error) => src.log.error({ err: e.message }, 'cannot remove the snapshot cgroups'));
    rmSync(work, { recursive: true, force: true });
  }
}

function thaw(src: SnapshotSource): void {
  try {
    writeFileSync(join(src.cgroupV2, 'cgroup.freeze'), '0');
  } catch (e) {
    // Gone: the session was destroyed meanwhile. Anything else is logged: start-up thaws it at the latest.
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') src.log.error({ err: (e as Error).message }, 'cannot thaw the session after its snapshot');
  }
}


/** Pure: the zstd skippable frame a compressed snapshot ends with, holding the manifest (zstd -d skips it). */
export function manifestFrame(m: Manifest): Buffer {
  const body = Buffer.from(MANIFEST_FRAME_TAG + JSON.stringify(m));
  const foot = Buffer.alloc(12);
  foot.writeUInt32LE(body.length + 12, 0);
  foot.write(MANIFEST_FRAME_END, 4, 'latin1');
  const head = Buffer.alloc(8);
  head.writeUInt32LE(MANIFEST_FRAME_MAGIC, 0);
  head.writeUInt32LE(body.length + 12, 4);
  return Buffer.concat([head, body, foot]);
}

/** A sed expression of GNU tar's --transform: the absolute path (and only it, whole) becomes `to`; symlink targets untouched. */
function renamed(path: string, to: string): string {
  const quoted = path.replace(/[\\.*[\]^$,]/g, (c) => `\\${c}`);
  return `--transform=s,^${quoted}\\(/\\|$\\),${to}\\1,S`;
}

/** Walk the frozen layer, write the lists and the metadata: tar's arguments, and the manifest. */
async function archiveArgs(src: SnapshotSource, sections: Section[], work: string, signal: AbortSignal): Promise<{ args: string[]; manifest: Manifest }> {
  const layer = `/proc/${src.initPid}/fd/${UPPER_KEEP_FD}`;
  const lists: string[] = [];
  const found = { entries: [] as string[], deleted: [] as string[] };
  const owners = new OwnerIds();
  // A volume's mount point (and what the mount hides under it) is not the layer's: a restore mounts volumes of its own there, maybe read-only.
  const targets = planView(src.plan).volumeTargets();
  const underMount = (p: string) => targets.some((t) => p === t || p.startsWith(`${t}/`));
  for (const [i, s] of sections.entries()) {
    const before = found.entries.length;
    if (existsSync(join(layer, s.upper))) await walk(join(layer, s.upper), s, found, src.maxEntries, owners);
    found.entries.splice(before, Infinity, ...found.entries.slice(before).filter((p) => !underMount(s.at ? `${s.at}/${p}` : p)));
    const mine = found.entries.slice(before).map((p) => (s.at ? `${s.upper}/${p}` : p));
    writeFileSync(join(work, `list${i}`), mine.map((p) => `${p}\0`).join(''));
    lists.push(join(work, `list${i}`));
  }
  const vols = src.extras.volumes;
  const manifest: Manifest = {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    session: src.id,
    created_at: new Date().toISOString(),
    parts: [...sections.map((s) => `/${s.at}`), '/home', ...vols.map((v) => `/${volumeDir(v.archived.index)}`)],
    entries: found.entries.length,
    deleted: found.deleted.length,
    snapshot_id: randomBytes(6).toString('hex'),
    ...(src.extras.settings ? { settings: src.extras.settings } : {}),
    ...(vols.length ? { volumes: vols.map((v) => v.archived) } : {}),
  };
  const meta = join(work, 'meta');
  // /home, which tar reads whole (the layer's entries were walked above; its root directories are not archived).
  // What tar leaves out of /home (volumes mounted there, or /home itself) is not walked either.
  const homeSkip = new Set(targets.filter((t) => t === 'home' || t.startsWith('home/')).map((t) => t.slice('home/'.length)));
  await ownersUnder(`/proc/${src.initPid}/root/home`, {
    limit: src.maxEntries,
    ids: owners,
    skip: homeSkip,
    stop: signal,
    tooMany: (n) => new SnapshotError(`/home has more than ${n} entries`),
    fail: (e) => new SnapshotError(`cannot read /home: ${e.message}`),
  });
  writeFileSync(join(work, 'ids'), owners.map(src.hostBase, src.idSize));
  mkdirSync(join(meta, '.enclave'), { recursive: true, mode: 0o755 });
  writeFileSync(join(meta, '.enclave', 'manifest.json'), JSON.stringify(manifest) + '\n');
  writeFileSync(join(meta, '.enclave', 'deleted'), found.deleted.map((p) => `${p}\0`).join(''));
  const ids = join(work, 'ids');
  // The metadata is host root's, which no map entry names: it lands as the session's root.
  // Volumes are named by their absolute host mounts (-P keeps them so): no name of the layer or /home is absolute, so only theirs are renamed.
  const moved = vols.length ? ['-P', ...vols.map((v) => renamed(v.mount, volumeDir(v.archived.index)))] : [];
  // The manifest first, after its directory: a plain tar's reader finds it in the first entries.
  const args = ['-c', '-f', '-', '--numeric-owner', `--owner-map=${ids}`, `--group-map=${ids}`, '--sparse', ...moved, '--no-recursion', '-C', meta, '.enclave', '.enclave/manifest.json', '.enclave/deleted'];
  for (const [i, s] of sections.entries()) {
    // The root layer's entries are relative to upper/root; the others carry their directory ("usr/...").
    args.push('-C', s.at ? layer : join(layer, s.upper), '--no-recursion', '--null', '--verbatim-files-from', '-T', lists[i]!);
  }
  const inHome = targets.filter((t) => t === 'home' || t.startsWith('home/')).map((t) => `--exclude=${t}`);
  args.push('--recursion', '--one-file-system', ...(inHome.length ? ['--anchored', '--no-wildcards', ...inHome] : []), '-C', `/proc/${src.initPid}/root`, 'home');
  // A volume's files are stored in its own ID space already (0..size-1): the maps above name none of them.
  for (const v of vols) args.push('-C', '/', v.mount);
  return { args, manifest };
}
