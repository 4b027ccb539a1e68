import { describe, expect, it } from 'vitest';
import { TerminalModes } from '../../src/cli/terminalModes.js';

const fed = (...chunks: string[]) => {
  const m = new TerminalModes();
  for (const c of chunks) m.feed(Buffer.from(c, 'latin1'));
  return m.restoreSequence();
};

describe('terminal modes followed through output', () => {
  it('undoes what a full-screen program switched on: alternate screen first, then cursor, mouse, paste, keys', () => {
    // What vim and less print at start (a subset, with parameters joined).
    expect(fed('\x1b[?1049h\x1b[?1h\x1b=\x1b[?25l\x1b[?1000;1006h\x1b[?2004htext')).toBe('\x1b[?1049l\x1b[?1l\x1b[?25h\x1b[?1000l\x1b[?1006l\x1b[?2004l\x1b>\x1b[0m');
  });

  it('knows a program that put things back itself, and a full reset', () => {
    expect(fed('\x1b[?1049h\x1b[?25l', 'x', '\x1b[?25h\x1b[?1049l')).toBe('');
    expect(fed('\x1b[?1049h\x1b[?2004h', '\x1bc')).toBe('');
    expect(fed('plain text, colours \x1b[31mred\x1b[0m and a CSI \x1b[2J')).toBe('');
  });

  it('follows a sequence cut anywhere by a chunk boundary', () => {
    const seq = '\x1b[?1049h';
    for (let cut = 1; cut < seq.length; cut++) expect(fed('a' + seq.slice(0, cut), seq.slice(cut) + 'b'), `cut at ${cut}`).toBe('\x1b[?1049l\x1b[0m');
  });

  it('turns autowrap back on, and ignores modes it does not restore', () => {
    expect(fed('\x1b[?7l\x1b[?12h\x1b[?5h')).toBe('\x1b[?7h\x1b[0m');
  });

  it('holds bounded state however long the output', () => {
    const m = new TerminalModes();
    m.feed(Buffer.from('\x1b[?' + '1'.repeat(100_000), 'latin1'));
    m.feed(Buffer.from('h', 'latin1'));
    expect(m.restoreSequence()).toBe('');
  });
});
