// The session spec: every mount, mode, size and ID of a session, decided here
// and handed to native/src/init.c, which executes it line by line and stops at
// the first failure. One directive per line, fields separated by tabs.
import { posix } from 'node:path';
import type { IdRange } from './idRange.js';

export interface TmpfsSize {
  bytes: number;
  inodes: number;
}

export interface SessionPlan {
  hostname: string;
  ids: IdRange;
  /** cgroup.procs files the init is written into before it is released. */
  cgroupProcs: string[];
  /** Empty directory (host) on which the parent binds the rootfs. */
  newroot: string;
  rootfs: string;
  /** Absolute host paths to hide under an empty read-only mount. */
  masks: string[];
  home: TmpfsSize;
  tmp: TmpfsSize;
  secrets: TmpfsSize;
  rlimits: Rlimit[];
  /** Root-owned file holding the compiled seccomp program. */
  seccomp: string;
  /** Extra paths under /sys to mask (found on the host, e.g. thermal_throttle). */
  sysMasks: string[];
  /** Host files bound read-only over rootfs files (resolv.conf, hosts). */
  files: { source: string; target: string }[];
  /** Bridge networking; absent for a session with only lo. */
  network?: NetworkPlan | undefined;
}

export interface NetworkPlan {
  hostIf: string;
  mac: string;
  mtu: number;
  bridge: string;
  address: string;
  prefix: number;
  gateway: string;
}

/** runc/Docker masked paths: a file reads empty (/dev/null), a directory is empty. */
export const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats',
  '/proc/sched_debug', '/proc/scsi', '/proc/interrupts', '/sys/firmware', '/sys/devices/virtual/powercap',
];

/** runc/Docker read-only paths. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export type Directive = readonly [string, ...string[]];

export interface Rlimit {
  name: 'NOFILE' | 'NPROC' | 'CORE' | 'FSIZE';
  soft: number | 'unlimited';
  hard: number | 'unlimited';
}

/** Device nodes bound from the host: the minimal set runc and bubblewrap give. */
export const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'] as const;

export class SpecError extends Error {}

/** A hostname is one DNS label. */
export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function tmpfsData(mode: string, size: TmpfsSize): string {
  // uid/gid are resolved in the session's user namespace: its root owns them.
  return `mode=${mode},size=${size.bytes},nr_inodes=${size.inodes},uid=0,gid=0`;
}

/** Host absolute path -> path relative to the new root ("" for "/"). */
export function relativeToRoot(path: string): string {
  const norm = posix.normalize(path);
  if (!norm.startsWith('/')) throw new SpecError(`not an absolute path: ${path}`);
  return norm.replace(/^\/+/, '').replace(/\/+$/, '');
}

export function buildSpec(plan: SessionPlan): Directive[] {
  const d: Directive[] = [['enclave-spec', '1'], ['hostname', plan.hostname]];
  d.push(['uid_map', '0', String(plan.ids.hostBase), String(plan.ids.size)]);
  d.push(['gid_map', '0', String(plan.ids.hostBase), String(plan.ids.size)]);
  for (const procs of plan.cgroupProcs) d.push(['cgroup', procs]);
  d.push(['newroot', plan.newroot], ['rootfs', plan.rootfs]);
  const masks = [...new Set(plan.masks.map(relativeToRoot))].filter((m) => m !== '').sort();
  for (const m of masks) d.push(['mask', m]);
  for (const f of plan.files) d.push(['bind_file', f.source, relativeToRoot(f.target)]);
  const n = plan.network;
  if (n) {
    d.push(['veth', n.hostIf, 'eth0', n.mac, String(n.mtu), n.bridge]);
    d.push(['ipv4', 'eth0', n.address, String(n.prefix), n.gateway]);
  }

  const secret = 'nosuid,nodev,noexec';
  d.push(
    ['tmpfs', 'home', 'nosuid,nodev', tmpfsData('0755', plan.home)],
    ['tmpfs', 'tmp', 'nosuid,nodev', tmpfsData('1777', plan.tmp)],
    // A fresh /run: the host's (and the daemon's socket in it) stays outside.
    ['tmpfs', 'run', 'nosuid,nodev', tmpfsData('0755', { bytes: 4 * 1024 * 1024, inodes: 1024 })],
    ['mkdir', 'run/enclave', '0755'],
    ['mkdir', 'run/enclave/auth', '0700'],
    ['mkdir', 'run/enclave/env', '0700'],
    ['tmpfs', 'run/enclave/auth', secret, tmpfsData('0700', plan.secrets)],
    ['tmpfs', 'run/enclave/env', secret, tmpfsData('0700', plan.secrets)],
    ['proc', 'proc'],
    ['sysfs', 'sys'],
    ...[...MASKED_PATHS, ...plan.sysMasks].map((p): Directive => ['proc_mask', relativeToRoot(p)]),
    ...READONLY_PATHS.map((p): Directive => ['readonly', relativeToRoot(p)]),
    ['tmpfs', 'dev', 'nosuid,noexec', tmpfsData('0755', { bytes: 64 * 1024, inodes: 64 })],
  );
  for (const dev of DEVICES) d.push(['bind_dev', `dev/${dev}`, `/dev/${dev}`]);
  d.push(
    ['mkdir', 'dev/pts', '0755'],
    ['devpts', 'dev/pts', 'newinstance,ptmxmode=0666,mode=0620'],
    ['symlink', 'pts/ptmx', 'dev/ptmx'],
    ['mkdir', 'dev/shm', '1777'],
    ['tmpfs', 'dev/shm', 'nosuid,nodev,noexec', tmpfsData('1777', plan.tmp)],
    ['mkdir', 'dev/mqueue', '0755'],
    ['mqueue', 'dev/mqueue'],
    ['symlink', '/proc/self/fd', 'dev/fd'],
    ['symlink', '/proc/self/fd/0', 'dev/stdin'],
    ['symlink', '/proc/self/fd/1', 'dev/stdout'],
    ['symlink', '/proc/self/fd/2', 'dev/stderr'],
  );
  for (const r of plan.rlimits) d.push(['rlimit', r.name, String(r.soft), String(r.hard)]);
  d.push(['seccomp', plan.seccomp]);
  validateSpec(d);
  return d;
}

const TARGET_OPS = new Set(['mask', 'tmpfs', 'mkdir', 'proc', 'sysfs', 'devpts', 'mqueue', 'bind_dev', 'proc_mask', 'readonly']);
const IFNAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$/;

export function validateSpec(directives: Directive[]): void {
  for (const dir of directives) {
    for (const field of dir) {
      if (field === '' || /[\t\n\0]/.test(field)) throw new SpecError(`directive ${dir[0]}: empty field or tab/newline/NUL in ${JSON.stringify(field)}`);
    }
    const [op] = dir;
    if (op === 'veth' && (!IFNAME.test(dir[1] ?? '') || !IFNAME.test(dir[5] ?? ''))) throw new SpecError(`veth: interface names must fit IFNAMSIZ: ${dir[1]}, ${dir[5]}`);
    if (op === 'bind_file' && !(dir[1] ?? '').startsWith('/')) throw new SpecError(`bind_file: source must be absolute: ${dir[1]}`);
    const target = op === 'symlink' ? dir[2] : op === 'bind_file' ? dir[2] : dir[1];
    if (TARGET_OPS.has(op) || op === 'symlink' || op === 'bind_file') {
      if (!target || target.startsWith('/') || target.split('/').some((c) => c === '..' || c === '.' || c === '')) {
        throw new SpecError(`directive ${op}: target must be a clean relative path, got ${JSON.stringify(target)}`);
      }
    }
  }
  if (!DNS_LABEL.test(directives.find((x) => x[0] === 'hostname')?.[1] ?? '')) {
    throw new SpecError('hostname must be a valid DNS label');
  }
}

export function serializeSpec(directives: Directive[]): string {
  return directives.map((d) => d.join('\t')).join('\n') + '\n';
}
