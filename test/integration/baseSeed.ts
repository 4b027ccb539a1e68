// One vitest run's built session base layers, shared by its test daemons:
// each daemon builds its minimal root's base layer in its own fresh state
// dir (a copy of the host's /etc and dpkg database, ~3 s on these
// machines), and every test file starts at least one. The first daemon of
// the run builds it as any daemon does; the others start with a
// hard-linked copy under the same name (content-addressed: the daemon
// takes one only when its hash is the one it computes from the host, and
// never writes into it). The cache lives in RUNS_DIR as base-PID of the
// vitest process (globalSetup.ts makes it and removes it at the end; a
// killed run's is swept by the next). Outside a vitest run (the benches)
// there is none and daemons build their own.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const BASE_CACHE = /^base-(\d+)$/;
const LAYER = /^base-[0-9a-f]{16}$/;

/** This run's cache, when there is one: made by the vitest process that forked this test file. */
export function baseCache(runsDir: string): string | undefined {
  const dir = join(runsDir, `base-${process.ppid}`);
  return existsSync(dir) ? dir : undefined;
}

/** A hard-linked copy of layer `from` at `to`, whole or not at all (copied beside as `tmp`, then renamed). */
function linkCopy(from: string, to: string, tmp: string): void {
  if (spawnSync('cp', ['-a', '-l', from, tmp], { stdio: 'ignore' }).status === 0) {
    try {
      return renameSync(tmp, to);
    } catch {
      /* another test file made it first */
    }
  }
  rmSync(tmp, { recursive: true, force: true });
}

/** Hard-linked copies of the cached layers into a fresh state dir's rootfs/ (one that fails: the daemon builds it). */
export function seedBaseLayers(cache: string, rootfs: string): void {
  mkdirSync(rootfs, { recursive: true, mode: 0o700 });
  for (const name of readdirSync(cache).filter((n) => LAYER.test(n))) {
    if (!existsSync(join(rootfs, name))) linkCopy(join(cache, name), join(rootfs, name), join(rootfs, `.seed-${name}-${process.pid}`));
  }
}

/** A layer a daemon built that the cache lacks: hard-linked into it. */
export function keepBaseLayers(cache: string, rootfs: string): void {
  for (const name of existsSync(rootfs) ? readdirSync(rootfs).filter((n) => LAYER.test(n)) : []) {
    if (!existsSync(join(cache, name))) linkCopy(join(rootfs, name), join(cache, name), join(cache, `.keep-${name}-${process.pid}`));
  }
}
