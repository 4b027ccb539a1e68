// Whether a client left the user's terminal as it found it, read the way a
// terminal reads it: the output replayed into a headless xterm. Shared by
// the Node CLI's attach tests and the native front end's.
import { expect } from 'vitest';
import xtermHeadless from '@xterm/headless';

/**
 * What vim or less switch on (alternate screen, cursor keys, keypad, hidden
 * cursor, mouse, bracketed paste), as a printf of a program that never
 * switches them off; then `tag`, which starts with I (typed, it reads
 * \\111..., so the echo of the line is not the tag) and `end`.
 */
export const modesOnPrintf = (tag: string, end = ''): string => `printf '\\033[?1049h\\033[?1h\\033=\\033[?25l\\033[?1000;1006h\\033[?2004h\\111${tag.slice(1)}${end}'`;

/** The terminal after this output: back on the main screen, normal keys, no mouse, no bracketed paste, the cursor shown. */
export async function expectRestored(out: string): Promise<void> {
  const t = new xtermHeadless.Terminal({ cols: 100, rows: 30, allowProposedApi: true });
  await new Promise<void>((r) => t.write(out, r));
  expect(out).toContain('INSIDE');
  expect(t.buffer.active.type).toBe('normal');
  expect(t.modes.applicationCursorKeysMode).toBe(false);
  expect(t.modes.applicationKeypadMode).toBe(false);
  expect(t.modes.mouseTrackingMode).toBe('none');
  expect(t.modes.bracketedPasteMode).toBe(false);
  // The cursor shown again after it was hidden.
  expect(out.lastIndexOf('\x1b[?25h')).toBeGreaterThan(out.lastIndexOf('\x1b[?25l'));
  t.dispose();
}
