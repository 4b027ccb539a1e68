// A session snapshot: its writable root layer and its /home as one tar
// stream (zstd when the host has it), with a manifest and the list of paths
// the layer deletes, so that a new session can replay it (restoreScript).
//
// Consistency: the session's cgroup is frozen (cgroup v2 cgroup.freeze)
// from the walk of the layer to the end of the stream, so the tree is one
// moment's, and nothing in the session can swap a directory for a symlink
// while host tar reads it. The layer is read through the init's fd of it
// (/proc/PID/fd/63, native/src/init.c), /home through /proc/PID/root: paths
// the session cannot redirect (a mount point cannot be renamed). tar never
// follows a symlink when it archives; owners are written as the session's
// own IDs (host base + k -> k), so they land the same in any session.
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { addon } from '../native/addon.js';
import { opsNamed, type SessionPlan } from '../isolation/plan.js';

export const SNAPSHOT_FORMAT = 'enclave-snapshot';
/** The fd the init keeps the writable layer on (UPPER_KEEP_FD in native/src/ops.h). */
const UPPER_FD = 63;
/** Top-level names of the root layer that are mount points of other filesystems. */
const MOUNT_POINTS = new Set(['usr', 'home', 'tmp', 'run', 'proc', 'sys', 'dev']);

export class SnapshotError extends Error {}

export interface Manifest {
  format: typeof SNAPSHOT_FORMAT;
  version: 1;
  session: string;
  created_at: string;
  /** Paths (relative to /) the snapshot holds: the layer's parts, then home. */
  parts: string[];
  entries: number;
  deleted: number;
}

interface Section {
  /** Directory of the upper layer, relative to its root ("root", "usr"). */
  upper: string;
  /** The read-only layer it sits on (host path), for what an opaque directory hides. */
  lower: string;
  /** Where it is in the session ("" for /). */
  at: string;
}

/** The overlays of a stored plan: upper directory name, lower layer, mount point. */
export function sectionsOf(plan: SessionPlan): Section[] {
  const layers = opsNamed(plan, 'layer').map((a) => a[0]!);
  const root = opsNamed(plan, 'root')[0];
  if (!root || opsNamed(plan, 'upper').length === 0) return [];
  const sections: Section[] = [{ upper: 'root', lower: layers[Number(root[0])]!, at: '' }];
  for (const [rel, n] of opsNamed(plan, 'overlay')) sections.push({ upper: rel!.replaceAll('/', '_'), lower: layers[Number(n)]!, at: rel! });
  return sections;
}

/**
 * Walk one upper directory (frozen): every entry to archive, and what the
 * layer deletes: whiteouts (0/0 character devices) and, under an opaque
 * directory, the lower layer's entries it hides. Bounded by `limit` entries.
 */
function walk(base: string, s: Section, out: { entries: string[]; deleted: string[] }, limit: number): void {
  const rel = (p: string) => (s.at ? `${s.at}/${p}` : p);
  const visit = (dir: string) => {
    for (const e of readdirSync(join(base, dir), { withFileTypes: true })) {
      const p = dir ? `${dir}/${e.name}` : e.name;
      if (!dir && !s.at && MOUNT_POINTS.has(e.name)) continue;
      if (out.entries.length + out.deleted.length >= limit) throw new SnapshotError(`the layer has more than ${limit} entries`);
      if (e.isCharacterDevice() && lstatSync(join(base, p)).rdev === 0) {
        out.deleted.push(rel(p));
        continue;
      }
      out.entries.push(p);
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
      visit(p);
    }
  };
  visit('');
}

/** GNU tar owner and group maps: host base + k -> k, for the session's range. */
function idMap(hostBase: number, size: number): string {
  const lines: string[] = [];
  for (let k = 0; k < size; k++) lines.push(`+${hostBase + k} +${k}`);
  return lines.join('\n') + '\n';
}

export interface SnapshotSource {
  id: string;
  initPid: number;
  plan: SessionPlan;
  hostBase: number;
  idSize: number;
  /** The session's cgroup v2 directory (cgroup.freeze). */
  cgroupV2: string;
  /** Upper bound on entries (the layer's and /home's inode caps). */
  maxEntries: number;
  tmpDir: string;
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
 * stream is complete. The session is thawed whatever happens.
 */
export async function writeSnapshot(src: SnapshotSource, out: Writable, compress: boolean): Promise<number> {
  const sections = sectionsOf(src.plan);
  if (sections.length === 0) throw new SnapshotError(`session ${src.id} has no writable root layer (a strict session, or sessions.rootfs "/"): nothing to snapshot but /home`);
  const nested = sections.find((s) => s.at && s.upper !== s.at);
  if (nested) throw new SnapshotError(`overlay ${nested.at}: snapshots take overlays on top-level directories only`);
  if (!existsSync(join(src.cgroupV2, 'cgroup.freeze'))) throw new SnapshotError('this host has no cgroup v2 freezer for the session: cannot take a consistent snapshot');
  const work = mkdtempSync(join(src.tmpDir, 'snapshot-'));
  await setFrozen(src.cgroupV2, true);
  try {
    const layer = `/proc/${src.initPid}/fd/${UPPER_FD}`;
    const lists: string[] = [];
    const found = { entries: [] as string[], deleted: [] as string[] };
    for (const [i, s] of sections.entries()) {
      const before = found.entries.length;
      if (existsSync(join(layer, s.upper))) walk(join(layer, s.upper), s, found, src.maxEntries);
      const mine = found.entries.slice(before).map((p) => (s.at ? `${s.upper}/${p}` : p));
      writeFileSync(join(work, `list${i}`), mine.map((p) => `${p}\0`).join(''));
      lists.push(join(work, `list${i}`));
    }
    const manifest: Manifest = {
      format: SNAPSHOT_FORMAT,
      version: 1,
      session: src.id,
      created_at: new Date().toISOString(),
      parts: [...sections.map((s) => `/${s.at}`), '/home'],
      entries: found.entries.length,
      deleted: found.deleted.length,
    };
    const meta = join(work, 'meta');
    writeFileSync(join(work, 'ids'), idMap(src.hostBase, src.idSize));
    mkdirSync(join(meta, '.enclave'), { recursive: true, mode: 0o755 });
    writeFileSync(join(meta, '.enclave', 'manifest.json'), JSON.stringify(manifest) + '\n');
    writeFileSync(join(meta, '.enclave', 'deleted'), found.deleted.map((p) => `${p}\0`).join(''));
    const ids = join(work, 'ids');
    // The metadata is host root's, which no map entry names: it lands as the session's root.
    const args = ['-c', '-f', '-', '--numeric-owner', `--owner-map=${ids}`, `--group-map=${ids}`, '--sparse', '-C', meta, '.enclave'];
    for (const [i, s] of sections.entries()) {
      // The root layer's entries are relative to upper/root; the others carry their directory ("usr/...").
      args.push('-C', s.at ? layer : join(layer, s.upper), '--no-recursion', '--null', '--verbatim-files-from', '-T', lists[i]!);
    }
    args.push('--recursion', '--one-file-system', '-C', `/proc/${src.initPid}/root`, 'home');
    return await run(args, out, compress);
  } finally {
    await setFrozen(src.cgroupV2, false).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

/** tar (| zstd) into out; the byte count, or an error with tar's last words. */
function run(tarArgs: string[], out: Writable, compress: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const tar = spawn('tar', tarArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    const z = compress ? spawn('zstd', ['-q', '-c', '-3', '-T0'], { stdio: ['pipe', 'pipe', 'pipe'] }) : undefined;
    let err = '';
    let bytes = 0;
    const keep = (b: Buffer) => (err = (err + b.toString()).slice(-2000));
    tar.stderr.on('data', keep);
    z?.stderr?.on('data', keep);
    const src = z ? z.stdout! : tar.stdout;
    if (z) tar.stdout.pipe(z.stdin!);
    src.on('data', (b: Buffer) => {
      bytes += b.length;
      if (!out.write(b)) {
        src.pause();
        out.once('drain', () => src.resume());
      }
    });
    let pending = z ? 2 : 1;
    let failed: string | undefined;
    const done = (what: string) => (code: number | null) => {
      // tar exits 1 when a file changed as it was read: the session is frozen, so that is a real failure too.
      if (code !== 0) failed ??= `${what} exited with ${code}: ${err.trim().split('\n').slice(-3).join(' ')}`;
      if (--pending === 0) (failed ? reject(new SnapshotError(failed)) : resolve(bytes));
    };
    tar.on('close', done('tar'));
    z?.on('close', done('zstd'));
    tar.on('error', (e) => reject(new SnapshotError(`tar: ${e.message}`)));
    out.on('close', () => {
      tar.kill('SIGKILL');
      z?.kill('SIGKILL');
    });
  });
}
