// What a daemon leaves in the kernel, read from the kernel (sysfs, procfs,
// cgroupfs, nftables), not from the daemon's own database: taken once as a
// baseline with no session live, and again at the end of the stress run.
// Everything is scoped to one test daemon's own objects (its bridge, table,
// cgroup parent, ID range, state directory, pid), so other tests running on
// the same host do not show up as its leaks.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { bridgePorts } from '../src/network/hostNetwork.js';
import { ENDED_STATES } from '../src/vocab/states.js';
import { mountsUnder, type TestDaemon } from '../test/integration/harness.js';
import { fdCount } from './probes.js';

export interface KernelState {
  bridgePorts: string[];
  cgroups: string[];
  mounts: string[];
  /** Elements of each set and map of the daemon's table, by name (bindings: one per lease; published: one per published port). */
  nftElements: Record<string, number>;
  idRangeProcesses: string[];
  daemonZombies: number[];
  daemonFds: number;
  unfinishedRows: string[];
}

const FINAL_STATES = new Set<string>(ENDED_STATES);

/** Every cgroup directory below the daemon's parent, in every hierarchy. */
function cgroupsUnder(d: TestDaemon): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      out.push(join(dir, e.name));
      walk(join(dir, e.name));
    }
  };
  for (const parent of d.cgroupDirs()) walk(parent);
  return out;
}

const nftJson = z.object({ nftables: z.array(z.record(z.string(), z.unknown())) });
const nftSet = z.object({ name: z.string(), elem: z.array(z.unknown()).optional() });

/** Elements in each set and map of the daemon's table, by name. */
function nftElements(table: string): Record<string, number> {
  const r = spawnSync('nft', ['-j', 'list', 'table', 'inet', table], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const n: Record<string, number> = {};
  if (r.status !== 0) return n;
  for (const o of nftJson.parse(JSON.parse(r.stdout)).nftables) {
    const set = o.set ?? o.map;
    if (!set) continue;
    const { name, elem } = nftSet.parse(set);
    n[name] = elem?.length ?? 0;
  }
  return n;
}

/** Elements of every set and map in all. */
export const totalElements = (s: KernelState) => Object.values(s.nftElements).reduce((a, b) => a + b, 0);

function procs(): { pid: number; ppid: number; state: string; uid: number; comm: string }[] {
  const out = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const m = /^\d+ \((.*)\) (\S) (\d+)/s.exec(stat);
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${e}/status`, 'utf8'));
      if (m && uid) out.push({ pid: Number(e), comm: m[1]!, state: m[2]!, ppid: Number(m[3]), uid: Number(uid[1]) });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

const listReply = z.object({ sessions: z.array(z.object({ id: z.string(), state: z.string() })) });

/** Every session row the daemon lists, with its state. */
export async function sessionRows(d: TestDaemon): Promise<{ id: string; state: string }[]> {
  return listReply.parse((await d.api('GET', '/v1/sessions')).body).sessions;
}

/**
 * The daemon's fd count once steady: the connection of an API call just
 * answered (this module's own list call among them) is closed on the
 * daemon's side a moment after the client saw the answer.
 */
async function steadyFdCount(pid: number): Promise<number> {
  let n = fdCount(pid);
  for (let i = 0; i < 25; i++) {
    await new Promise((r) => setTimeout(r, 20));
    const again = fdCount(pid);
    if (again === n) return n;
    n = again;
  }
  return n;
}

export async function kernelState(d: TestDaemon, idSpan: number): Promise<KernelState> {
  const all = procs();
  const rows = await sessionRows(d);
  const daemonFds = await steadyFdCount(d.pid);
  return {
    bridgePorts: bridgePorts(d.bridge),
    cgroups: cgroupsUnder(d),
    mounts: mountsUnder(d.dir),
    nftElements: nftElements(d.nftTable),
    idRangeProcesses: all.filter((p) => p.uid >= d.idBase && p.uid < d.idBase + idSpan).map((p) => `${p.pid} (${p.comm}) uid ${p.uid} state ${p.state}`),
    daemonZombies: all.filter((p) => p.ppid === d.pid && p.state === 'Z').map((p) => p.pid),
    daemonFds,
    unfinishedRows: rows.filter((s) => !FINAL_STATES.has(s.state)).map((s) => `${s.id} ${s.state}`),
  };
}

/**
 * The baseline, taken with no session live: a warm-up session's link (and
 * with it its address's firewall element) goes a moment after its destroy
 * returned, so wait, bounded, until no port is on the bridge and two reads
 * 100 ms apart agree.
 */
export async function baselineState(d: TestDaemon, idSpan: number): Promise<KernelState> {
  const deadline = Date.now() + 10_000;
  let last = await kernelState(d, idSpan);
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await kernelState(d, idSpan);
    const settled = now.bridgePorts.length === 0 && JSON.stringify(now.nftElements) === JSON.stringify(last.nftElements) && now.cgroups.length === last.cgroups.length;
    if (settled || Date.now() > deadline) return now;
    last = now;
  }
}

/** Leaks: what the end state holds that the baseline did not. */
export function leaks(base: KernelState, end: KernelState): string[] {
  const extra = (a: string[], b: string[]) => b.filter((x) => !a.includes(x));
  const out: string[] = [];
  const named = (what: string, xs: string[]) => xs.length && out.push(`${what}: ${xs.slice(0, 10).join(', ')}${xs.length > 10 ? ` (+${xs.length - 10} more)` : ''}`);
  named('links on the bridge', extra(base.bridgePorts, end.bridgePorts));
  named('cgroups under the parent', extra(base.cgroups, end.cgroups));
  named('mounts', extra(base.mounts, end.mounts));
  for (const name of new Set([...Object.keys(base.nftElements), ...Object.keys(end.nftElements)])) {
    const [was, now] = [base.nftElements[name] ?? 0, end.nftElements[name] ?? 0];
    if (was !== now) out.push(`nftables elements of ${name}: ${was} at the start, ${now} now`);
  }
  named('processes in the session ID ranges', end.idRangeProcesses);
  named('zombies parented to the daemon', end.daemonZombies.map(String));
  if (end.daemonFds > base.daemonFds) out.push(`daemon fds: ${base.daemonFds} at the baseline, ${end.daemonFds} now`);
  named('rows not in a final state', end.unfinishedRows);
  return out;
}

/**
 * The leak check at the end of a run. Destroy returns once the session is
 * gone; the kernel's own asynchronous cleanup (netns teardown) gets a bounded
 * 10 s to finish. Prints what it saw; returns the leaks left.
 */
export async function settledLeaks(d: TestDaemon, base: KernelState, idSpan: number, say: (s: string) => void): Promise<string[]> {
  const t0 = Date.now();
  let end = await kernelState(d, idSpan);
  const atFirst = leaks(base, end);
  while (leaks(base, end).length > 0 && Date.now() - t0 < 10_000) {
    await new Promise((r) => setTimeout(r, 200));
    d.reapOrphanHelpers();
    end = await kernelState(d, idSpan);
  }
  const failures = leaks(base, end);
  say(`leak check (${Date.now() - t0} ms to settle): ${failures.length === 0 ? 'nothing left' : 'LEAKS'}`);
  if (atFirst.length > 0) say(`  still settling right after the last destroy: ${atFirst.join('; ')}`);
  for (const f of failures) say(`  ${f}`);
  return failures;
}
