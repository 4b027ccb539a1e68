// A session's console outlives the daemon (issue 24, item 1): its shell and
// whatever runs in it keep running through a daemon SIGTERM and a SIGKILL,
// the next daemon re-adopts the console, and a client that attaches again
// sees the screen (what was printed before, and while no daemon ran).
// Output written while no daemon runs goes into the console's ring, at most
// its capacity; then the writer blocks, and nothing is dropped.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { isRoot, TestDaemon } from './harness.js';
import { Viewer } from './viewer.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!isRoot)('consoles outlive the daemon (root)', () => {
  // A small ring, so that the bound is quick to reach.
  const d = new TestDaemon({ extraConfig: '[terminal]\nring_bytes = 65536\n' });

  let sessionId = '';
  beforeAll(async () => {
    await d.start();
    sessionId = (await d.create({ name: 'work' })).id;
  });
  afterAll(async () => {
    await d.cleanup();
  });

  const pidOf = async (pattern: string) => (await d.sh('work', `pgrep -f '${pattern}' | head -1`)).stdout.trim();

  /** Attach, and the screen a fresh client gets: the snapshot's text. */
  async function screen(): Promise<{ v: Viewer; text: string }> {
    const v = new Viewer(d, 'work');
    await v.opened;
    const snap = await v.snapshotSeen();
    return { v, text: snap.toString() };
  }

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`keeps the shell, its jobs and its screen through a daemon ${signal}`, async () => {
      const v = new Viewer(d, 'work');
      await v.opened;
      v.type(`sleep 100000 & i=0; while true; do echo "tick-${signal}-$i"; i=$((i+1)); sleep 0.1; done\r`);
      await v.waitFor(`tick-${signal}-3`);
      const sleeper = await pidOf('sleep 100000');
      expect(sleeper).toMatch(/^\d+$/);
      const shownBefore = (await d.show('work')).console;
      expect(shownBefore.running).toBe(true);

      expect(await d.stop(signal)).toBe(signal === 'SIGTERM' ? 0 : null);
      await v.closed;
      await sleep(1000); // ~10 ticks while no daemon runs
      await d.start();

      // The same shell and job, the same console: the screen shows ticks from before and from while it was down.
      expect(await pidOf('sleep 100000')).toBe(sleeper);
      const again = await screen();
      expect(again.text).toContain(`tick-${signal}-3`);
      const shownTicks = [...again.text.matchAll(new RegExp(`tick-${signal}-(\\d+)`, 'g'))].map((m) => Number(m[1]));
      expect(Math.max(...shownTicks)).toBeGreaterThan(8);
      // And it is live: new ticks arrive, and the console takes input.
      const next = Math.max(...shownTicks) + 5;
      await again.v.waitFor(`tick-${signal}-${next}`);
      again.v.type('\x03'); // stop the loop
      await sleep(200);
      // Computed by the shell, so the terminal's echo of what was typed does not match: only a shell out of the loop prints it.
      again.v.type(`echo done-$((40+2))-${signal}\r`);
      await again.v.waitFor(`done-42-${signal}`);
      again.v.ws.close();
      await again.v.closed;
    });
  }

  it('takes at most the ring\'s capacity of output while no daemon runs, then the writer blocks; nothing is lost', async () => {
    const v = new Viewer(d, 'work');
    await v.opened;
    // A writer of numbered lines, as fast as the terminal takes them; its count lands in a file.
    v.type(`python3 -c "
import sys
n = 0
while True:
    sys.stdout.write('line-%08d\\\\n' % n); sys.stdout.flush(); n += 1
    if n % 100 == 0: open('/tmp/count', 'w').write(str(n))
"\r`);
    await v.waitFor('line-00001000');
    await d.stop('SIGKILL');
    await v.closed;
    const atStop = Number((readCount()) ?? 0);
    await sleep(1500);
    const whileDown = Number((readCount()) ?? 0) - atStop;
    // 64 KiB of ring at 14 bytes a line, plus what the pty itself buffers: far below a second's worth.
    expect(whileDown).toBeGreaterThan(0);
    expect(whileDown * 14).toBeLessThan(65536 + 64 * 1024);
    await sleep(500);
    expect(Number(readCount()) - atStop).toBe(whileDown); // it is blocked, not writing on
    await d.start();
    const w = new Viewer(d, 'work');
    await w.opened;
    // Writing again: the daemon reads the terminal once more. The target counts from the first
    // line this viewer sees: the writer runs on from the daemon's start, before the viewer attaches,
    // and on a loaded machine it can be far past atStop + 5000 by then (a fresh-clone CI run saw 1.9M).
    await w.waitFor('line-');
    const tail = w.output().subarray(-65536).toString('latin1');
    const seen = [...tail.matchAll(/line-(\d{8})/g)].reduce((max, m) => Math.max(max, Number(m[1])), 0);
    expect(seen).toBeGreaterThanOrEqual(atStop);
    await w.waitFor(`line-${String(seen + 5000).padStart(8, '0')}`);
    w.type('\x03');
    w.ws.close();
    await w.closed;
  });

  /** The writer's count, read from the host while no daemon runs: the session's /tmp through its python3's root. */
  function readCount(): string | undefined {
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'python3' || !readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(sessionId)) continue;
        return readFileSync(`/proc/${pid}/root/tmp/count`, 'utf8');
      } catch {
        /* gone, or not the session's */
      }
    }
    return undefined;
  }
});
