// The host's /usr entries a session must not see. The minimal root shows the
// host's /usr as an idmapped layer, in which host uid 0 is the session's
// root: a strict session's root owns what host root owns there, and the
// workspace profile's CAP_DAC_OVERRIDE reaches every file of the session's
// IDs. Without masks, root inside would read every root-only file under
// /usr (polkit's rules.d is 0700). The promise is that a session sees in
// /usr only what any host user can read, so every entry a user outside its
// owner and group could not read is masked in the plan (mask ops, stored).
//
// Found once per daemon start by one `find` (138k entries: ~0.5-0.8 s on
// these machines), started once the daemon serves, never on the path of
// start-up or a restart; creates wait for it, and none proceeds without it
// (fail closed). A failed scan fails the creates waiting for it, and the
// next create starts a new one. What changes under /usr while the daemon
// runs (a package installed on the host) is seen at its next start.
import { spawn } from 'node:child_process';

/** The host directory the minimal root's /usr layer is. */
export const HOST_USR = '/usr';

/** A plan holds at most 512 ops (PLAN_MAX_OPS): a host with more hidden entries than this is refused. */
export const MAX_USR_MASKS = 256;

export class UsrScanError extends Error {}

/**
 * find's arguments. -xdev: the layer is root's own mount, without what is
 * mounted below it. The topmost directory lacking o+r or o+x is printed and
 * pruned (nothing under it needs a mask of its own); any other entry but a
 * link lacking o+r is printed: group-only and owner-only files, setuid
 * helpers others may not read, sockets. A link needs none: its target is
 * judged where it is. -ignore_readdir_race: a file removed during the walk
 * (a package upgrade) is not an error.
 */
export function findArgs(root: string): string[] {
  return [
    root, '-xdev', '-ignore_readdir_race',
    '(', '-type', 'd', '!', '-perm', '-o=rx', '-prune', '-print0', ')',
    '-o', '(', '!', '-type', 'd', '!', '-type', 'l', '!', '-perm', '-o=r', '-print0', ')',
  ];
}

/** A path the plan can carry as it is: valid UTF-8 (the plan is text) and no tab or newline (its separators). */
function representable(raw: Buffer): string | undefined {
  const s = raw.toString('utf8');
  return Buffer.from(s, 'utf8').equals(raw) && !/[\t\n]/.test(s) ? s : undefined;
}

/**
 * find's NUL-separated output -> the masks: absolute paths, sorted, topmost
 * only. A name the plan cannot carry is masked through its nearest parent
 * that it can (more hidden, never less); `widened` lists those parents.
 */
export function masksFrom(out: Buffer, root: string): { masks: string[]; widened: string[] } {
  const found = new Set<string>();
  const widened = new Set<string>();
  let start = 0;
  for (let end = out.indexOf(0, start); end >= 0; start = end + 1, end = out.indexOf(0, start)) {
    let raw = out.subarray(start, end);
    let path = representable(raw);
    while (path === undefined) {
      const slash = raw.lastIndexOf(0x2f);
      if (slash <= 0) throw new UsrScanError(`find printed a path with no parent the plan can name: ${JSON.stringify(raw.toString('latin1'))}`);
      raw = raw.subarray(0, slash);
      path = representable(raw);
      if (path !== undefined) widened.add(path);
    }
    if (path !== root && !path.startsWith(`${root}/`)) throw new UsrScanError(`find printed ${JSON.stringify(path)}, which is not under ${root}`);
    found.add(path);
  }
  if (start !== out.length) throw new UsrScanError(`find's output over ${root} ends without a NUL: it was cut short`);
  // Sorted, a directory comes before what is under it; its ancestors are looked up, not scanned for.
  const masks: string[] = [];
  const kept = new Set<string>();
  for (const p of [...found].sort()) {
    let under = false;
    for (let i = p.indexOf('/', 1); i > 0 && !under; i = p.indexOf('/', i + 1)) under = kept.has(p.slice(0, i));
    if (under) continue;
    kept.add(p);
    masks.push(p);
  }
  if (masks.length > MAX_USR_MASKS) {
    throw new UsrScanError(`${masks.length} entries under ${root} are not readable by other users (${masks.slice(0, 3).join(', ')}, ...): more than the ${MAX_USR_MASKS} masks a session plan takes; make them world-readable or set sessions.rootfs to a root directory`);
  }
  return { masks, widened: [...widened].filter((w) => kept.has(w)) };
}

/** One find over root: its masks, or why not. */
export function scanForMasks(root: string = HOST_USR): Promise<{ masks: string[]; widened: string[] }> {
  return new Promise((resolve, reject) => {
    const p = spawn('find', findArgs(root), { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-1000)));
    p.on('error', (e) => reject(new UsrScanError(`cannot run find over ${root}: ${e.message}`)));
    p.on('close', (code, signal) => {
      if (code !== 0) {
        const why = signal ? `was killed by ${signal}` : `exited with ${code}`;
        reject(new UsrScanError(`find over ${root} ${why}: ${err.trim().split('\n').slice(-2).join(' ') || 'no message'}`));
        return;
      }
      try {
        resolve(masksFrom(Buffer.concat(out), root));
      } catch (e) {
        reject(e);
      }
    });
  });
}

/**
 * The masks of this daemon's start: one scan, shared by every create that
 * waits for it; after a failure the next caller starts another.
 */
export class UsrMasks {
  private scan: Promise<readonly string[]> | undefined;

  constructor(
    private readonly run: () => Promise<{ masks: string[]; widened: string[] }>,
    private readonly report: { found(masks: readonly string[], widened: readonly string[], ms: number): void; failed(e: Error): void },
  ) {}

  /** Start the scan now, off the caller's path. */
  start(): void {
    this.list().catch(() => undefined); // reported by list(); a create that waits gets the error
  }

  /** The masks once found; a rejection says why the scan failed. */
  list(): Promise<readonly string[]> {
    if (this.scan) return this.scan;
    const t0 = performance.now();
    this.scan = this.run().then(
      ({ masks, widened }) => {
        this.report.found(masks, widened, performance.now() - t0);
        return masks;
      },
      (e: unknown) => {
        this.scan = undefined;
        const err = e instanceof Error ? e : new UsrScanError(String(e));
        this.report.failed(err);
        throw err;
      },
    );
    return this.scan;
  }
}
