// The folders of src/ are layers: a file imports its own folder or the
// ones below it, never above, so no two folders import each other. The
// order is the design (DESIGN.md, "Repository layout"): vocabulary at the
// bottom, then the API's shapes, the kernel-facing mechanisms, policy,
// configuration, the session lifecycle, the daemon and the CLI on top.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { repoRoot } from '../../src/native/addon.js';

const LAYERS = ['vocab', 'api', 'native', 'store', 'isolation', 'network', 'secrets', 'volumes', 'snapshots', 'terminal', 'access', 'config', 'sessions', 'daemon', 'cli'];
const SRC = join(repoRoot, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every relative import and export-from (static and dynamic) of a file, as the folder of src/ it lands in. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g)].map((m) => (m[1] ?? m[2])!);
  return specs.map((s) => relative(SRC, resolve(dirname(file), s)).split('/')[0]!);
}

const folderOf = (file: string) => relative(SRC, file).split('/')[0]!;

describe('layers of src/', () => {
  const files = sources(SRC);

  it('knows every folder of src/ (a new folder takes its place in the order)', () => {
    const folders = new Set(files.map(folderOf).filter((f) => !f.endsWith('.ts')));
    expect([...folders].filter((f) => !LAYERS.includes(f))).toEqual([]);
  });

  it('imports only within a folder or downwards: no arrow points up, so no two folders import each other', () => {
    const up: string[] = [];
    for (const f of files) {
      const from = folderOf(f);
      for (const to of importsOf(f)) {
        if (to === from || to.startsWith('..')) continue;
        if (LAYERS.indexOf(to) > LAYERS.indexOf(from)) up.push(`${relative(repoRoot, f)} -> ${to}`);
      }
    }
    expect(up).toEqual([]);
  });
});
