// The exec stream (v5.channel.k8s.io over the exec WebSocket), shared by
// `enclave session exec` and the client library: stdin goes in as channel 0
// frames no faster than the socket drains, then a close of channel 0 (EOF);
// channels 1 and 2 go to their sinks, paused while a sink is full; the
// status on channel 3 is the exit code.
import type { Readable } from 'node:stream';
import type WebSocket from 'ws';
import { ROUTES } from '../api/routes.js';
import { Channel } from '../api/protocol.js';
import { decodeFrame, encodeFrame, exitCodeOf } from '../api/frames.js';
import { execStatusSchema, type ExecStatus } from '../api/schemas.js';
import { ProtocolError } from './errors.js';
import { onUpgradeFailure, routePath, type Connection } from './transport.js';

/** Where output goes: process.stdout, a PassThrough, a collector. */
export interface Sink {
  write(chunk: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
}

export interface ExecPipes {
  /** The command's stdin: a stream (EOF at its end), bytes (then EOF), or none (the query says stdin=0). */
  stdin?: Readable | Uint8Array | undefined;
  stdout: Sink;
  stderr: Sink;
}

export interface ExecOutcome {
  exitCode: number;
  /** The status as the daemon sent it (its causes may say more than the code). */
  status: ExecStatus;
}

export interface ExecRequest {
  session: string;
  command: string[];
  env?: string[] | undefined;
  cwd?: string | undefined;
  /** The session's user it runs as: NAME, UID, NAME:GROUP or UID:GID (docker's exec -u); absent: root. */
  user?: string | undefined;
  /** Whether stdin is forwarded (else the command reads /dev/null). */
  stdin: boolean;
  /** A terminal of its own, of this size. */
  tty?: { cols?: number | undefined; rows?: number | undefined } | undefined;
}

/** The exec route's request line. */
export function execRequestPath(r: ExecRequest): string {
  const tty = r.tty ? { tty: '1' as const, cols: r.tty.cols, rows: r.tty.rows } : {};
  return routePath(ROUTES.exec, { params: { session: r.session }, query: { command: r.command, env: r.env ?? [], cwd: r.cwd, user: r.user, stdin: r.stdin ? '1' : '0', ...tty } });
}

/** Frames stay well under the daemon's 1 MiB message limit. */
const FRAME_BYTES = 64 * 1024;
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

function sendStdin(ws: WebSocket, chunk: Uint8Array): void {
  for (let at = 0; at < chunk.length; at += FRAME_BYTES) ws.send(encodeFrame(Channel.stdin, chunk.subarray(at, at + FRAME_BYTES)));
}

const EOF = Buffer.from([Channel.close, Channel.stdin]);

function pumpStdin(ws: WebSocket, stdin: Readable): void {
  stdin.on('data', (chunk: Buffer) => {
    sendStdin(ws, chunk);
    // Do not read faster than the socket drains.
    if (ws.bufferedAmount > HIGH_WATER) {
      stdin.pause();
      const wait = setInterval(() => {
        if (ws.bufferedAmount < LOW_WATER || ws.readyState !== ws.OPEN) {
          clearInterval(wait);
          stdin.resume();
        }
      }, 5);
    }
  });
  stdin.on('end', () => {
    if (ws.readyState === ws.OPEN) ws.send(EOF);
  });
  stdin.on('error', () => undefined);
}

/** The status a channel-3 payload carries, if it is one. */
export function parseStatus(payload: Buffer): ExecStatus | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  const st = execStatusSchema.safeParse(parsed);
  return st.success ? st.data : undefined;
}

/**
 * Run an exec WebSocket to its end: resolves with the exit code once the
 * socket closes after a status; rejects with the typed error of a refused
 * upgrade or a failed connection, or if it closes without a status.
 */
export function pumpExec(ws: WebSocket, conn: Connection, pipes: ExecPipes): Promise<ExecOutcome> {
  const { stdin } = pipes;
  return new Promise((resolve, reject) => {
    let outcome: ExecOutcome | undefined;
    onUpgradeFailure(ws, conn, 'exec connection', reject);
    ws.on('open', () => {
      if (stdin instanceof Uint8Array) {
        if (stdin.length) sendStdin(ws, stdin);
        ws.send(EOF);
      } else if (stdin) pumpStdin(ws, stdin);
    });
    ws.on('message', (data: Buffer) => {
      const f = decodeFrame(data);
      if (!f) return;
      const out = f.channel === Channel.stdout ? pipes.stdout : f.channel === Channel.stderr ? pipes.stderr : undefined;
      if (out) {
        if (!out.write(f.payload)) {
          ws.pause();
          out.once('drain', () => ws.resume());
        }
      } else if (f.channel === Channel.status) {
        const status = parseStatus(f.payload);
        const exitCode = status ? exitCodeOf(status) : undefined;
        outcome = status && exitCode !== undefined ? { exitCode, status } : undefined;
      }
    });
    ws.on('close', () => {
      if (stdin && !(stdin instanceof Uint8Array)) stdin.pause();
      if (outcome) resolve(outcome);
      else reject(new ProtocolError('the exec stream ended without an exit status'));
    });
  });
}
