// Runs native enclave-init with a session plan and reads its one-line verdict.
import { Socket } from 'node:net';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { addon, helperPaths, type ExitStatus, type HelperProcess } from '../native/addon.js';
import { serializePlan, type Blob, type SessionPlan } from '../isolation/plan.js';
import { stepForExitCode } from '../native/steps.js';

export type LaunchResult =
  | { ok: true; pid: number; startTime: string }
  | { ok: false; step: string; errno: number; detail: string };

export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}

export function describeFailure(r: Extract<LaunchResult, { ok: false }>): string {
  return `step ${r.step} failed: ${r.errno ? errnoName(r.errno) : 'error'} (${r.detail})`;
}

/** Pure: parse the helper's stdout and exit status. */
export function parseLaunchOutput(stdout: string, exitCode: number | null, signal: string | null, stderr = ''): LaunchResult {
  const line = stdout.split('\n')[0] ?? '';
  const f = line.split('\t');
  if (f[0] === 'ok' && f.length === 3 && /^\d+$/.test(f[1]!) && /^\d+$/.test(f[2]!) && exitCode === 0) {
    return { ok: true, pid: Number(f[1]), startTime: f[2]! };
  }
  if (f[0] === 'error' && f.length >= 4) {
    return { ok: false, step: f[1]!, errno: Number(f[2]) || 0, detail: f.slice(3).join(' ') };
  }
  const step = exitCode !== null ? stepForExitCode(exitCode) ?? 'unknown' : 'unknown';
  const how = signal ? `killed by ${signal}` : `exit code ${exitCode}`;
  return { ok: false, step, errno: 0, detail: `enclave-init ${how}${stderr ? `: ${stderr.trim().slice(0, 300)}` : ''}` };
}

/** A pipe's parent end as a stream on the event loop (no thread-pool read parked on it). */
function pipeEnd(fd: number, readable: boolean): Socket {
  return new Socket({ fd, readable, writable: !readable });
}

const signalName = (n: number) => Object.entries(constants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;

export async function launchInit(plan: SessionPlan, blobs: Blob[] = []): Promise<LaunchResult> {
  // posix_spawn from the addon rather than child_process: libuv forks the
  // daemon (a copy of 100+ MB of page tables: 2.5 ms of blocked event loop
  // per create, profiled); a vfork-style spawn on the thread pool blocks
  // nothing. The helper gets its own session (terminal signals aimed at the
  // daemon never reach the sessions) and no environment.
  let child: HelperProcess;
  try {
    child = await addon().spawnHelper(helperPaths.init);
  } catch (e) {
    return { ok: false, step: 'spawn', errno: 0, detail: `${helperPaths.init}: ${(e as Error).message}` };
  }
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const stdout = pipeEnd(child.stdout, true);
    const stderr = pipeEnd(child.stderr, true);
    const stdin = pipeEnd(child.stdin, false);
    const ended = (s: Socket) => new Promise<void>((r) => s.once('close', () => r()));
    stdout.on('data', (b: Buffer) => out.push(b));
    stderr.on('data', (b: Buffer) => err.push(b));
    stdout.on('error', () => undefined);
    stderr.on('error', () => undefined);
    stdin.on('error', () => {
      /* the helper failed before reading the plan; its verdict says why */
    });
    const exited = new Promise<ExitStatus | null>((r) => {
      try {
        new (addon().ProcessWatch)(child.pid, child.startTime, r); // reaps it: it is our child
      } catch {
        r(null); // no pidfd (fd limit): the verdict on stdout still tells; the status is unknown
      }
    });
    void Promise.all([exited, ended(stdout), ended(stderr)]).then(([status]) => {
      const signal = status?.signal != null ? signalName(status.signal) : null;
      resolve(parseLaunchOutput(Buffer.concat(out).toString(), status?.code ?? null, signal, Buffer.concat(err).toString()));
    });
    stdin.end(serializePlan(plan, blobs));
  });
}
