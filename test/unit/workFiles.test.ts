// The state dir's tmp/ after a daemon died mid-work (src/store/workFiles.ts):
// its own leftovers go at the next start, anything else stays.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { sweepWork, workDir } from '../../src/store/workFiles.js';

describe('the sweep of unfinished work', () => {
  let state: string;
  beforeEach(() => {
    state = mkdtempSync(join(tmpdir(), 'enclave-work-'));
  });
  afterEach(() => rmSync(state, { recursive: true, force: true }));

  it('removes a half-written move upload and a snapshot scratch dir, and leaves anything else', () => {
    const tmp = workDir(state);
    mkdirSync(join(tmp, 'snapshot-Ab12Cd'), { recursive: true });
    writeFileSync(join(tmp, 'snapshot-Ab12Cd', 'exclude'), 'x');
    writeFileSync(join(tmp, 'moved-in-s-0123456789.00112233445566ff'), 'half');
    // Not ours by name or by kind: a file named like a scratch dir, a link named like an upload, another file.
    writeFileSync(join(tmp, 'snapshot-Zz99Yy'), 'a file');
    const outside = join(state, 'elsewhere');
    writeFileSync(outside, 'kept');
    symlinkSync(outside, join(tmp, 'moved-in-s-abcdefabcd.0011223344556677'));
    writeFileSync(join(tmp, 'notes'), 'kept');
    sweepWork(state, pino({ level: 'silent' }));
    expect(readdirSync(tmp).sort()).toEqual(['moved-in-s-abcdefabcd.0011223344556677', 'notes', 'snapshot-Zz99Yy']);
    expect(existsSync(outside)).toBe(true);
  });

  it('is nothing to do before the first use', () => {
    expect(() => sweepWork(state, pino({ level: 'silent' }))).not.toThrow();
  });
});
