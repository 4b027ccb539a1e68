// The README stays a ten-minute guide (issue 23: at most 250 lines, the rest
// in docs/), and no relative link in it or in docs/ points at a file or a
// heading that is not there: sections move between these files, links must
// move with them.
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const files = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[`*_]/g, '')
    .replace(/[^\p{L}\p{N} -]/gu, '')
    .replace(/ /g, '-');

function anchors(text: string): Set<string> {
  const out = new Set<string>();
  let fenced = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = !fenced && /^#{1,6} (.*)$/.exec(line);
    if (m) out.add(slug(m[1]!));
  }
  for (const m of text.matchAll(/<a id="([^"]+)"/g)) out.add(m[1]!);
  return out;
}

/** Markdown links outside code: [text](target). */
function links(text: string): string[] {
  const prose = text.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^[a-z]+:/.test(t));
}

describe('README and docs', () => {
  it('keeps the README to 250 lines', () => {
    expect(readFileSync(join(root, 'README.md'), 'utf8').trimEnd().split('\n').length).toBeLessThanOrEqual(250);
  });

  it('has no relative link to a missing file or heading', () => {
    const broken: string[] = [];
    for (const file of files) {
      const text = readFileSync(join(root, file), 'utf8');
      for (const target of links(text)) {
        const [path, hash] = target.split('#') as [string, string | undefined];
        const to = path === '' ? join(root, file) : resolve(dirname(join(root, file)), path);
        if (!existsSync(to)) {
          broken.push(`${file}: ${target} (no file ${relative(root, to)})`);
          continue;
        }
        if (hash !== undefined && to.endsWith('.md') && !anchors(readFileSync(to, 'utf8')).has(hash)) broken.push(`${file}: ${target} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });
});
