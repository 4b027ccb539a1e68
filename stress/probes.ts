// Measurements the benchmarks and the stress suite share: a process's RSS and
// fd count, one exec `true` through the API (raw, and through the client
// library's run), and a whole process, timed.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import WebSocket from 'ws';
import type { Enclave } from '../src/client/index.js';
import { K8S_V5_PROTOCOL } from '../src/terminal/channels.js';
import type { TestDaemon } from '../test/integration/harness.js';
import { msSince } from './schedule.js';

export function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** WebSocket connect to exit status, in ms; rejects unless the status is Success. */
export function execTrue(d: TestDaemon, session: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${d.socket}:/v1/sessions/${session}/exec?command=true`, [K8S_V5_PROTOCOL]);
    let status = '';
    ws.on('message', (m: Buffer) => m[0] === 3 && (status = m.subarray(1).toString()));
    ws.on('close', () => (status.includes('Success') ? resolve(msSince(t0)) : reject(new Error(`exec true in ${session}: ${status || 'no status'}`))));
    ws.on('error', reject);
  });
}
/** The client library's run(session, ['true']), to its result, in ms; rejects unless it exits 0. */
export async function clientRunTrue(client: Enclave, session: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = await client.run(session, ['true']);
  if (r.exitCode !== 0) throw new Error(`client run true in ${session}: exit ${r.exitCode}`);
  return msSince(t0);
}

/** Spawned from this process, as the daemon would spawn a helper. */
export function timeSpawn(cmd: string, args: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'ignore' });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(msSince(t0)) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}
