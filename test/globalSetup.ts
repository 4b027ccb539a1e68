// The whole run's setup (vitest globalSetup, in the vitest process): the
// cache of built session base layers its test daemons share
// (integration/baseSeed.ts), removed when the run ends.
import { mkdirSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { RUNS_DIR } from './integration/runsDir.js';

export function setup(): () => void {
  if (process.getuid?.() !== 0) return () => undefined;
  const dir = join(RUNS_DIR, `base-${process.pid}`);
  // The runs' directory as the harness makes it (others reach their test daemons' sockets through it); the cache root's alone.
  mkdirSync(RUNS_DIR, { recursive: true, mode: 0o755 });
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
