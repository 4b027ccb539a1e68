// Exec over WebSocket: one enclave-enter process per connection, its stdio
// carried on Kubernetes v5 channels, its exit status on channel 3.
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { EnterCommand } from '../sessions/enter.js';
import { Channel, decodeFrame, encodeFrame, exitStatusFor } from '../terminal/channels.js';
import { constants } from 'node:os';

/** Output queued in the socket beyond this pauses the command's pipes. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
/** After the command exits, output still arriving within this keeps the stream open. */
const DRAIN_IDLE_MS = 300;
const KILL_GRACE_MS = 2000;

export interface ExecOptions {
  ws: WebSocket;
  command: EnterCommand;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  log: Logger;
}

export function runExec({ ws, command, stdin, stdout, stderr, log }: ExecOptions): void {
  const child = spawn(command.file, command.args, {
    // Its own session: the daemon's controlling terminal stays with the daemon.
    detached: true,
    env: command.env,
    stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  const outputs: Readable[] = [child.stdout!, child.stderr!];
  let queued = 0;
  let paused = false;
  let exit: { code: number | null; signal: number | null } | undefined;
  let open = 0;
  let drainTimer: NodeJS.Timeout | undefined;
  let finished = false;

  const finish = () => {
    if (finished || !exit) return;
    finished = true;
    clearTimeout(drainTimer);
    for (const s of outputs) s.destroy();
    const status = exitStatusFor(exit.code, exit.signal);
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

  const forward = (stream: Readable, channel: number, wanted: boolean) => {
    open++;
    stream.on('data', (chunk: Buffer) => {
      if (!wanted || ws.readyState !== ws.OPEN) return;
      queued += chunk.length;
      ws.send(encodeFrame(channel, chunk), { binary: true }, () => {
        queued -= chunk.length;
        if (paused && queued < LOW_WATER) {
          paused = false;
          for (const s of outputs) s.resume();
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
  forward(child.stdout!, Channel.stdout, stdout);
  forward(child.stderr!, Channel.stderr, stderr);

  child.on('exit', (code, signal) => {
    exit = { code, signal: signal ? constants.signals[signal] : null };
    armDrain();
  });
  child.on('error', (e) => {
    log.error({ err: e.message }, 'cannot start enclave-enter');
    exit = { code: 126, signal: null };
    armDrain();
  });

  const input = child.stdin;
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
    // The client went away: end the command (SIGTERM, then SIGKILL).
    child.kill('SIGTERM');
    setTimeout(() => {
      if (!exit) child.kill('SIGKILL');
    }, KILL_GRACE_MS).unref();
  });
}
