// Terminal output as a log: the bytes a console's shell wrote, less what only
// a terminal acts on. Stripped: CSI sequences (colours, cursor moves, erases,
// modes: ESC [ ... final), OSC strings (window titles, hyperlink targets: ESC ]
// ... BEL or ESC \), DCS, SOS, PM and APC strings (ESC P/X/^/_ ... ESC \), the
// other ESC sequences (charsets, keypad modes, save/restore cursor: ESC,
// intermediates, final), and every C0 control but TAB and LF (BEL, backspace,
// shift in/out, ...); a CR before LF goes, a CR on its own (a line drawn over,
// as progress bars do) becomes a line break. Nothing is rendered: text a
// full-screen program places with cursor moves comes out in the order it was
// written. UTF-8 passes through untouched (8-bit C1 controls are not looked
// for: in UTF-8 output they would be multi-byte). Stateful: a sequence split
// across chunks is stripped whole; a string longer than MAX_STRING bytes is
// given up on, so one unterminated sequence cannot swallow the rest.
const ESC = 0x1b;
const MAX_STRING = 4096;
const MAX_CSI = 256;

const enum State {
  Ground,
  Esc,
  EscIntermediate,
  Csi,
  /** OSC (ends at BEL too) or DCS/SOS/PM/APC (ESC \ only; BEL also accepted). */
  String,
  StringEsc,
}

export class PlainText {
  private state = State.Ground;
  private length = 0;
  /** A CR seen in text: a line break unless LF follows. */
  private cr = false;

  /** The text of the next chunk of output. */
  push(chunk: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(chunk.length * 2); // a pending CR adds at most one LF per byte
    let n = 0;
    for (const b of chunk) {
      switch (this.state) {
        case State.Ground:
          if (b === ESC) {
            this.state = State.Esc;
          } else if (b === 0x0d) {
            this.cr = true;
          } else if (b === 0x0a) {
            this.cr = false;
            out[n++] = b;
          } else if (b === 0x09 || (b >= 0x20 && b !== 0x7f)) {
            if (this.cr) {
              out[n++] = 0x0a;
              this.cr = false;
            }
            out[n++] = b;
          }
          break;
        case State.Esc:
          this.length = 0;
          if (b === 0x5b) this.state = State.Csi;
          else if (b === 0x5d || b === 0x50 || b === 0x58 || b === 0x5e || b === 0x5f) this.state = State.String;
          else if (b >= 0x20 && b <= 0x2f) this.state = State.EscIntermediate;
          else if (b === ESC) this.state = State.Esc;
          else this.state = State.Ground; // a final byte, or CAN/SUB and other controls: the sequence ends
          break;
        case State.EscIntermediate:
          if (b >= 0x30 && b <= 0x7e) this.state = State.Ground;
          else if (b === ESC) this.state = State.Esc;
          else if ((b < 0x20 && b !== ESC) || ++this.length > MAX_CSI) this.state = State.Ground;
          break;
        case State.Csi:
          if (b >= 0x40 && b <= 0x7e) this.state = State.Ground;
          else if (b === ESC) this.state = State.Esc;
          else if (b === 0x18 || b === 0x1a || ++this.length > MAX_CSI) this.state = State.Ground;
          break;
        case State.String:
          if (b === 0x07) this.state = State.Ground;
          else if (b === ESC) this.state = State.StringEsc;
          else if (++this.length > MAX_STRING) this.state = State.Ground;
          break;
        case State.StringEsc:
          // ESC \ ends it; ESC and anything else starts a new sequence.
          if (b === 0x5c) this.state = State.Ground;
          else {
            this.state = State.Esc;
            this.length = 0;
            if (b === 0x5b) this.state = State.Csi;
            else if (b === 0x5d || b === 0x50 || b === 0x58 || b === 0x5e || b === 0x5f) this.state = State.String;
            else if (b >= 0x20 && b <= 0x2f) this.state = State.EscIntermediate;
            else if (b !== ESC) this.state = State.Ground;
          }
          break;
      }
    }
    return out.subarray(0, n);
  }
}

/** Leading UTF-8 continuation bytes (a ring that starts mid-character). */
export function skipPartialCharacter(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length && i < 3 && (b[i]! & 0xc0) === 0x80) i++;
  return b.subarray(i);
}
