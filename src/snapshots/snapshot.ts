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
import type { ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import { addon } from '../native/addon.js';
import type { SessionPlan } from '../isolation/plan.js';
import { planView } from '../isolation/planView.js';
import { UPPER_KEEP_FD } from '../native/contract.gen.js';
import { createSnapshotCgroups, JOIN_FAILED, removeSnapshotCgroups, spawnIn, type SnapshotCgroup } from './snapshotCgroups.js';

export const SNAPSHOT_FORMAT = 'enclave-snapshot';
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
export async function walk(base: string, s: Section, out: { entries: string[]; deleted: string[] }, limit: number): Promise<void> {
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
  /** Where tar and zstd run (snapshotCgroups.ts). */
  cgroups: SnapshotCgroup[];
  /** Upper bound on entries (the layer's and /home's inode caps). */
  maxEntries: number;
  /** The longest the session may stay frozen (sessions.snapshot_timeout_ms). */
  timeoutMs: number;
  tmpDir: string;
  log: Logger;
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
    const args = await archiveArgs(src, sections, work);
    if (deadline.signal.aborted) throw timedOut(src.timeoutMs);
    return await run({ tarArgs: args, procs, compress, signal: deadline.signal, timeoutMs: src.timeoutMs }, out);
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

const timedOut = (ms: number) => new SnapshotError(`the snapshot took longer than sessions.snapshot_timeout_ms (${ms} ms): cut`);

/** Walk the frozen layer, write the lists and the metadata: tar's arguments. */
async function archiveArgs(src: SnapshotSource, sections: Section[], work: string): Promise<string[]> {
  const layer = `/proc/${src.initPid}/fd/${UPPER_KEEP_FD}`;
  const lists: string[] = [];
  const found = { entries: [] as string[], deleted: [] as string[] };
  for (const [i, s] of sections.entries()) {
    const before = found.entries.length;
    if (existsSync(join(layer, s.upper))) await walk(join(layer, s.upper), s, found, src.maxEntries);
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
  return args;
}

interface RunOptions {
  tarArgs: string[];
  /** cgroup.procs files tar and zstd join before they exec. */
  procs: string[];
  compress: boolean;
  /** Aborted at sessions.snapshot_timeout_ms. */
  signal: AbortSignal;
  timeoutMs: number;
}

/**
 * tar (| zstd) into out: the byte count, or an error with tar's last words.
 * tar writes straight into zstd's stdin (a pipe the daemon holds no end
 * of), so nothing in the daemon can hit EPIPE between them. Settles on the
 * processes' exits plus the end of the output, or at once when out closes
 * (the client went away), a stream or child fails, or the deadline passes:
 * then the children are SIGKILLed and every stream destroyed.
 */
function run(o: RunOptions, out: Writable): Promise<number> {
  return new Promise((resolve, reject) => {
    const children: ChildProcess[] = [];
    const streams: (Readable | Writable)[] = [];
    let settled = false;
    let err = '';
    let bytes = 0;
    const finish = (e?: SnapshotError) => {
      if (settled) return;
      settled = true;
      o.signal.removeEventListener('abort', onAbort);
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      for (const s of streams) s.destroy();
      if (e) reject(e);
      else resolve(bytes);
    };
    const onAbort = () => finish(timedOut(o.timeoutMs));
    o.signal.addEventListener('abort', onAbort);
    out.on('error', () => finish(new SnapshotError('the client went away')));
    out.on('close', () => finish(new SnapshotError('the client went away')));
    if (out.destroyed) return finish(new SnapshotError('the client went away'));

    const keep = (b: Buffer) => (err = (err + b.toString()).slice(-2000));
    const exits = new Map<ChildProcess, string>();
    let ended = false;
    const check = () => {
      if (ended && exits.size === children.length) finish();
    };
    const watch = (what: string, c: ChildProcess) => {
      children.push(c);
      c.on('error', (e) => finish(new SnapshotError(`${what}: ${e.message}`)));
      c.on('exit', (code, signal) => {
        exits.set(c, what);
        if (code === 0) return check();
        // tar exits 1 when a file changed as it was read: the session is frozen, so that is a real failure too.
        const report = () => finish(new SnapshotError(code === JOIN_FAILED ? `${what} could not join the snapshot cgroups` : `${what} exited with ${code ?? signal}: ${err.trim().split('\n').slice(-3).join(' ')}`));
        // Its last words may still be in the pipe: a moment for them, no more.
        c.stderr?.once('close', report);
        setTimeout(report, 200).unref();
      });
      for (const s of [c.stdin, c.stdout, c.stderr]) {
        if (!s) continue;
        streams.push(s);
        s.on('error', () => undefined); // an exit status or a destroy reports it
      }
      c.stderr?.on('data', keep);
    };
    const z = o.compress ? spawnIn(o.procs, 'zstd', ['-q', '-c', '-3', '-T1'], { stdio: ['pipe', 'pipe', 'pipe'] }) : undefined;
    if (z) watch('zstd', z);
    const tar = spawnIn(o.procs, 'tar', o.tarArgs, { stdio: ['ignore', z ? z.stdin! : 'pipe', 'pipe'] });
    watch('tar', tar);
    // tar has its own copy of zstd's stdin: ours goes, so zstd sees EOF when tar is done.
    z?.stdin!.destroy();
    const src = (z ?? tar).stdout!;
    src.on('data', (b: Buffer) => {
      bytes += b.length;
      if (!settled && !out.write(b)) src.pause();
    });
    out.on('drain', () => src.resume());
    src.on('end', () => {
      ended = true;
      check();
    });
  });
}
