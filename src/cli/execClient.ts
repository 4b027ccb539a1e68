// `enclave session exec`: stream a command's stdio over the exec WebSocket
// and exit with its code.
import type { Readable, Writable } from 'node:stream';
import WebSocket from 'ws';
import { execStatusSchema } from '../api/schemas.js';
import { Channel, K8S_V5_PROTOCOL } from '../api/protocol.js';
import { decodeFrame, encodeFrame, exitCodeOf } from '../terminal/channels.js';
import { ROUTES } from '../api/routes.js';
import { CliError, onUpgradeFailure, routePath } from './client.js';

export interface ExecArgs {
  socket: string;
  session: string;
  command: string[];
  env: string[];
  cwd?: string | undefined;
  /** Where stdin comes from (default: this process's). */
  stdin?: Readable;
  /** Where the command's stderr and the reason it failed go (default: this process's stderr). */
  stderr?: Writable;
  /** Told why the command failed, when its status says more than its code (it was killed out of memory). */
  onReason?: (reason: string) => void;
}

/** The reason a failure status carries besides its exit code (the daemon's OOMKilled cause). */
export function reasonOf(status: { details?: { causes?: { reason: string; message: string }[] | undefined } | undefined }): string | undefined {
  return status.details?.causes?.find((c) => c.reason === 'OOMKilled')?.message;
}

export function execPath(a: Omit<ExecArgs, 'socket'>, extra: { tty?: '1'; cols?: number; rows?: number } = {}): string {
  return routePath(ROUTES.exec, { params: { session: a.session }, query: { command: a.command, env: a.env, cwd: a.cwd, stdin: '1', ...extra } });
}

export function runExecClient(a: ExecArgs): Promise<number> {
  const stdin = a.stdin ?? process.stdin;
  const errors = a.stderr ?? process.stderr;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${a.socket}:${execPath(a)}`, [K8S_V5_PROTOCOL], { perMessageDeflate: false });
    let code: number | undefined;
    onUpgradeFailure(ws, a.socket, 'exec connection', reject);
    ws.on('open', () => {
      stdin.on('data', (chunk: Buffer) => {
        ws.send(encodeFrame(Channel.stdin, chunk));
        // Do not read faster than the socket drains.
        if (ws.bufferedAmount > 1024 * 1024) {
          stdin.pause();
          const wait = setInterval(() => {
            if (ws.bufferedAmount < 256 * 1024 || ws.readyState !== ws.OPEN) {
              clearInterval(wait);
              stdin.resume();
            }
          }, 5);
        }
      });
      stdin.on('end', () => {
        if (ws.readyState === ws.OPEN) ws.send(Buffer.from([Channel.close, Channel.stdin]));
      });
      stdin.on('error', () => undefined);
    });
    ws.on('message', (data: Buffer) => {
      const f = decodeFrame(data);
      if (!f) return;
      const out = f.channel === Channel.stdout ? process.stdout : f.channel === Channel.stderr ? errors : undefined;
      if (out) {
        if (!out.write(f.payload)) {
          ws.pause();
          out.once('drain', () => ws.resume());
        }
      } else if (f.channel === Channel.status) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(f.payload.toString('utf8'));
        } catch {
          parsed = undefined;
        }
        const st = execStatusSchema.safeParse(parsed);
        code = st.success ? exitCodeOf(st.data) : undefined;
        const reason = st.success ? reasonOf(st.data) : undefined;
        if (reason) {
          if (a.onReason) a.onReason(reason);
          else errors.write(`enclave: ${reason}\n`);
        }
      }
    });
    ws.on('close', () => {
      stdin.pause();
      if (stdin === process.stdin) process.stdin.unref?.();
      if (code === undefined) reject(new CliError('the exec stream ended without an exit status'));
      else resolve(code);
    });
  });
}
