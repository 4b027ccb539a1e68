// `enclave session exec`: stream a command's stdio over the exec WebSocket
// and exit with its code.
import type { Readable, Writable } from 'node:stream';
import { K8S_V5_PROTOCOL } from '../api/protocol.js';
import { execRequestPath, pumpExec } from '../client/exec.js';
import { openWebSocket } from '../client/transport.js';
import { asCliError, connection } from './client.js';

export interface ExecArgs {
  socket: string;
  session: string;
  command: string[];
  env: string[];
  cwd?: string | undefined;
  /** -u: the session's user it runs as (NAME, UID, NAME:GROUP, UID:GID). */
  user?: string | undefined;
  /** Where stdin comes from (-i: this process's); none: the command reads /dev/null, as docker exec without -i. */
  stdin?: Readable | undefined;
  /** Where the command's stderr and the reason it failed go (default: this process's stderr). */
  stderr?: Writable;
  /** Told why the command failed, when its status says more than its code (it was killed out of memory). */
  onReason?: (reason: string) => void;
}

/** The reason a failure status carries besides its exit code (the daemon's OOMKilled cause). */
export function reasonOf(status: { details?: { causes?: { reason: string; message: string }[] | undefined } | undefined }): string | undefined {
  return status.details?.causes?.find((c) => c.reason === 'OOMKilled')?.message;
}

export function execPath(a: Omit<ExecArgs, 'socket' | 'stdin'> & { stdin: boolean }, extra: { tty?: '1'; cols?: number; rows?: number } = {}): string {
  return execRequestPath({ session: a.session, command: a.command, env: a.env, cwd: a.cwd, user: a.user, stdin: a.stdin, tty: extra.tty ? { cols: extra.cols, rows: extra.rows } : undefined });
}

export function runExecClient(a: ExecArgs): Promise<number> {
  const stdin = a.stdin;
  const errors = a.stderr ?? process.stderr;
  const conn = connection(a.socket);
  const ws = openWebSocket(conn, execPath({ ...a, stdin: stdin !== undefined }), [K8S_V5_PROTOCOL]);
  return pumpExec(ws, conn, { stdin, stdout: process.stdout, stderr: errors })
    .then(
      (o) => {
        const reason = reasonOf(o.status);
        if (reason) {
          if (a.onReason) a.onReason(reason);
          else errors.write(`enclave: ${reason}\n`);
        }
        return o.exitCode;
      },
      (e: unknown) => Promise.reject(asCliError(e)),
    )
    .finally(() => {
      if (stdin === process.stdin) process.stdin.unref?.();
    });
}
