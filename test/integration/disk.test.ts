// A full disk under the state dir (issue 13, defect 4): a create answers 507
// naming the state dir and leaves no kernel object behind; once space is
// freed nothing is stuck in `creating` and the next create works; a daemon
// that starts on a full disk says so.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { isRoot, TestDaemon } from './harness.js';

/** Write zeros into dir until the file system is full. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  }
  // And the last crumbs, a byte at a time (a page may still be half free).
  try {
    for (;;) writeSync(fd, Buffer.alloc(1));
  } catch {
    /* full */
  }
  closeSync(fd);
  return path;
}

describe.skipIf(!isRoot)('a full disk under the state dir (root)', () => {
  const d = new TestDaemon();
  const liveLinks = () => readdirSync('/sys/class/net').filter((l) => l.startsWith('ve-'));

  beforeAll(async () => {
    // The state dir on a small tmpfs of the test's own: a disk that fills in a moment.
    mkdirSync(d.stateDir, { recursive: true, mode: 0o700 });
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0700', 'tmpfs', d.stateDir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mount: ${r.stderr}`);
    await d.start();
    // Some history first, as any daemon has: its WAL has grown to hold a few creates.
    for (let i = 0; i < 4; i++) await d.destroy((await d.create({ name: `warm-${i}` })).id);
  });
  afterAll(async () => {
    await d.cleanup(); // unmounts the tmpfs too
  });

  it('answers 507 naming the state dir, leaves no kernel object, and is not stuck once space is freed', async () => {
    const linksBefore = liveLinks();
    // Writers start the WAL over, in space it already has: the database can
    // still take a create's rows while the file system takes nothing, so the
    // create fails after its cgroups exist (writing the session's files).
    const db = new Database(join(d.stateDir, 'enclave.db'));
    db.pragma('wal_checkpoint(RESTART)');
    db.close();
    const filler = fill(d.stateDir);
    try {
      const r = await d.api('POST', '/v1/sessions', { name: 'nospace' });
      expect(r.status, d.log().split('\n').filter((l) => l.includes('internal error')).join('\n')).toBe(507);
      expect(JSON.stringify(r.body)).toContain(`the disk holding the state dir ${d.stateDir} is full`);
      // It got as far as the kernel, and was rolled back from there.
      const failed = ((await d.api('GET', '/v1/sessions?all=1')).body as { sessions: { name: string; state: string; last_error: string | null }[] }).sessions.find((x) => x.name === 'nospace');
      expect(failed?.state).toBe('failed');
      expect(failed?.last_error).toMatch(/is full/);
      // Nothing of it in the kernel: no session cgroup, no link.
      const dirs = d.cgroupDirs().flatMap((p) => readdirSync(p).filter((e) => /^s-[0-9a-f]{10}$/.test(e)));
      expect(dirs).toEqual([]);
      // No link the failed create made is left (the warm-up sessions' links may still be going).
      expect(liveLinks().filter((l) => !linksBefore.includes(l))).toEqual([]);
      expect((await d.api('GET', '/v1/health')).status).toBe(200);
    } finally {
      rmSync(filler);
    }
    // With space again: no row left in creating (its final state is written within a few seconds), and a create works.
    let creating = 1;
    for (let i = 0; i < 100 && creating > 0; i++) {
      const all = (await d.api('GET', '/v1/sessions?all=1')).body as { sessions: { state: string }[] };
      creating = all.sessions.filter((s) => s.state === 'creating').length;
      if (creating) await new Promise((r) => setTimeout(r, 100));
    }
    expect(creating).toBe(0);
    const ok = await d.create({ name: 'nospace' });
    expect(ok.state).toBe('running');
    await d.destroy(ok.id);
  });

  it('refuses to start on a full disk and says so', async () => {
    await d.stop();
    // A daemon needs to write its WAL and locks at start: take that room away.
    rmSync(join(d.stateDir, 'enclave.db-wal'), { force: true });
    const filler = fill(d.stateDir);
    try {
      await expect(d.start()).rejects.toThrow(new RegExp(`the disk holding the state dir ${d.stateDir} is full`));
    } finally {
      rmSync(filler);
    }
    await d.start();
    expect(existsSync(join(d.stateDir, 'enclave.db'))).toBe(true);
  });
});
