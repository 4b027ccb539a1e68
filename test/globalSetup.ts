// The whole run's setup (vitest globalSetup, in the vitest process): the
// cache of built session base layers its test daemons share
// (integration/baseSeed.ts), removed when the run ends; those of killed
// runs (vitest exits on a signal without its teardown) removed here first.
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BASE_CACHE } from './integration/baseSeed.js';
import { RUNS_DIR } from './integration/runsDir.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

export function setup(): () => void {
  if (process.getuid?.() !== 0) return () => undefined;
  for (const e of existsSync(RUNS_DIR) ? readdirSync(RUNS_DIR) : []) {
    const m = BASE_CACHE.exec(e);
    if (m && !alive(Number(m[1]))) rmSync(join(RUNS_DIR, e), { recursive: true, force: true });
  }
  const dir = join(RUNS_DIR, `base-${process.pid}`);
  // The runs' directory as the harness makes it (others reach their test daemons' sockets through it); the cache root's alone.
  mkdirSync(RUNS_DIR, { recursive: true, mode: 0o755 });
  rmSync(dir, { recursive: true, force: true }); // a killed run's of this very pid (reused)
  mkdirSync(dir, { mode: 0o700 });
  return () => {
    rmSync(dir, { recursive: true, force: true });
    try {
      rmdirSync(RUNS_DIR);
    } catch {
      /* other runs still there */
    }
  };
}
