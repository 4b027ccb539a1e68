// The TS side's view of the native code: the addon's exports, the helper's
// step names and its verdict line.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { helperTable, stepForExitCode } from '../../src/native/steps.js';
import { addon, addonExports, repoRoot } from '../../src/native/addon.js';
import { describeFailure, parseLaunchOutput } from '../../src/sessions/launch.js';

describe('native addon exports', () => {
  // The export tables of native/src/addon/*.cc against the names
  // src/native/addon.ts builds the Addon type from: an export TypeScript does
  // not know, or a declared name the addon does not export, fails here.
  it('are exactly the names src/native/addon.ts declares', () => {
    const loaded = addon() as unknown as Record<string, unknown>;
    const exported = Object.keys(loaded);
    const declared: readonly string[] = addonExports;
    expect(new Set(declared).size, 'a name declared twice').toBe(declared.length);
    expect({
      exportedButNotDeclared: exported.filter((n) => !declared.includes(n)),
      declaredButNotExported: declared.filter((n) => !exported.includes(n)),
    }).toEqual({ exportedButNotDeclared: [], declaredButNotExported: [] });
    for (const n of declared) expect(typeof loaded[n], n).toBe('function');
  });
});

describe('helper steps', () => {
  it('come from the helper itself, named as in native/src/common.h', () => {
    const header = readFileSync(join(repoRoot, 'native', 'src', 'common.h'), 'utf8');
    const names = [...header.matchAll(/^\s*X\(\w+, "([a-z-]+)"\)/gm)].map((m) => m[1]);
    expect([...helperTable().steps.keys()]).toEqual(names);
    expect(header).toContain(`#define STEP_EXIT_BASE ${helperTable().steps.get(names[0]!)}`);
  });
  it('map exit codes to steps', () => {
    expect(stepForExitCode(helperTable().steps.get('pivot-root')!)).toBe('pivot-root');
    expect(stepForExitCode(1)).toBeUndefined();
  });
});

describe('enclave-init verdict', () => {
  it('parses success', () => {
    expect(parseLaunchOutput('ok\t4242\t987654\n', 0, null)).toEqual({ ok: true, pid: 4242, startTime: '987654' });
  });
  it('parses a failed step with errno and detail', () => {
    const r = parseLaunchOutput('error\tpivot-root\t22\tpivot_root\n', 87, null);
    expect(r).toEqual({ ok: false, step: 'pivot-root', errno: 22, detail: 'pivot_root' });
    expect(describeFailure(r as Extract<typeof r, { ok: false }>)).toBe('step pivot-root failed: EINVAL (pivot_root)');
  });
  it('falls back to the exit code when the helper said nothing', () => {
    const r = parseLaunchOutput('', helperTable().steps.get('clone')!, null, 'oops');
    expect(r).toMatchObject({ ok: false, step: 'clone' });
    expect(parseLaunchOutput('', null, 'SIGKILL')).toMatchObject({ ok: false, step: 'unknown', detail: 'enclave-init killed by SIGKILL' });
  });
  it('does not accept "ok" with a failing exit code', () => {
    expect(parseLaunchOutput('ok\t1\t2\n', 1, null).ok).toBe(false);
  });
});
