// Exec over WebSocket: the session's init forks the command inside the
// session with our pipes as its stdio; the pipes are carried on Kubernetes
// v5 channels and the exit status on channel 3.
import { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { ExecQuery, ExecStatus } from '../api/schemas.js';
import { addon } from '../native/addon.js';
import { startFailureError, type ExitReport, type SessionAgent } from '../sessions/agent.js';
import { commandCwd, commandEnv } from '../sessions/command.js';
import { Channel, decodeFrame, encodeFrame, exitStatusFor } from '../terminal/channels.js';

/** Output queued in the socket beyond this pauses the command's pipes. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
/** After the command exits, output still arriving within this keeps the stream open. */
const DRAIN_IDLE_MS = 300;
const KILL_GRACE_MS = 2000;

export type PipedExec =
  | { ok: true; agent: SessionAgent; id: string; stdin: Socket | undefined; stdout: Socket; stderr: Socket; exited: Promise<ExitReport | null> }
  | { ok: false; exitCode: number; message: string };

/**
 * Start the command before the WebSocket upgrade, so a bad cwd or a session
 * that cannot fork is an HTTP error, not a half-open stream.
 */
export async function startPipedExec(agent: SessionAgent, hostname: string, q: ExecQuery): Promise<PipedExec> {
  const a = addon();
  const pipes = { stdin: q.stdin ? a.pipe() : undefined, stdout: a.pipe(), stderr: a.pipe() };
  const theirs = [...(pipes.stdin ? [pipes.stdin[0]] : []), pipes.stdout[1], pipes.stderr[1]];
  const ours = [...(pipes.stdin ? [pipes.stdin[1]] : []), pipes.stdout[0], pipes.stderr[0]];
  try {
    const { id, exited } = await agent
      .start({ tty: false, argv: q.command, env: commandEnv(hostname, q), cwd: commandCwd(q), user: q.user, cols: 0, rows: 0, fds: theirs, stdin: q.stdin })
      .finally(() => theirs.forEach((fd) => a.closeFd(fd)));
    return {
      ok: true,
      agent,
      id,
      stdin: pipes.stdin ? new Socket({ fd: pipes.stdin[1], readable: false, writable: true }) : undefined,
      stdout: new Socket({ fd: pipes.stdout[0], readable: true, writable: false }),
      stderr: new Socket({ fd: pipes.stderr[0], readable: true, writable: false }),
      exited,
    };
  } catch (e) {
    ours.forEach((fd) => a.closeFd(fd));
    const mapped = startFailureError(e, q.command[0]!);
    if ('exitCode' in mapped) return { ok: false, exitCode: mapped.exitCode, message: `enclave: ${mapped.message}\n` };
    throw mapped;
  }
}

export interface ExecOptions {
  ws: WebSocket;
  exec: PipedExec;
  stdout: boolean;
  stderr: boolean;
  log: Logger;
  /** Why a command that failed did, when it was not only its code: the session ran out of memory meanwhile. */
  reason?: (exit: ExitReport) => string | undefined;
  /**
   * At most this many bytes either way (output sent plus input taken): past
   * it the command is killed and the client told which key set the cap.
   */
  cap?: { bytes: number; key: string };
}

/** OOM kills in the session while a command ran, as the manager reports them (src/sessions/manager.ts oomSince). */
export interface OomSince {
  added: number;
  victim: { command: string | null; pid: number | null } | null;
  limitMb: number;
}

/**
 * The reason a failed command gets when the kernel OOM-killed in its session
 * while it ran: `killed: out of memory` when SIGKILL ended the command itself,
 * else the victim its failure followed from (a pipeline's other end, say).
 */
export function oomReason(oom: OomSince | undefined, exit: ExitReport): string | undefined {
  if (!oom) return undefined;
  const victim = oom.victim?.command ? `${oom.victim.command}${oom.victim.pid !== null ? `, host pid ${oom.victim.pid}` : ''}` : undefined;
  const limit = `the session's memory limit is ${oom.limitMb} MiB`;
  if (exit.signal === 9) return `killed: out of memory (${limit}${victim ? `; the kernel's last victim: ${victim}` : ''})`;
  return `out of memory: the kernel killed ${victim ? `${victim}` : `${oom.added} process${oom.added === 1 ? '' : 'es'}`} in the session while the command ran (${limit})`;
}

/** A failure status with a reason besides its code: in the message and as a cause, so Kubernetes clients keep the exit code. */
export function withReason(status: ExecStatus, reason: string | undefined): ExecStatus {
  if (!reason || status.status !== 'Failure') return status;
  return { ...status, message: `${status.message}: ${reason}`, details: { ...status.details, causes: [...(status.details?.causes ?? []), { reason: 'OOMKilled', message: reason }] } };
}

export function runExec({ ws, exec, stdout, stderr, log, reason, cap }: ExecOptions): void {
  if (!exec.ok) {
    ws.send(encodeFrame(Channel.stderr, Buffer.from(exec.message)));
    ws.send(encodeFrame(Channel.status, Buffer.from(JSON.stringify(exitStatusFor(exec.exitCode, null)))));
    ws.close(1000);
    return;
  }
  const outputs = [exec.stdout, exec.stderr];
  let queued = 0;
  let paused = false;
  let exit: ExitReport | undefined;
  let open = 0;
  let drainTimer: NodeJS.Timeout | undefined;
  let finished = false;
  let moved = 0;
  let capped = false;

  /** Count bytes against the cap; false once it is passed (the command is then killed). */
  const within = (n: number): boolean => {
    if (!cap || capped) return !capped;
    moved += n;
    if (moved <= cap.bytes) return true;
    capped = true;
    log.warn({ bytes: moved, key: cap.key }, 'stream stopped at its cap');
    for (const s of outputs) s.pause();
    exec.stdin?.destroy();
    if (ws.readyState === ws.OPEN) ws.send(encodeFrame(Channel.stderr, Buffer.from(`enclave: the stream passed ${(cap.bytes / 1048576).toFixed(0)} MiB (${cap.key}): stopped\n`)));
    exec.agent.signal(exec.id, 9);
    return false;
  };

  const finish = () => {
    if (finished || !exit) return;
    finished = true;
    clearTimeout(drainTimer);
    for (const s of outputs) s.destroy();
    exec.stdin?.destroy();
    let why: string | undefined;
    try {
      why = reason?.(exit);
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'cannot tell why the command failed');
    }
    const status = withReason(exitStatusFor(exit.code, exit.signal), why);
    log.debug({ exit }, 'exec finished');
    // Paused for stdin backpressure, the socket would never read the client's
    // close reply; the close handshake would then hang until its timeout.
    ws.resume();
    if (ws.readyState === ws.OPEN) {
      ws.send(encodeFrame(Channel.status, Buffer.from(JSON.stringify(status))));
      ws.close(1000);
    }
  };

  // A background process may keep a pipe open after the command exits; stop
  // waiting once output has been idle for a moment (and is not backed up).
  const armDrain = () => {
    if (!exit || finished) return;
    clearTimeout(drainTimer);
    if (open === 0) return finish();
    drainTimer = setTimeout(() => (paused ? armDrain() : finish()), DRAIN_IDLE_MS);
  };

  const forward = (stream: Socket, channel: number, wanted: boolean) => {
    open++;
    stream.on('data', (chunk: Buffer) => {
      if (!wanted || ws.readyState !== ws.OPEN || !within(chunk.length)) return;
      queued += chunk.length;
      ws.send(encodeFrame(channel, chunk), { binary: true }, () => {
        queued -= chunk.length;
        if (paused && queued < LOW_WATER) {
          paused = false;
          // Past the cap the pipes stay paused until the command is gone.
          if (!capped) for (const s of outputs) s.resume();
          armDrain();
        }
      });
      if (!paused && queued > HIGH_WATER) {
        paused = true;
        for (const s of outputs) s.pause();
      }
      armDrain();
    });
    stream.on('end', () => {
      open--;
      armDrain();
    });
    stream.on('error', () => undefined);
  };
  forward(exec.stdout, Channel.stdout, stdout);
  forward(exec.stderr, Channel.stderr, stderr);

  void exec.exited.then((e) => {
    // null: the session ended under the command; report it as killed.
    exit = e ?? { code: null, signal: 9 };
    armDrain();
  });

  const input = exec.stdin;
  if (input) {
    input.on('error', () => undefined); // the command may close stdin early
    // A closed pipe never emits 'drain': stop holding the socket for it.
    input.on('close', () => ws.resume());
  }

  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary) return; // protocol is binary only
    const frame = decodeFrame(data);
    if (!frame || !input) return;
    // Once the command is gone (or closed stdin) its input is dropped: a dead
    // pipe never drains, and pausing for it would stall the socket.
    if (finished || !input.writable) return;
    if (frame.channel === Channel.stdin) {
      if (!within(frame.payload.length)) return;
      if (!input.write(frame.payload)) {
        ws.pause();
        input.once('drain', () => ws.resume());
      }
    } else if (frame.channel === Channel.close && frame.payload[0] === Channel.stdin) {
      input.end();
    }
  });

  ws.on('close', () => {
    if (exit) return;
    // The client went away: end the command's process group (SIGTERM, then
    // SIGKILL). The init reaps it, whatever it ignores.
    exec.agent.signal(exec.id, 15);
    setTimeout(() => {
      if (!exit) exec.agent.signal(exec.id, 9);
    }, KILL_GRACE_MS).unref();
  });
}
