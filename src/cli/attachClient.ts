// `enclave session attach`: the session console in this terminal. Raw mode,
// SIGWINCH resizes, detach keys leave the shell running, the shell's exit
// code becomes ours; the terminal is restored on every way out.
import { ATTACH_PROTOCOL, Channel } from '../api/protocol.js';
import { decodeFrame, encodeFrame, exitCodeOf } from '../api/frames.js';
import { ROUTES } from '../api/routes.js';
import { parseStatus } from '../client/exec.js';
import { openWebSocket } from '../client/transport.js';
import { CliError, connection, onUpgradeFailure, routePath } from './client.js';
import { writeSync } from 'node:fs';
import { execPath } from './execClient.js';
import { TerminalModes } from './terminalModes.js';

/** The detach keys without --detach-keys, and what a detach prints after the terminal is restored (the native front end's are generated from these). */
export const DEFAULT_DETACH_KEYS = 'ctrl-p,ctrl-q';
export const DETACHED_MESSAGE = '\r\n[detached: the shell keeps running; attach again to return]\r\n';

/** "ctrl-p,ctrl-q" -> [0x10, 0x11]; single characters stand for themselves. */
export function parseDetachKeys(spec: string): number[] {
  const keys = spec.split(',').map((k) => k.trim().toLowerCase());
  if (keys.length === 0 || keys.some((k) => k === '')) throw new CliError('--detach-keys: give keys like ctrl-p,ctrl-q', 2);
  return keys.map((k) => {
    const m = /^ctrl-([a-z@\[\\\]^_])$/.exec(k);
    if (m) return m[1]!.toUpperCase().charCodeAt(0) & 0x1f;
    if (k.length === 1) return k.charCodeAt(0);
    throw new CliError(`--detach-keys: '${k}' is not ctrl-<letter> or a single character`, 2);
  });
}

/** Feeds input through a detach-sequence matcher: passes bytes on, holding a partial match. */
export class DetachMatcher {
  private held: number[] = [];
  constructor(private readonly seq: number[]) {}

  /** Returns the bytes to send, and whether the full sequence was typed. */
  feed(chunk: Uint8Array): { send: Buffer; detach: boolean } {
    const out: number[] = [];
    for (const b of chunk) {
      if (b === this.seq[this.held.length]) {
        this.held.push(b);
        if (this.held.length === this.seq.length) return { send: Buffer.from(out), detach: true };
      } else {
        out.push(...this.held);
        this.held = [];
        if (b === this.seq[0]) this.held.push(b);
        else out.push(b);
      }
    }
    return { send: Buffer.from(out), detach: false };
  }
}

export interface AttachArgs {
  socket: string;
  session: string;
  readOnly: boolean;
  detachKeys: string;
  /** Send what is typed (exec -t without -i: no; attach: yes, unless readOnly). */
  input: boolean;
  /** exec --tty: run this in a one-off terminal instead of attaching to the console. */
  exec?: { command: string[]; env: string[]; cwd?: string | undefined; user?: string | undefined };
}

/** The size to ask for: a terminal that reports 0x0 (script(1) without a size, serial lines) gets 80x24; at most what the API allows. */
export function terminalSize(columns: number | undefined, rows: number | undefined): { cols: number; rows: number } {
  const pick = (v: number | undefined, fallback: number, max: number) => Math.min(max, v && v > 0 ? Math.floor(v) : fallback);
  return { cols: pick(columns, 80, 1000), rows: pick(rows, 24, 500) };
}

export function runAttachClient(a: AttachArgs): Promise<number> {
  const matcher = new DetachMatcher(parseDetachKeys(a.detachKeys));
  const stdin = process.stdin;
  const stdout = process.stdout;
  // exec -t without -i reads nothing: the terminal stays as it is and Ctrl-C ends this client, as with docker.
  const tty = stdin.isTTY === true && a.input;
  const modes = new TerminalModes();
  const restore = () => {
    if (tty && stdin.isRaw) stdin.setRawMode(false);
    // What the program left switched on (alternate screen, hidden cursor, mouse...), switched off; written at once, also on 'exit'.
    const undo = stdout.isTTY ? modes.restoreSequence() : '';
    if (undo) {
      modes.feed(Buffer.from(undo, 'latin1'));
      try {
        writeSync(stdout.fd, undo);
      } catch {
        /* the terminal is gone */
      }
    }
  };
  process.once('exit', restore);

  return new Promise((resolve, reject) => {
    const size = () => terminalSize(stdout.columns, stdout.rows);
    // exec --tty: the exec endpoint with tty=1; otherwise the session console.
    const sized = stdout.isTTY ? size() : {};
    const path = a.exec
      ? execPath({ session: a.session, ...a.exec, stdin: a.input }, { tty: '1', ...sized })
      : routePath(ROUTES.attach, { params: { session: a.session }, query: { role: a.readOnly ? 'ro' : 'rw', ...sized } });
    const ws = openWebSocket(connection(a.socket), path, [ATTACH_PROTOCOL]);
    let code: number | undefined;
    let detached = false;
    let offset = 0;
    let acked = 0;
    const done = (fn: () => void) => {
      restore();
      process.removeListener('SIGWINCH', onResize);
      stdin.pause();
      fn();
    };
    const onResize = () => {
      if (ws.readyState === ws.OPEN) ws.send(encodeFrame(Channel.resize, Buffer.from(JSON.stringify({ Width: size().cols, Height: size().rows }))));
    };

    onUpgradeFailure(ws, a.socket, 'attach', (e) => done(() => reject(e)));
    ws.on('open', () => {
      if (tty) stdin.setRawMode(true);
      process.on('SIGWINCH', onResize);
      if (!a.input) return;
      stdin.on('data', (chunk: Buffer) => {
        const { send, detach } = matcher.feed(chunk);
        if (send.length && !a.readOnly) ws.send(encodeFrame(Channel.stdin, send));
        if (detach) {
          detached = true;
          ws.close(1000, 'detached');
        }
      });
      stdin.resume();
    });
    ws.on('message', (data: Buffer) => {
      const f = decodeFrame(data);
      if (!f) return;
      if (f.channel === Channel.stdout) {
        modes.feed(f.payload);
        const n = f.payload.length;
        const ok = stdout.write(f.payload, () => {
          offset += n;
          // Acknowledge what reached the terminal, in batches.
          if (offset - acked >= 256 * 1024 && ws.readyState === ws.OPEN) {
            acked = offset;
            ws.send(encodeFrame(Channel.ack, Buffer.from(String(offset))));
          }
        });
        if (!ok) {
          ws.pause();
          stdout.once('drain', () => ws.resume());
        }
      } else if (f.channel === Channel.snapshot) {
        // The screen as it is now, drawn on a cleared terminal; not part of the offset.
        modes.feed(f.payload);
        stdout.write(Buffer.concat([Buffer.from('\x1b[0m\x1b[H\x1b[2J'), f.payload]));
      } else if (f.channel === Channel.events) {
        try {
          const e = JSON.parse(f.payload.toString('utf8')) as { type?: string; offset?: number };
          if (e.type === 'hello' && typeof e.offset === 'number') offset = acked = e.offset;
        } catch {
          /* an event we do not understand */
        }
      } else if (f.channel === Channel.status) {
        const st = parseStatus(f.payload);
        code = st ? exitCodeOf(st) : undefined;
      }
    });
    ws.on('close', (closeCode: number, reason: Buffer) => {
      done(() => {
        if (detached) {
          stdout.write(DETACHED_MESSAGE);
          resolve(0);
        } else if (code !== undefined) resolve(code);
        else reject(new CliError(`the console connection closed (${closeCode}${reason.length ? `: ${reason.toString()}` : ''})`));
      });
    });
  });
}
