// The helper's failure steps and op table, read from the helper itself
// (`enclave-init --ops` prints native/src/ops.h and common.h), so the names
// here can never drift from the C. Read once, on first use.
import { execFileSync } from 'node:child_process';
import { helperPaths } from './addon.js';

export interface OpDef {
  name: string;
  /** One kind letter per argument (see native/src/ops.h). */
  args: string;
  phase: string;
  step: string;
  flags: string[];
}

export interface HelperTable {
  phases: string[];
  /** Step name -> the helper's exit code for it. */
  steps: Map<string, number>;
  ops: OpDef[];
}

let table: HelperTable | undefined;

export function parseHelperTable(text: string): HelperTable {
  const t: HelperTable = { phases: [], steps: new Map(), ops: [] };
  for (const line of text.split('\n')) {
    const f = line.split('\t');
    if (f[0] === 'phase' && f[1]) t.phases.push(f[1]);
    else if (f[0] === 'step' && f[1] && /^\d+$/.test(f[2] ?? '')) t.steps.set(f[1], Number(f[2]));
    else if (f[0] === 'op' && f.length === 6) {
      t.ops.push({ name: f[1]!, args: f[2] === '-' ? '' : f[2]!, phase: f[3]!, step: f[4]!, flags: f[5]!.split(',').filter(Boolean) });
    }
  }
  return t;
}

export function helperTable(): HelperTable {
  table ??= parseHelperTable(execFileSync(helperPaths.init, ['--ops'], { encoding: 'utf8', env: {} }));
  return table;
}

export function stepForExitCode(code: number): string | undefined {
  for (const [name, c] of helperTable().steps) if (c === code) return name;
  return undefined;
}
