// Per-session hardening inputs of the plan: rlimits, the compiled seccomp
// program, extra /sys masks.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Limits } from '../vocab/limitTable.js';
import { PROFILES, type Profile } from '../vocab/profiles.js';
import { archForNode, compileSeccomp, serializeBpf } from './bpf.js';
import type { Rlimit } from './plan.js';
import { policyFor } from './seccompPolicy.js';

const MIB = 1024 * 1024;

/** The rlimits config (rlimits.*): open files, tasks (0: pids + 1), largest file (0: unlimited). */
export interface RlimitConfig {
  nofile: number;
  nproc: number;
  fsize_mb: number;
}

export function rlimitsFor(r: RlimitConfig, limits: Pick<Limits, 'pids'>): Rlimit[] {
  const fsize = r.fsize_mb === 0 ? 'unlimited' : r.fsize_mb * MIB;
  // Both count the same tasks; one above pids.max lets the cgroup be the limit
  // that bites (and shows in pids.events), with the rlimit as a backstop.
  const nproc = r.nproc === 0 ? limits.pids + 1 : r.nproc;
  return [
    { name: 'NOFILE', soft: r.nofile, hard: r.nofile },
    { name: 'NPROC', soft: nproc, hard: nproc },
    { name: 'CORE', soft: 0, hard: 0 },
    { name: 'FSIZE', soft: fsize, hard: fsize },
  ];
}

/** Each profile's seccomp program for this machine, compiled once per
 * daemon start and copied into each new session's plan. */
export function seccompPrograms(): Record<Profile, Buffer> {
  const arch = archForNode();
  return Object.fromEntries(PROFILES.map((p) => [p, serializeBpf(compileSeccomp(arch, policyFor(p)))])) as Record<Profile, Buffer>;
}

/** Docker also masks each CPU's thermal_throttle directory. */
export function thermalThrottleMasks(sys = '/sys/devices/system/cpu'): string[] {
  if (!existsSync(sys)) return [];
  return readdirSync(sys)
    .filter((n) => /^cpu\d+$/.test(n))
    .map((n) => join(sys, n, 'thermal_throttle'))
    .filter((p) => existsSync(p));
}
