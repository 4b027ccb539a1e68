// `enclave/client` is what the package exports, and `npm pack` ships it:
// every export target, and every file of dist/ the client's entry imports
// (with its declarations), is in the tarball's file list. Needs the build
// (npm test builds first).
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { repoRoot } from '../../src/native/addon.js';

const pkg = z
  .object({ bin: z.record(z.string(), z.string()), exports: z.record(z.string(), z.union([z.string(), z.record(z.string(), z.string())])) })
  .parse(JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')));
const entry = join(repoRoot, 'dist', 'src', 'client', 'index.js');

/** The relative imports of a compiled module, followed through. */
function closure(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  for (const m of readFileSync(file, 'utf8').matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'/g)) closure(resolve(dirname(file), m[1]!), seen);
  return seen;
}

describe.skipIf(!existsSync(entry))('package exports', () => {
  it('exports ./client with its declarations, keeps the bin, and npm pack ships all the client imports', { timeout: 60_000 }, () => {
    const client = pkg.exports['./client'];
    expect(client).toEqual({ types: './dist/src/client/index.d.ts', default: './dist/src/client/index.js' });
    // The bin is the native front end; the Node CLI it hands the rest to is shipped beside it.
    expect(pkg.bin.enclave).toBe('native/build/Release/enclave-front');
    const packed = z
      .array(z.object({ files: z.array(z.object({ path: z.string() })) }))
      .parse(JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })))[0]!
      .files.map((f) => f.path);
    const needed = [...closure(entry)].flatMap((f) => [f, f.replace(/\.js$/, '.d.ts')]).map((f) => relative(repoRoot, f));
    expect(needed.length).toBeGreaterThan(10);
    expect(needed.filter((f) => !packed.includes(f))).toEqual([]);
    expect(packed).toContain('dist/bundle/main.js');
    for (const f of ['native/src/front.c', 'native/src/front_table.gen.h', 'native/binding.gyp']) expect(packed).toContain(f);
  });
});
