// The owners a snapshot maps for tar: only the IDs in use within the
// session's range, found on one file system, bounded.
import { describe, expect, it } from 'vitest';
import { chownSync, lchownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
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

  const walk = (root: string, ids: OwnerIds, o: { limit?: number; skip?: string[] } = {}) =>
    ownersUnder(root, { limit: o.limit ?? 100, ids, skip: new Set(o.skip ?? []), stop: new AbortController().signal, tooMany: (n) => new Error(`more than ${n}`), fail: (e) => new Error(`failed: ${e.message}`) });

  it.skipIf(!isRoot)('finds every owner under a directory, itself and symlinks included, skips what tar excludes, and stops at its limit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-owners-'));
    try {
      const home = join(dir, 'home');
      mkdirSync(join(home, 'u', 'deep'), { recursive: true });
      mkdirSync(join(home, 'u', 'vol', 'in'), { recursive: true });
      writeFileSync(join(home, 'u', 'deep', 'f'), 'x');
      symlinkSync('/etc/passwd', join(home, 'u', 'link'));
      chownSync(home, 300_000, 300_000);
      chownSync(join(home, 'u'), 301_000, 301_000);
      chownSync(join(home, 'u', 'deep', 'f'), 301_001, 300_100);
      chownSync(join(home, 'u', 'vol', 'in'), 309_999, 309_999);
      // A symlink's own owner (lchown), not its target's.
      lchownSync(join(home, 'u', 'link'), 302_000, 302_000);
      chownSync(join(home, 'u', 'deep'), 300_000, 300_000);
      chownSync(join(home, 'u', 'vol'), 300_000, 300_000);
      const ids = new OwnerIds();
      await walk(home, ids, { skip: ['u/vol'] });
      expect(ids.map(300_000, 65_536)).toBe('+300000 +0\n+300100 +100\n+301000 +1000\n+301001 +1001\n+302000 +2000\n');
      await expect(walk(home, new OwnerIds(), { limit: 3 })).rejects.toThrow('more than 3');
      // /home excluded whole (a volume mounted on it): nothing walked.
      const none = new OwnerIds();
      await walk(home, none, { skip: [''] });
      expect(none.map(0, 400_000)).toBe('');
      // Nothing there: nothing to map.
      await walk(join(dir, 'missing'), none);
      expect(none.map(0, 400_000)).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!isRoot)('takes the owner of a mount point in it (tar archives its header) but not what is inside (--one-file-system)', async () => {
    // A run killed between its mount and its unmount left one: gone first.
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const at = line.split(' ')[1];
      if (at?.startsWith(join(tmpdir(), 'enclave-owners-'))) execFileSync('umount', ['-l', at]);
    }
    const dir = mkdtempSync(join(tmpdir(), 'enclave-owners-'));
    const mnt = join(dir, 'home', 'm');
    mkdirSync(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'uid=305000,gid=305001,size=1m', 'none', mnt]);
    try {
      writeFileSync(join(mnt, 'f'), 'x');
      chownSync(join(mnt, 'f'), 306_000, 306_000);
      const ids = new OwnerIds();
      await walk(join(dir, 'home'), ids);
      expect(ids.map(300_000, 65_536)).toBe('+305000 +5000\n+305001 +5001\n');
    } finally {
      execFileSync('umount', [mnt]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
