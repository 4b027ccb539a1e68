// The CLI asks for a terminal size the API accepts, whatever its own terminal reports.
import { describe, expect, it } from 'vitest';
import { terminalSize } from '../../src/cli/attachClient.js';
import { attachQuery, execQuery } from '../../src/api/schemas.js';

describe('terminal size from the CLI', () => {
  it.each([
    [120, 40, { cols: 120, rows: 40 }],
    [0, 0, { cols: 80, rows: 24 }], // script(1) without a size
    [undefined, undefined, { cols: 80, rows: 24 }],
    [5000, 900, { cols: 1000, rows: 500 }],
  ])('%s x %s -> %o, accepted by attach and exec', (c, r, want) => {
    const got = terminalSize(c, r);
    expect(got).toEqual(want);
    const q = { cols: String(got.cols), rows: String(got.rows) };
    expect(attachQuery.safeParse(q).success).toBe(true);
    expect(execQuery.safeParse({ command: ['true'], ...q }).success).toBe(true);
  });
});
