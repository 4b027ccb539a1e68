// Bounds what one byte of a session's output can cost the screen mirror.
// A few control sequences take a count and loop over it: `CSI n S/T` scroll,
// `CSI n L/M` insert or delete lines, `CSI n b` repeats the last character,
// `CSI n I/Z` move by tab stops. `CSI 30000000 S` is 12 bytes and kept the
// headless terminal busy for minutes. Counts beyond what the screen can show
// change nothing visible, so they are clamped (scrolls and lines to the row
// count, tabs and repeats to the column count) before the mirror parses
// them. Viewers get the session's bytes unchanged; only the mirror, which
// exists to redraw a screen, sees the clamped form. A streaming scanner: a
// sequence split across chunks is handled.
const ESC = 0x1b;
const CSI_C1 = 0x9b; // as a code point; in UTF-8 it arrives as C2 9B
const MAX_PARAM_BYTES = 64; // longer parameter strings pass through untouched

type State = 'text' | 'esc' | 'c2' | 'params';

export class CsiClamp {
  private state: State = 'text';
  /** The pending sequence's bytes (its introducer and parameters so far). */
  private seq: number[] = [];

  /** The bytes to feed the mirror for this chunk of output, for a cols x rows screen. */
  filter(input: Uint8Array, cols: number, rows: number): Uint8Array {
    // Plain text (the common case) is passed on in runs, not byte by byte.
    if (this.state === 'text' && input.indexOf(ESC) < 0 && input.indexOf(0xc2) < 0) return input;
    const out: number[] = [];
    const parts: Uint8Array[] = [];
    const spill = () => {
      if (out.length) parts.push(Uint8Array.from(out.splice(0)));
    };
    let i = 0;
    while (i < input.length) {
      if (this.state === 'text') {
        let next = input.indexOf(ESC, i);
        const c2 = input.indexOf(0xc2, i);
        if (next < 0 || (c2 >= 0 && c2 < next)) next = c2;
        const end = next < 0 ? input.length : next;
        if (end > i) {
          spill();
          parts.push(input.subarray(i, end));
        }
        if (next < 0) break;
        this.begin(input[next] === ESC ? 'esc' : 'c2', input[next]!);
        i = next + 1;
        continue;
      }
      const b = input[i++]!;
      if (this.state === 'esc' || this.state === 'c2') {
        if ((this.state === 'esc' && b === 0x5b) || (this.state === 'c2' && b === CSI_C1)) {
          this.seq.push(b);
          this.state = 'params';
        } else {
          this.flushTo(out);
          // Another ESC or C2 starts over; anything else is passed on.
          if (b === ESC) this.begin('esc', b);
          else if (b === 0xc2) this.begin('c2', b);
          else out.push(b);
        }
      } else if ((b >= 0x30 && b <= 0x39) || b === 0x3b) {
        this.seq.push(b);
        if (this.seq.length > MAX_PARAM_BYTES) this.flushTo(out);
      } else {
        this.finish(b, out, cols, rows);
      }
    }
    spill();
    if (parts.length === 1) return parts[0]!;
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) all.set(p, (at += p.length) - p.length);
    return all;
  }

  private begin(state: State, b: number): void {
    this.state = state;
    this.seq = [b];
  }

  private flushTo(out: number[]): void {
    for (const x of this.seq) out.push(x);
    this.seq = [];
    this.state = 'text';
  }

  /** `b` ends the parameters: a final byte we clamp for, or anything else (passed on as is). */
  private finish(b: number, out: number[], cols: number, rows: number): void {
    const limit = b === 0x53 || b === 0x54 || b === 0x4c || b === 0x4d ? rows : b === 0x62 || b === 0x49 || b === 0x5a ? cols : 0;
    const intro = 2; // ESC [, or C2 9B
    if (limit > 0) {
      const params = String.fromCharCode(...this.seq.slice(intro))
        .split(';')
        .map((p) => (p === '' ? p : String(Math.min(Number(p), limit))))
        .join(';');
      for (const x of this.seq.slice(0, intro)) out.push(x);
      for (let i = 0; i < params.length; i++) out.push(params.charCodeAt(i));
      out.push(b);
      this.seq = [];
      this.state = 'text';
      return;
    }
    this.flushTo(out);
    if (b === ESC) this.begin('esc', b);
    else if (b === 0xc2) this.begin('c2', b);
    else out.push(b);
  }
}
