// Everything a daemon owns on the host, locked for its lifetime: its state
// dir, its cgroup parent, its bridge, its nftables table and its host ID
// range. One flock(2)-held file per resource under /run/enclave/locks (the
// kernel drops a lock when its holder dies, however it dies, so a crash
// leaves nothing to clean up); the file names the holder. A second daemon
// that overlaps any of them refuses to start and says who holds it. Every
// daemon must use the same locks_dir (the default) for this to hold. ID
// ranges overlap without being equal, so their files carry the range and a
// short-held registry lock makes check-and-take atomic.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import { addon } from '../native/addon.js';


export class LockError extends Error {}

interface Holder {
  pid: number;
  state_dir: string;
  resource: string;
}

function holderOf(path: string): string {
  try {
    const h = JSON.parse(readFileSync(path, 'utf8')) as Holder;
    return `the daemon with PID ${h.pid} (state dir ${h.state_dir})`;
  } catch {
    return `another process (lock file ${path})`;
  }
}

/**
 * Whether a live process holds the lock at path. One that nobody holds is a
 * stale file of a dead holder: probing takes it, and it goes.
 */
export function lockHeld(path: string): boolean {
  const fd = addon().lockFile(path, '{}');
  if (fd < 0) return true;
  addon().unlockFile(path, fd);
  return false;
}

/** The ID range a config hands out: [first, last]. */
export function idSpan(config: Config): [number, number] {
  return [config.ids.base, config.ids.base + config.ids.size * config.ids.slots - 1];
}

export class DaemonLocks {
  private readonly held: { path: string; fd: number }[] = [];

  private constructor(
    private readonly dir: string,
    private readonly me: { pid: number; state_dir: string },
  ) {}

  /** Take every lock of this config, or throw a LockError naming the holder (nothing stays locked then). */
  static acquire(config: Config, dir = config.locks_dir): DaemonLocks {
    if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stateDir = existsSync(config.state_dir) ? realpathSync(config.state_dir) : config.state_dir;
    const locks = new DaemonLocks(dir, { pid: process.pid, state_dir: stateDir });
    try {
      const hash = createHash('sha256').update(stateDir).digest('hex').slice(0, 16);
      locks.take(`state-${hash}.lock`, `state dir ${stateDir}`);
      locks.take(`cgroup-${config.cgroups.parent}.lock`, `cgroup parent ${config.cgroups.parent}`);
      locks.take(`bridge-${config.network.bridge}.lock`, `bridge ${config.network.bridge}`);
      locks.take(`table-${config.network.table}.lock`, `nftables table inet ${config.network.table}`);
      locks.takeIdRange(idSpan(config));
      return locks;
    } catch (e) {
      locks.release();
      throw e;
    }
  }

  private take(name: string, what: string): void {
    const path = join(this.dir, name);
    const fd = addon().lockFile(path, JSON.stringify({ ...this.me, resource: what }));
    if (fd < 0) throw new LockError(`${what} is in use by ${holderOf(path)}; refusing to start (configure another one, or stop that daemon)`);
    this.held.push({ path, fd });
  }

  private takeIdRange([first, last]: [number, number]): void {
    // The registry lock is held only while ranges are compared and ours is taken.
    const registry = join(this.dir, 'ids.registry.lock');
    let reg = -1;
    for (let i = 0; i < 200 && reg < 0; i++) {
      reg = addon().lockFile(registry, JSON.stringify({ ...this.me, resource: 'ID range registry' }));
      if (reg < 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
    if (reg < 0) throw new LockError(`the ID range registry ${registry} stayed locked by ${holderOf(registry)}`);
    try {
      for (const f of readdirSync(this.dir)) {
        const m = /^ids-(\d+)-(\d+)\.lock$/.exec(f);
        if (!m || Number(m[2]) < first || Number(m[1]) > last) continue;
        const path = join(this.dir, f);
        if (!lockHeld(path)) continue; // its daemon is gone: not an owner
        throw new LockError(`host IDs ${first}-${last} overlap IDs ${m[1]}-${m[2]}, in use by ${holderOf(path)}; refusing to start (configure another ids.base)`);
      }
      this.take(`ids-${first}-${last}.lock`, `host IDs ${first}-${last}`);
    } finally {
      addon().unlockFile(registry, reg);
    }
  }

  /** Let go of every lock; their files go with them (a crash leaves stale, unlocked files: harmless). */
  release(): void {
    for (const { path, fd } of this.held.splice(0)) addon().unlockFile(path, fd);
  }
}
