// The CLI's two ends of `session cp` on their own: packHost (a host tree to
// a tar, nothing followed) and TarExtractor (a hostile session's tar into a
// host directory). Every hostile case is a tar a session could send; each
// must be refused, or handled, without writing a byte outside the
// destination. The root integration test (copy.test.ts) runs them through a
// real session.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { openDir } from '../../src/cli/safeFs.js';
import { Broken, Refused, TarExtractor, type ExtractTarget } from '../../src/cli/tarExtract.js';
import { packHost } from '../../src/cli/tarPack.js';
import { entry, tarOf } from './tarCraft.js';

async function packed(src: Parameters<typeof packHost>[0]): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of packHost(src)) out.push(c);
  return Buffer.concat(out);
}

/** Feed a tar in odd-sized pieces, as a socket would. */
function extract(tar: Buffer, t: Omit<ExtractTarget, 'display' | 'archive'> & { archive?: boolean }): TarExtractor {
  const ex = new TarExtractor({ display: 'dest', archive: false, ...t });
  for (let off = 0; off < tar.length; off += 7777) ex.write(tar.subarray(off, off + 7777));
  ex.end();
  return ex;
}

/** Every path under dir, with what it is. */
function tree(dir: string, at = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of readdirSync(join(dir, at)).sort()) {
    const rel = at ? `${at}/${n}` : n;
    const st = lstatSync(join(dir, rel));
    if (st.isSymbolicLink()) out[rel] = `link ${readlinkSync(join(dir, rel))}`;
    else if (st.isDirectory()) {
      out[rel] = `dir ${(st.mode & 0o7777).toString(8)}`;
      Object.assign(out, tree(dir, rel));
    } else out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${readFileSync(join(dir, rel), 'utf8')}`;
  }
  return out;
}

describe('session cp, the CLI side: packing a host tree and extracting a hostile tar', () => {
  let dir: string;
  let dest: string;
  let outside: string;
  let fd: number;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'enclave-cp-'));
    dest = join(dir, 'dest');
    outside = join(dir, 'outside');
    mkdirSync(dest);
    mkdirSync(outside);
    writeFileSync(join(outside, 'victim'), 'original');
    fd = openDir(dest);
  });
  afterEach(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  const outsideUntouched = () => expect(tree(outside)).toEqual({ victim: 'file 644 original' });

  it('round-trips a tree: files, modes, a subdirectory, long names, symlinks as symlinks (never followed); GNU tar reads it alike', async () => {
    const src = join(dir, 'src');
    const long = 'n'.repeat(150);
    mkdirSync(join(src, 'sub', long), { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'alpha');
    writeFileSync(join(src, 'run.sh'), '#!/bin/sh\n');
    chmodSync(join(src, 'run.sh'), 0o750);
    writeFileSync(join(src, 'sub', long, 'deep'), 'deep');
    chmodSync(join(src, 'sub'), 0o711);
    symlinkSync(join(outside, 'victim'), join(src, 'abs-link'));
    symlinkSync('../a.txt', join(src, 'sub', 'rel-link'));
    symlinkSync('/nonexistent/target', join(src, 'dangling'));
    const srcFd = openDir(dir);
    const tar = await packed({ dirFd: srcFd, name: 'src', as: 'src', display: src, warn: () => undefined });
    closeSync(srcFd);
    const listed = spawnSync('tar', ['-tvf', '-'], { input: tar, encoding: 'utf8' });
    expect(listed.status).toBe(0);
    expect(listed.stdout).toContain(`src/sub/${long}/deep`);
    expect(listed.stdout).toMatch(/src\/abs-link -> .*outside\/victim/);

    const ex = extract(tar, { dirFd: fd, name: 'copy', root: 'src' });
    expect(ex.error).toBeUndefined();
    expect(tree(join(dest, 'copy'))).toEqual(tree(src));
    expect(statSync(join(dest, 'copy', 'sub')).mode & 0o777).toBe(0o711);
    outsideUntouched();
  });

  it('packs a directory\'s contents without a root entry, or under a new name', async () => {
    const src = join(dir, 'src');
    mkdirSync(join(src, 'd'), { recursive: true });
    writeFileSync(join(src, 'd', 'f'), 'x');
    const srcFd = openDir(src);
    const flat = spawnSync('tar', ['-tf', '-'], { input: await packed({ dirFd: srcFd, name: null, as: null, display: src, warn: () => undefined }), encoding: 'utf8' });
    const named = spawnSync('tar', ['-tf', '-'], { input: await packed({ dirFd: srcFd, name: null, as: 'new', display: src, warn: () => undefined }), encoding: 'utf8' });
    closeSync(srcFd);
    expect(flat.stdout.split('\n').filter(Boolean)).toEqual(['d/', 'd/f']);
    expect(named.stdout.split('\n').filter(Boolean)).toEqual(['new/', 'new/d/', 'new/d/f']);
  });

  const refusals: [string, () => Buffer, RegExp][] = [
    ['a .. path', () => tarOf(entry({ path: 'B/../../outside/victim' }, 'pwned')), /'\.\.' component/],
    ['an absolute path', () => tarOf(entry({ path: `${'/'}tmp/enclave-abs-victim` }, 'pwned')), /absolute path/],
    ['a path outside the copied root', () => tarOf(entry({ path: 'other/file' }, 'pwned')), /outside 'B'/],
    ['a .. path given in a PAX header', () => tarOf(entry({ path: 'B/harmless', pax: { path: 'B/../../outside/victim' } }, 'pwned')), /'\.\.' component/],
    ['a file through a symlink the tar made', () => tarOf(entry({ path: 'B/', type: 'Directory', mode: 0o755 }), entry({ path: 'B/l', type: 'SymbolicLink', linkpath: '../../outside' }), entry({ path: 'B/l/victim' }, 'pwned')), /B\/l is a symlink/],
    ['a hard link out', () => tarOf(entry({ path: 'B/h', type: 'Link', linkpath: '../../outside/victim' })), /hard link/],
    ['a hard link in', () => tarOf(entry({ path: 'B/a' }, 'a'), entry({ path: 'B/h', type: 'Link', linkpath: 'B/a' })), /hard link/],
    ['a path longer than the kernel takes', () => tarOf(entry({ path: `B/${'x/'.repeat(2100)}f` })), /bytes long/],
    ['a compressed stream', () => gzipSync(tarOf(entry({ path: 'B' }, 'x'))), /compressed/],
    ['a broken checksum', () => { const t = tarOf(entry({ path: "B" }, "x")); t[148] = t[148]! ^ 1; return t; }, /broken tar/],
    ['a truncated body', () => entry({ path: 'B' }, 'y'.repeat(5000)).subarray(0, 2048), /broken tar|Truncated/],
  ];
  it.each(refusals)('refuses %s and writes nothing outside', (_what, make, why) => {
    const ex = extract(make(), { dirFd: fd, name: 'B', root: 'B' });
    expect(ex.error).toBeInstanceOf(Refused);
    expect(ex.error?.message).toMatch(why);
    outsideUntouched();
    expect(existsSync('/tmp/enclave-abs-victim')).toBe(false);
  });

  it('replaces a symlink the tar made with a file, never writing through it', () => {
    const ex = extract(tarOf(entry({ path: 'B/', type: 'Directory' }), entry({ path: 'B/f', type: 'SymbolicLink', linkpath: join(outside, 'victim') }), entry({ path: 'B/f' }, 'pwned')), { dirFd: fd, name: 'B', root: 'B' });
    expect(ex.error).toBeUndefined();
    expect(lstatSync(join(dest, 'B', 'f')).isFile()).toBe(true);
    outsideUntouched();
  });

  it('never goes through a symlink already in the destination (a planted one), nor replaces it with a directory', () => {
    symlinkSync(outside, join(dest, 'B'));
    const asDir = extract(tarOf(entry({ path: 'B/', type: 'Directory' }), entry({ path: 'B/victim' }, 'pwned')), { dirFd: fd, name: 'B', root: 'B' });
    expect(asDir.error?.message).toMatch(/exists and is not a directory/);
    const through = extract(tarOf(entry({ path: 'B/victim' }, 'pwned')), { dirFd: fd, name: 'B', root: 'B' });
    expect(through.error?.message).toMatch(/is a symlink or not a directory/);
    outsideUntouched();
  });

  it('drops setuid and setgid, skips devices and FIFOs, keeps owners only in archive mode and only a session\'s IDs', () => {
    const ex = extract(
      tarOf(entry({ path: 'B/', type: 'Directory', mode: 0o3775 }), entry({ path: 'B/suid', mode: 0o6755 }, 'x'), entry({ path: 'B/null', type: 'CharacterDevice', devmaj: 1, devmin: 3 }), entry({ path: 'B/fifo', type: 'FIFO' })),
      { dirFd: fd, name: 'B', root: 'B' },
    );
    expect(ex.error).toBeUndefined();
    expect(statSync(join(dest, 'B', 'suid')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(dest, 'B')).mode & 0o7777).toBe(0o1775);
    expect(ex.skipped).toEqual(['dest/B/null (CharacterDevice)', 'dest/B/fifo (FIFO)']);
    expect(readdirSync(join(dest, 'B'))).toEqual(['suid']);
    const big = extract(tarOf(entry({ path: 'C', uid: 70000, gid: 0 }, 'x')), { dirFd: fd, name: 'C', root: 'C', archive: true });
    expect(big.error?.message).toMatch(/not a session's/);
    expect(existsSync(join(dest, 'C'))).toBe(false);
  });

  it('keeps an existing directory\'s mode when a contents copy lands in it, and refuses a file root there', () => {
    chmodSync(dest, 0o750);
    const ex = extract(tarOf(entry({ path: './', type: 'Directory', mode: 0o777 }), entry({ path: './f' }, 'x')), { dirFd: fd, name: null, root: null });
    expect(ex.error).toBeUndefined();
    expect(statSync(dest).mode & 0o777).toBe(0o750);
    expect(readFileSync(join(dest, 'f'), 'utf8')).toBe('x');
    const file = extract(tarOf(entry({ path: '.' }, 'x')), { dirFd: fd, name: null, root: null });
    expect(file.error?.message).toMatch(/not a directory/);
  });

  it('calls a stream that is no tar at all broken', () => {
    const ex = extract(Buffer.from('hello, this is not a tar\n'.repeat(100)), { dirFd: fd, name: 'B', root: 'B' });
    expect(ex.error).toBeInstanceOf(Broken);
  });
});
