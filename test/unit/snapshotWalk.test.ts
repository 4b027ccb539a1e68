// A snapshot walks the session's layer on the daemon's event loop: a layer
// of any size must not hold it up. The walk yields between slices, so other
// work runs while it goes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { walk } from '../../src/snapshots/snapshot.js';

describe('snapshot walk', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'enclave-walk-'));
    for (let i = 0; i < 40; i++) for (let j = 0; j < 50; j++) mkdirSync(join(dir, 'root', `d${i}`, `e${j}`), { recursive: true });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finds every entry and lets the event loop turn while it walks', async () => {
    let turns = 0;
    const tick = setInterval(() => turns++, 0);
    const found = { entries: [] as string[], deleted: [] as string[] };
    await walk(join(dir, 'root'), { upper: 'root', lower: '/nonexistent', at: '' }, found, 10_000);
    clearInterval(tick);
    expect(found.entries).toHaveLength(40 + 40 * 50);
    // 2040 entries in slices of 256: the timer ran between them.
    expect(turns).toBeGreaterThan(3);
  });

  it('stops at its bound', async () => {
    const found = { entries: [] as string[], deleted: [] as string[] };
    await expect(walk(join(dir, 'root'), { upper: 'root', lower: '/nonexistent', at: '' }, found, 100)).rejects.toThrow(/more than 100 entries/);
  });
});
