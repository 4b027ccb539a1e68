// The owners a snapshot maps for tar: only the IDs in use within the
// session's range, found on one file system, bounded.
import { describe, expect, it } from 'vitest';
import { chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OwnerIds, ownersUnder } from '../../src/snapshots/ownerIds.js';

const isRoot = process.getuid?.() === 0;

describe('the owners a snapshot maps', () => {
  it('maps only the IDs in use within the range, each to its ID in the session', () => {
    const ids = new OwnerIds();
    ids.add(200_000, 200_000);
    ids.add(201_000, 200_005);
    ids.add(0, 265_536); // outside the range (host root; one past the end): not mapped
    ids.add(265_535, 200_000);
    expect(ids.map(200_000, 65_536)).toBe('+200000 +0\n+200005 +5\n+201000 +1000\n+265535 +65535\n');
    expect(new OwnerIds().map(200_000, 65_536)).toBe('');
  });

  it.skipIf(!isRoot)('finds every owner under a directory, itself and symlinks included, and stops at its limit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-owners-'));
    try {
      const home = join(dir, 'home');
      mkdirSync(join(home, 'u', 'deep'), { recursive: true });
      writeFileSync(join(home, 'u', 'deep', 'f'), 'x');
      symlinkSync('/etc/passwd', join(home, 'u', 'link'));
      chownSync(home, 300_000, 300_000);
      chownSync(join(home, 'u'), 301_000, 301_000);
      chownSync(join(home, 'u', 'deep', 'f'), 301_001, 300_100);
      // A symlink's own owner (lchown), not its target's.
      const { lchownSync } = await import('node:fs');
      lchownSync(join(home, 'u', 'link'), 302_000, 302_000);
      chownSync(join(home, 'u', 'deep'), 300_000, 300_000);
      const ids = new OwnerIds();
      await ownersUnder(home, 100, ids, (n) => new Error(`more than ${n}`));
      expect(ids.map(300_000, 65_536)).toBe('+300000 +0\n+300100 +100\n+301000 +1000\n+301001 +1001\n+302000 +2000\n');
      await expect(ownersUnder(home, 3, new OwnerIds(), (n) => new Error(`more than ${n}`))).rejects.toThrow('more than 3');
      // Nothing there: nothing to map.
      const none = new OwnerIds();
      await ownersUnder(join(dir, 'missing'), 10, none, () => new Error('x'));
      expect(none.map(0, 65_536)).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
