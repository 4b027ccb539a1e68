import { afterAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import xtermHeadless from '@xterm/headless';
import { ByteRing } from '../../src/terminal/ring.js';
import { MirrorHost, type ScreenMirror } from '../../src/terminal/mirror.js';

const { Terminal } = xtermHeadless;
type Term = InstanceType<typeof Terminal>;

async function feed(t: Term, data: string | Uint8Array): Promise<void> {
  await new Promise<void>((r) => t.write(data, r));
}

/** Every line (scrollback and screen) plus the cursor, as a user would see them. */
function view(t: Term): { lines: string[]; cursor: [number, number]; alt: boolean } {
  const b = t.buffer.active;
  const lines: string[] = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)!.translateToString(true));
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return { lines, cursor: [b.cursorX, b.cursorY], alt: b.type === 'alternate' };
}

async function render(snapshot: Buffer, cols: number, rows: number): Promise<Term> {
  const t = new Terminal({ cols, rows, scrollback: 1000, allowProposedApi: true });
  await feed(t, snapshot);
  return t;
}

const host = new MirrorHost(pino({ level: 'silent' }));
afterAll(() => host.close());

function pair(ringBytes: number, maxLag = 8 * 1024 * 1024): { ring: ByteRing; mirror: ScreenMirror; out: (s: string | Buffer) => void } {
  const ring = new ByteRing(ringBytes);
  const mirror = host.create(ring, { cols: 80, rows: 24 }, 1000, maxLag);
  const out = (s: string | Buffer) => {
    const b = typeof s === 'string' ? Buffer.from(s) : s;
    ring.write(b);
    mirror.write(b);
  };
  return { ring, mirror, out };
}

describe('screen mirror', () => {
  it('redraws the same screen, scrollback and cursor as the terminal that saw the output', async () => {
    const { ring, mirror, out } = pair(1024 * 1024);
    const reference = new Terminal({ cols: 80, rows: 24, scrollback: 1000, allowProposedApi: true });
    let text = '';
    for (let i = 0; i < 200; i++) text += `\x1b[3${i % 8}mline ${i} \u00e9\u4e2d\u{1F600}\x1b[0m\r\n`;
    text += '\x1b[5;10Hmoved\x1b[1;31mred\x1b[0m$ ';
    out(text);
    await feed(reference, text);

    const s = await mirror.snapshot();
    expect(s.offset).toBe(ring.end);
    const again = await render(s.data, s.cols, s.rows);
    expect(view(again)).toEqual(view(reference));
    // The attributes come along too: the "red" cell is bold red.
    const cell = again.buffer.active.getLine(again.buffer.active.baseY + 4)!.getCell(14)!;
    expect(cell.getChars()).toBe('r');
    expect(cell.isBold()).toBeTruthy();
    expect(cell.getFgColor()).toBe(1);
    mirror.close();
  });

  it('keeps a full-screen program on the alternate screen, and follows resizes', async () => {
    const { mirror, out } = pair(1024 * 1024);
    out('shell line\r\n\x1b[?1049h\x1b[H\x1b[2Jeditor top\x1b[24;1Hstatus');
    mirror.resize({ cols: 100, rows: 30 });
    const s = await mirror.snapshot();
    expect([s.cols, s.rows]).toEqual([100, 30]);
    const v = view(await render(s.data, s.cols, s.rows));
    expect(v.alt).toBe(true);
    expect(v.lines[0]).toBe('editor top');
    mirror.close();
  });

  it('stops feeding a mirror that falls behind, then restarts it from the ring', async () => {
    const { ring, mirror, out } = pair(256 * 1024, 64 * 1024);
    // Far more than the lag bound, at once: the worker cannot keep up.
    for (let i = 0; i < 20_000; i++) out(`row ${i} ${'x'.repeat(60)}\r\n`);
    expect(mirror.mode).toBe('behind');
    out('LAST-LINE\r\n$ ');
    const s = await mirror.snapshot();
    // Taken after the restart: it covers everything written before that.
    expect(s.offset).toBe(ring.end);
    const v = view(await render(s.data, s.cols, s.rows));
    expect(v.lines.at(-2)).toBe('LAST-LINE');
    expect(v.lines.at(-3)).toMatch(/^row 19999 x+$/);
    expect(mirror.mode).toBe('sync');
    mirror.close();
  });

  it('survives the worker dying: the next snapshot restarts it from the ring', async () => {
    const { ring, mirror, out } = pair(64 * 1024);
    out('before the crash\r\n');
    await mirror.snapshot();
    await host.crashForTest();
    expect(host.running).toBe(false);
    expect(mirror.mode).toBe('broken');
    out('after the crash\r\n');
    const s = await mirror.snapshot();
    expect(host.running).toBe(true);
    expect(s.offset).toBe(ring.end);
    expect(view(await render(s.data, s.cols, s.rows)).lines).toEqual(['before the crash', 'after the crash']);
    mirror.close();
  });
});
