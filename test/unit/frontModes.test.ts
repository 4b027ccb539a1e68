// The native front end follows the terminal modes a program switches on as
// the Node CLI does (src/cli/terminalModes.ts), so that attach and exec -t
// put the terminal back the same way through either: seeded random output,
// cut into random chunks (sequences split across them), fed to both; the
// restore sequences must be the same bytes. (In a real terminal:
// test/integration/front.test.ts.)
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { FRONT, frontBuilt, rng } from './fixtures/front.js';
import { TerminalModes } from '../../src/cli/terminalModes.js';


/** Pieces of output: whole and broken mode sequences, keypad, RIS, other escapes, text, long runs. */
const PIECES = [
  '\x1b[?', '\x1b[?1049h', '\x1b[?1049l', '\x1b[?1047h', '\x1b[?47h', '\x1b[?1h', '\x1b[?1l', '\x1b[?25l', '\x1b[?25h', '\x1b[?7l', '\x1b[?7h',
  '\x1b[?1000;1006h', '\x1b[?1000;1006l', '\x1b[?1002h', '\x1b[?2004h', '\x1b[?2004l', '\x1b[?1004h', '\x1b[?9h', '\x1b[?1015h', '\x1b[?1005h',
  '\x1b[?01h', '\x1b[?;25;l', '\x1b[?99999999999999999999h', '\x1b[?1049', '\x1b=', '\x1b>', '\x1bc', '\x1b', '\x1b[', '\x1b[0m', '\x1b[2J',
  'h', 'l', ';', '1', '0', '?', '[', 'text ', 'é', '\r\n', `\x1b[?${'1'.repeat(70)}h`, 'x'.repeat(100),
];

function frame(chunks: Buffer[]): Buffer {
  return Buffer.concat(chunks.flatMap((c) => {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(c.length);
    return [h, c];
  }));
}

describe.skipIf(!frontBuilt())('the front end\'s terminal modes', () => {
  it('restore with the same bytes as the Node CLI\'s for the same output, however it is cut', { timeout: 60_000 }, () => {
    const random = rng(27);
    let nonEmpty = 0;
    for (let round = 0; round < 300; round++) {
      const text = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 40) }, () => PIECES[Math.floor(random() * PIECES.length)]!).join(''), 'latin1');
      const chunks: Buffer[] = [];
      for (let at = 0; at < text.length; ) {
        const n = 1 + Math.floor(random() * (random() < 0.5 ? 4 : 80));
        chunks.push(text.subarray(at, at + n));
        at += n;
      }
      const ts = new TerminalModes();
      for (const c of chunks) ts.feed(c);
      const want = ts.restoreSequence();
      const r = spawnSync(FRONT, [], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ENCLAVE_FRONT: 'modes' }, input: frame(chunks) });
      expect(r.status, JSON.stringify(text.toString('latin1'))).toBe(0);
      expect(r.stdout.toString('latin1'), JSON.stringify(chunks.map((c) => c.toString('latin1')))).toBe(want);
      if (want) nonEmpty++;
    }
    // Most rounds leave something switched on: the comparison is not of empty strings.
    expect(nonEmpty).toBeGreaterThan(150);
  });
});
