// limits.oom = "session": an out-of-memory kill ends the whole session.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, TestDaemon, SESSION_PROBE } from './harness.js';

describe.skipIf(!isRoot)('OOM policy "session" (root)', () => {
  const d = new TestDaemon({ extraConfig: '[limits]\noom = "session"\n' });
  let probe: string;
  beforeAll(async () => {
    await d.start();
    d.buildProbe();
    probe = SESSION_PROBE;
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('ends the session that ran out of memory, and only that one', async () => {
    const hog = await d.create({ name: 'greedy', memory_mb: 64 });
    const other = await d.create({ name: 'bystander', memory_mb: 64 });
    await d.cli(['session', 'exec', 'greedy', '--', probe, 'hog']);
    let state = (await d.show(hog.id)).state;
    for (let i = 0; i < 500 && state !== 'failed'; i++) {
      await new Promise((r) => setTimeout(r, 10));
      state = (await d.show(hog.id)).state;
    }
    const shown = await d.show(hog.id);
    expect(shown.state).toBe('failed');
    expect(shown.last_error).toMatch(/ran out of memory/);
    expect(d.cgroupDirs(hog.id)).toEqual([]);
    expect((await d.show(other.id)).state).toBe('running');
    expect((await d.sh('bystander', 'echo fine')).stdout).toBe('fine\n');
  });
});
