// The session plan: every mount, mode, size, ID, limit, capability and the
// seccomp program of a session, as ordered ops tagged with their phase.
// Built once at create by buildPlan (pure), stored with the session, and the
// only thing native/src/init.c executes; exec'd commands are forked by the
// session's init and inherit it. The op table itself lives in
// native/src/ops.h; `enclave-init --check` validates a plan against it.
import { posix } from 'node:path';
import { z } from 'zod';
import type { IdRange } from './idRange.js';

export const PHASES = ['host', 'parent', 'net', 'mount', 'final', 'exec'] as const;
export type Phase = (typeof PHASES)[number];

export interface PlanOp {
  phase: Phase;
  op: string;
  args: string[];
}

/** What a session is made of; stored as JSON in sessions.plan. */
export interface SessionPlan {
  version: 1;
  ops: PlanOp[];
}

/** File contents that travel with a plan on the helper's stdin, never stored. */
export type Blob = Buffer;

export interface TmpfsSize {
  bytes: number;
  inodes: number;
}

export interface Rlimit {
  name: 'NOFILE' | 'NPROC' | 'CORE' | 'FSIZE';
  soft: number | 'unlimited';
  hard: number | 'unlimited';
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

/** What the session's secret mounts hold and what every command's environment gets. */
export interface Injected {
  /** Files in /run/enclave/auth or /run/enclave/env; file i's content is blob i. */
  files: { path: string; mode: number }[];
  /** Plain variables, in order. */
  env: { name: string; value: string }[];
  /** Variables the init reads from a session file before each execve; they win. */
  envFiles: { name: string; path: string }[];
}

/** Everything buildPlan needs, decided by the manager from request + config. */
export interface PlanInputs {
  hostname: string;
  ids: IdRange;
  /** Session cgroup directories the init joins before it is released. */
  cgroups: string[];
  /** Empty directory (host) on which the parent binds the rootfs. */
  newroot: string;
  rootfs: string;
  /** Host path of the control socket the daemon execs through. */
  control: string;
  /** Absolute host paths to hide under an empty read-only mount. */
  masks: string[];
  home: TmpfsSize;
  tmp: TmpfsSize;
  secrets: TmpfsSize;
  rlimits: Rlimit[];
  /** The compiled seccomp program (struct sock_filter array). */
  seccomp: Buffer;
  /** Extra paths under /sys to mask (found on the host, e.g. thermal_throttle). */
  sysMasks: string[];
  /** Host files bound read-only over rootfs files (resolv.conf, hosts). */
  files: { source: string; target: string }[];
  /** Bridge networking; absent for a session with only lo. */
  network?: NetworkPlan | undefined;
  injected?: Injected | undefined;
}

/** runc/Docker masked paths: a file reads empty (/dev/null), a directory is empty. */
export const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats',
  '/proc/sched_debug', '/proc/scsi', '/proc/interrupts', '/sys/firmware', '/sys/devices/virtual/powercap',
];

/** runc/Docker read-only paths. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Device nodes bound from the host: the minimal set runc and bubblewrap give. */
export const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'] as const;

export class PlanError extends Error {}

/** A hostname is one DNS label. */
export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function tmpfsData(mode: string, size: TmpfsSize): string {
  // uid/gid are resolved in the session's user namespace: its root owns them.
  return `mode=${mode},size=${size.bytes},nr_inodes=${size.inodes},uid=0,gid=0`;
}

/** Host absolute path -> path relative to the new root ("" for "/"). */
export function relativeToRoot(path: string): string {
  const norm = posix.normalize(path);
  if (!norm.startsWith('/')) throw new PlanError(`not an absolute path: ${path}`);
  return norm.replace(/^\/+/, '').replace(/\/+$/, '');
}

/** Pure: the plan of one session. */
export function buildPlan(p: PlanInputs): SessionPlan {
  if (!DNS_LABEL.test(p.hostname)) throw new PlanError(`hostname must be a valid DNS label: ${JSON.stringify(p.hostname)}`);
  const ops: PlanOp[] = [];
  const op = (phase: Phase, name: string, ...args: (string | number)[]) => ops.push({ phase, op: name, args: args.map(String) });

  op('host', 'rootfs', p.newroot, p.rootfs);
  for (const m of [...new Set(p.masks.map(relativeToRoot))].filter((m) => m !== '').sort()) op('host', 'hide', m);
  for (const f of p.files) op('host', 'bind-file', f.source, relativeToRoot(f.target));
  op('host', 'control', p.control);

  for (const dir of p.cgroups) op('parent', 'cgroup', dir);
  op('parent', 'uid-map', 0, p.ids.hostBase, p.ids.size);
  op('parent', 'setgroups', 'deny');
  op('parent', 'gid-map', 0, p.ids.hostBase, p.ids.size);
  const n = p.network;
  if (n) op('parent', 'veth', n.hostIf, 'eth0', n.mac, n.mtu, n.bridge);

  op('net', 'loopback');
  if (n) op('net', 'ipv4', 'eth0', n.address, n.prefix, n.gateway);

  const secret = 'nosuid,nodev,noexec';
  op('mount', 'tmpfs', 'home', 'nosuid,nodev', tmpfsData('0755', p.home));
  op('mount', 'tmpfs', 'tmp', 'nosuid,nodev', tmpfsData('1777', p.tmp));
  // A fresh /run: the host's (and the daemon's socket in it) stays outside.
  op('mount', 'tmpfs', 'run', 'nosuid,nodev', tmpfsData('0755', { bytes: 4 * 1024 * 1024, inodes: 1024 }));
  op('mount', 'mkdir', 'run/enclave', '0755');
  for (const dir of ['run/enclave/auth', 'run/enclave/env']) {
    op('mount', 'mkdir', dir, '0700');
    op('mount', 'tmpfs', dir, secret, tmpfsData('0700', p.secrets));
  }
  const inj = p.injected;
  inj?.files.forEach((f, i) => {
    if (!/^\/run\/enclave\/(auth|env)\/[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(f.path)) throw new PlanError(`secret file ${f.path} is not a file directly in /run/enclave/auth or /run/enclave/env`);
    op('mount', 'file', relativeToRoot(f.path), f.mode.toString(8).padStart(4, '0'), 0, 0, i);
  });
  op('mount', 'proc', 'proc');
  op('mount', 'sysfs', 'sys');
  for (const m of [...MASKED_PATHS, ...p.sysMasks]) op('mount', 'mask', relativeToRoot(m));
  for (const r of READONLY_PATHS) op('mount', 'readonly', relativeToRoot(r));
  op('mount', 'tmpfs', 'dev', 'nosuid,noexec', tmpfsData('0755', { bytes: 64 * 1024, inodes: 64 }));
  for (const dev of DEVICES) op('mount', 'bind-dev', `dev/${dev}`, `/dev/${dev}`);
  op('mount', 'mkdir', 'dev/pts', '0755');
  op('mount', 'devpts', 'dev/pts', 'newinstance,ptmxmode=0666,mode=0620');
  op('mount', 'symlink', 'pts/ptmx', 'dev/ptmx');
  op('mount', 'mkdir', 'dev/shm', '1777');
  op('mount', 'tmpfs', 'dev/shm', 'nosuid,nodev,noexec', tmpfsData('1777', p.tmp));
  op('mount', 'mkdir', 'dev/mqueue', '0755');
  op('mount', 'mqueue', 'dev/mqueue');
  op('mount', 'symlink', '/proc/self/fd', 'dev/fd');
  for (const [i, name] of ['stdin', 'stdout', 'stderr'].entries()) op('mount', 'symlink', `/proc/self/fd/${i}`, `dev/${name}`);

  op('final', 'hostname', p.hostname);
  for (const r of p.rlimits) op('final', 'rlimit', r.name, r.soft, r.hard);
  op('final', 'capabilities', '0');
  op('final', 'seccomp', p.seccomp.toString('hex'));
  for (const e of inj?.env ?? []) op('exec', 'env', e.name, e.value);
  for (const e of inj?.envFiles ?? []) op('exec', 'env-file', e.name, e.path);
  const plan: SessionPlan = { version: 1, ops };
  checkFields(plan);
  return plan;
}

/** The wire format's separators may not appear in a field (the C parser re-checks every kind). */
function checkFields(plan: SessionPlan): void {
  for (const o of plan.ops) {
    for (const [i, a] of o.args.entries()) {
      const mayBeEmpty = o.op === 'env' && i === 1; // FOO= is a variable too
      if ((a === '' && !mayBeEmpty) || /[\t\n\0]/.test(a)) throw new PlanError(`op ${o.op}: empty argument or tab/newline/NUL in ${JSON.stringify(a)}`);
    }
  }
}

/** The plan on the helper's stdin, with the blobs its file ops refer to. */
export function serializePlan(plan: SessionPlan, blobs: Blob[] = []): Buffer {
  const lines = ['enclave-plan\t1', ...plan.ops.map((o) => [o.phase, o.op, ...o.args].join('\t')), ['end', ...blobs.map((b) => String(b.length))].join('\t')];
  return Buffer.concat([Buffer.from(lines.join('\n') + '\n'), ...blobs]);
}

/** A stored plan, as read back from SQLite. */
export const storedPlan = z
  .object({
    version: z.literal(1),
    ops: z.array(z.object({ phase: z.enum(PHASES), op: z.string().min(1), args: z.array(z.string()) }).strict()).min(1),
  })
  .strict();

export function parseStoredPlan(json: string, where: string): SessionPlan {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new PlanError(`${where}: stored plan is not JSON: ${(e as Error).message}`);
  }
  const r = storedPlan.safeParse(raw);
  if (!r.success) throw new PlanError(`${where}: stored plan is malformed: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}

/** The control socket a stored plan's init listens on. */
export function controlPath(plan: SessionPlan): string {
  const c = plan.ops.find((o) => o.op === 'control');
  if (!c || c.args.length !== 1) throw new PlanError('the plan has no control op');
  return c.args[0]!;
}

/** The ops of one kind, e.g. the rlimits a session was created with. */
export function opsNamed(plan: SessionPlan, name: string): string[][] {
  return plan.ops.filter((o) => o.op === name).map((o) => o.args);
}
