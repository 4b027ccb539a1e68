// The terminal modes a session's program switched on in the user's terminal
// (alternate screen, hidden cursor, mouse reporting, bracketed paste,
// application keys), followed through the output the CLI writes, so that
// every way out of attach and exec --tty switches them off again: a user who
// detaches from vim is back on the main screen with a cursor, not stuck in
// vim's screen with a mouse that types escape codes.

/** DEC private modes whose non-default state would outlive the program; value: the default (true = set). */
export const DEC_DEFAULTS: ReadonlyMap<number, boolean> = new Map([
  [1, false], // application cursor keys
  [7, true], // autowrap
  [25, true], // cursor visible
  [47, false], // alternate screen (old)
  [1047, false], // alternate screen
  [1049, false], // alternate screen, cursor saved
  [9, false], // X10 mouse
  [1000, false], // mouse: press and release
  [1002, false], // mouse: drag
  [1003, false], // mouse: any motion
  [1004, false], // focus in/out reports
  [1005, false], // mouse: UTF-8 coordinates
  [1006, false], // mouse: SGR coordinates
  [1015, false], // mouse: urxvt coordinates
  [2004, false], // bracketed paste
]);
/** Where a DEC mode sequence starts; the rest is parsed by hand to keep it bounded. */
export const CSI_Q = '\x1b[?';
/** A sequence cut by a chunk boundary is kept for the next chunk, up to this long. */
export const MAX_CARRY = 64;
/** The alternate screens, switched off first and in this order: the main screen's modes are what the rest restores. */
export const ALT_SCREENS: readonly number[] = [1049, 1047, 47];
/** Keypad back to normal (after ESC =), and the attributes reset that ends a non-empty restore. */
export const KEYPAD_NORMAL = '\x1b>';
export const SGR_RESET = '\x1b[0m';
/** The native front end (native/src/front_tty.c) follows the same modes: its table is generated from these (src/cli/frontTable.ts). */

export class TerminalModes {
  /** Modes now away from their default. */
  private readonly changed = new Map<number, boolean>();
  private keypadApp = false;
  private carry = '';

  /** Follow one chunk of output on its way to the terminal. */
  feed(chunk: Uint8Array): void {
    if (this.carry === '' && chunk.indexOf(0x1b) < 0) return; // most output: no escape at all
    // latin1 keeps one char per byte: the sequences are ASCII, the rest is skipped over.
    const text = this.carry + Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('latin1');
    this.carry = '';
    let i = 0;
    for (;;) {
      const esc = text.indexOf('\x1b', i);
      if (esc < 0) return;
      if (esc + 1 >= text.length) return this.keep(text.slice(esc));
      const next = text[esc + 1];
      if (next === '=') this.keypadApp = true;
      else if (next === '>') this.keypadApp = false;
      else if (next === 'c') this.reset(); // RIS: the terminal is back to its defaults
      if (!text.startsWith(CSI_Q, esc)) {
        if (CSI_Q.startsWith(text.slice(esc))) return this.keep(text.slice(esc));
        i = esc + 1;
        continue;
      }
      let j = esc + CSI_Q.length;
      while (j < text.length && /[0-9;]/.test(text[j]!)) j++;
      if (j >= text.length) return this.keep(text.slice(esc));
      const final = text[j];
      if (final === 'h' || final === 'l') {
        for (const p of text.slice(esc + CSI_Q.length, j).split(';')) this.set(Number(p), final === 'h');
      }
      i = j + 1;
    }
  }

  /** The bytes that put every changed mode back to its default (empty when nothing changed). */
  restoreSequence(): string {
    let out = '';
    for (const alt of ALT_SCREENS) if (this.changed.get(alt) === true) out += `${CSI_Q}${alt}l`;
    // A mode is here only while it is away from its default: back to the default is the other letter.
    for (const [mode, on] of this.changed) if (!ALT_SCREENS.includes(mode)) out += `${CSI_Q}${mode}${on ? 'l' : 'h'}`;
    if (this.keypadApp) out += KEYPAD_NORMAL;
    return out ? `${out}${SGR_RESET}` : '';
  }

  private set(mode: number, on: boolean): void {
    const def = DEC_DEFAULTS.get(mode);
    if (def === undefined) return;
    if (on === def) this.changed.delete(mode);
    else this.changed.set(mode, on);
  }

  private reset(): void {
    this.changed.clear();
    this.keypadApp = false;
  }

  private keep(tail: string): void {
    this.carry = tail.length <= MAX_CARRY ? tail : '';
  }
}
