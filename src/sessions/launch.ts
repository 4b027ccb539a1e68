// Runs native enclave-init with a session plan and reads its one-line verdict.
import { spawn } from 'node:child_process';
import { getSystemErrorName } from 'node:util';
import { helperPaths } from '../native/addon.js';
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

export function launchInit(plan: SessionPlan, blobs: Blob[] = []): Promise<LaunchResult> {
  return new Promise((resolve) => {
    // detached: its own session, so terminal signals aimed at the daemon
    // never reach the sessions.
    const child = spawn(helperPaths.init, [], { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: {} });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => resolve({ ok: false, step: 'spawn', errno: 0, detail: `${helperPaths.init}: ${e.message}` }));
    child.on('close', (code, signal) => resolve(parseLaunchOutput(Buffer.concat(out).toString(), code, signal, Buffer.concat(err).toString())));
    child.stdin.on('error', () => {
      /* the helper failed before reading the plan; its verdict says why */
    });
    child.stdin.end(serializePlan(plan, blobs));
  });
}
