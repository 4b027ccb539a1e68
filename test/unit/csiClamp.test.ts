// The screen mirror's clamp of looping counts: what it rewrites, what it
// leaves alone, that a split sequence is the same as a whole one, and that
// the screen it yields is the one the unclamped bytes draw.
import { describe, expect, it } from 'vitest';
import xtermHeadless from '@xterm/headless';
import { CsiClamp } from '../../src/terminal/csiClamp.js';

const { Terminal } = xtermHeadless;
const COLS = 80;
const ROWS = 24;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => Buffer.from(b).toString('latin1');
const clampAll = (s: string) => dec(new CsiClamp().filter(enc(s), COLS, ROWS));

async function screen(data: Uint8Array | string): Promise<{ lines: string[]; cursor: [number, number] }> {
  const t = new Terminal({ cols: COLS, rows: ROWS, scrollback: 100, allowProposedApi: true });
  await new Promise<void>((r) => t.write(data, r));
  const b = t.buffer.active;
  const lines: string[] = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)!.translateToString(true));
  const out = { lines, cursor: [b.cursorX, b.cursorY] as [number, number] };
  t.dispose();
  return out;
}

describe('CSI count clamp (screen mirror)', () => {
  it('clamps scroll, insert/delete-line counts to the rows and repeat/tab counts to the columns', () => {
    expect(clampAll('\x1b[30000000S\x1b[99999T\x1b[500L\x1b[25M')).toBe('\x1b[24S\x1b[24T\x1b[24L\x1b[24M');
    expect(clampAll('x\x1b[30000000b\x1b[900I\x1b[81Z')).toBe('x\x1b[80b\x1b[80I\x1b[80Z');
    expect(clampAll('\x1b[99999999999999999999999S')).toBe('\x1b[24S');
    // The UTF-8 form of the C1 introducer too.
    expect(clampAll('\u009b3000S')).toBe('\u009b24S'.replace('\u009b', '\xc2\x9b'));
  });

  it('leaves every other byte alone: text, UTF-8, small counts, SGR, private modes, OSC, cursor moves', () => {
    const untouched = 'héllo wörld ✓\r\n\x1b[1;31mred\x1b[0m\x1b[?1049h\x1b[?25l\x1b]0;title\x07\x1b[10;20H\x1b[5S\x1b[3b\x1b[2 @\x1b[38:2:1:2:3m\x1bc\x1b(0q\x1b(B\xc2\xa9';
    expect(clampAll(untouched)).toBe(dec(enc(untouched)));
    const plain = enc('no escapes at all');
    expect(new CsiClamp().filter(plain, COLS, ROWS)).toBe(plain); // the same buffer: no copy
  });

  it('gives the same bytes however the output is split', () => {
    const input = enc('a\x1b[30000000b\x1b[9999S\xc2\x9b77777Lz\x1b[?1h\x1b[1;2m');
    const whole = dec(new CsiClamp().filter(input, COLS, ROWS));
    const clamp = new CsiClamp();
    let split = '';
    for (const b of input) split += dec(clamp.filter(Uint8Array.of(b), COLS, ROWS));
    expect(split).toBe(whole);
  });

  it('draws the screen the unclamped bytes draw, for counts past the screen', async () => {
    let text = '';
    for (let i = 0; i < 40; i++) text += `line ${i} ${'x'.repeat(i)}\r\n`;
    for (const seq of ['\x1b[3000S', '\x1b[3000T', '\x1b[5;1H\x1b[3000L', '\x1b[5;1H\x1b[3000M', '\x1b[3000I', '\x1b[3000Z', '\x1b[10;20r\x1b[12;1H\x1b[3000S\x1b[3000L']) {
      const raw = enc(text + seq + 'end');
      expect(await screen(new CsiClamp().filter(raw, COLS, ROWS)), JSON.stringify(seq)).toEqual(await screen(raw));
    }
  });
});
