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

  /**
   * ^C to the loop, then `command`, until `marker` shows the shell took it. One ^C is not always
   * enough: landing between a `sleep`'s exit and bash taking the terminal back, it goes to an
   * emptied process group (any interactive shell's race; seen under load). A ^C also flushes a
   * typed line the loop never read, so the command is typed again each time.
   */
  async function interrupt(v: Viewer, marker: string, command: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      v.type('\x03');
      await sleep(200);
      v.type(`${command}\r`);
      try {
        return await v.waitFor(marker, 3000);
      } catch (e) {
        if (attempt === 5) throw e;
      }
    }
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
      // Stop the loop; computed by the shell, so the terminal's echo of what was typed does not match: only a shell out of the loop prints it.
      await interrupt(again.v, `done-42-${signal}`, `echo done-$((40+2))-${signal}`);
      again.v.ws.close();
      await again.v.closed;
    });
  }

  it('takes at most the ring\'s capacity of output while no daemon runs, then the writer blocks; nothing is lost', async () => {
    const v = new Viewer(d, 'work');
    await v.opened;
    // A writer of numbered lines, as fast as the terminal takes them; its count lands in a file,
    // replaced whole (a read between a truncate and its write would read 0: seen under load).
    // It writes 1000 lines, then waits for a SIGUSR1: what it writes after that is written while no
    // daemon runs, however late the test gets to read the count on a loaded machine.
    v.type(`python3 -c "
import os, signal, sys, time
go = []
signal.signal(signal.SIGUSR1, lambda *_: go.append(1))
n = 0
while True:
    while n == 1000 and not go: time.sleep(0.01)
    sys.stdout.write('line-%08d\\\\n' % n); sys.stdout.flush(); n += 1
    if n % 100 == 0: open('/tmp/count.new', 'w').write(str(n)); os.replace('/tmp/count.new', '/tmp/count')
"\r`);
    await v.waitFor('line-00000999');
    // The writer is paused at 1000 once its count says so (written just after that line).
    for (let i = 0; i < 200 && readCount() !== '1000'; i++) await sleep(50);
    await d.stop('SIGKILL');
    await v.closed;
    const atStop = Number(readCount());
    expect(atStop).toBe(1000);
    process.kill(writer(), 'SIGUSR1');
    await sleep(1500);
    const whileDown = Number(readCount()) - atStop;
    // The ring's 64 KiB at 15 bytes a line (the pty makes \n \r\n), plus what the pty itself buffers
    // (~20 KB here: 1300 lines with no reader at all), less the count's step of 100 lines: far below a second's worth.
    expect(whileDown * 15).toBeGreaterThan(65536 - 1500);
    expect(whileDown * 15).toBeLessThan(65536 + 68 * 1024);
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

  /** The writer's pid on the host. */
  function writer(): number {
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'python3' && readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(sessionId)) return Number(pid);
      } catch {
        /* gone, or not the session's */
      }
    }
    throw new Error(`no python3 of session ${sessionId} runs`);
  }

  /** The writer's count, read from the host while no daemon runs: the session's /tmp through its root. */
  const readCount = () => readFileSync(`/proc/${writer()}/root/tmp/count`, 'utf8');
});
