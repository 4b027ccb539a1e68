// `session logs`: terminal output as text, escape sequences stripped, also
// when a sequence is split across chunks.
import { describe, expect, it } from 'vitest';
import { PlainText, skipPartialCharacter } from '../../src/terminal/plainText.js';

const strip = (...chunks: string[]) => {
  const t = new PlainText();
  return chunks.map((c) => t.push(Buffer.from(c, 'utf8')).toString('utf8')).join('');
};

describe('terminal output as text', () => {
  it('keeps text, TABs and newlines; CRLF becomes LF, a lone CR a line break', () => {
    expect(strip('a\tb\r\nc\n')).toBe('a\tb\nc\n');
    expect(strip(' 10%\r 20%\r100%\r\n')).toBe(' 10%\n 20%\n100%\n');
    expect(strip('x\r\r\n')).toBe('x\n');
  });

  it('strips colours, cursor moves, erases and modes (CSI), whole', () => {
    expect(strip('\x1b[1;31mred\x1b[0m plain \x1b[2K\x1b[10;20H\x1b[?2004hend')).toBe('red plain end');
    expect(strip('\x1b[?1049h\x1b[>4;1m\x1b[ qok')).toBe('ok');
  });

  it('strips window titles and hyperlink targets (OSC, ended by BEL or ST), keeping a link\'s text', () => {
    expect(strip('\x1b]0;user@host: ~\x07$ ls\n')).toBe('$ ls\n');
    expect(strip('\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\ done')).toBe('link done');
  });

  it('strips DCS, APC and PM strings, two-byte escapes, charset selection and controls but TAB and LF', () => {
    expect(strip('\x1bP1$r0m\x1b\\a\x1b_apc\x1b\\b\x1b^pm\x1b\\c')).toBe('abc');
    expect(strip('\x1b7\x1b8\x1b=\x1b>\x1b(B\x1b)0x\x07\x08\x0e\x0f\x00\x7fy')).toBe('xy');
  });

  it('strips a sequence split across chunks, byte by byte', () => {
    const input = '\x1b[38;5;196mhot\x1b[0m\r\n\x1b]2;title\x1b\\done\r';
    const t = new PlainText();
    let out = '';
    for (const b of Buffer.from(input)) out += t.push(Buffer.from([b])).toString();
    expect(out).toBe('hot\ndone');
  });

  it('passes UTF-8 through, and a ring that starts mid-character loses only that character', () => {
    expect(strip('€ 😀 ü\n')).toBe('€ 😀 ü\n');
    expect(skipPartialCharacter(Buffer.from('😀x').subarray(2)).toString()).toBe('x');
    expect(skipPartialCharacter(Buffer.from('ok')).toString()).toBe('ok');
  });

  it('gives up on an unterminated string, so it cannot swallow the rest of the log', () => {
    const out = strip('\x1b]0;' + 'x'.repeat(5000), 'after\n');
    expect(out.endsWith('after\n')).toBe(true);
    expect(out.length).toBeLessThan(1000);
  });
});
