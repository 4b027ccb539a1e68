// The session plan: every mount, mode, size, ID, limit, capability and the
// seccomp program of a session, as ordered ops tagged with their phase.
// Built once at create by buildPlan (pure), stored with the session, and the
// only thing native/src/init.c executes; exec'd commands are forked by the
// session's init and inherit it. The op table itself lives in
// native/src/ops.h; every op here is made by its generated constructor
// (src/native/contract.gen.ts), and `enclave-init --check` validates a plan
// against the table.
import { posix } from 'node:path';
import { z } from 'zod';
import { op, PHASES, readOp, type Phase, type PlanOp } from '../native/contract.gen.js';
import type { MountFlag } from '../native/contractKinds.js';
import type { BootPlan } from './bootPlan.js';
import type { CgroupView } from './cgroups.js';
import type { IdRange } from './idRange.js';
import { readOnlyVolumeRefusal } from './profiles.js';

export { PHASES, type Phase, type PlanOp };

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
  /** Files in /run/enclave/auth or /run/enclave/env, root's and of group gid (0: root's); file i's content is blob i. */
  files: { path: string; mode: number; gid?: number | undefined }[];
  /** Some are shared with users inside (a group reads them): the two directories are 0711, so they can reach a file they know the name of, and list none. */
  shared?: boolean | undefined;
  /** Plain variables, in order. */
  env: { name: string; value: string }[];
  /** Variables the init reads from a session file before each execve; they win. */
  envFiles: { name: string; path: string }[];
}

/** The host's own root (or any directory), bound read-only and unmapped: host paths in it are hidden by masks. */
export interface HostRoot {
  kind: 'host';
  rootfs: string;
  /** Absolute host paths to hide under an empty read-only mount. */
  masks: string[];
}

/**
 * A root made of idmapped read-only layers: layer 0 is "/", the others are
 * mounted at their paths (the minimal root: base, then the host's /usr at
 * /usr). With an upper, each is an overlay whose writes land in one
 * size-capped tmpfs of the session's; without, the root is read-only.
 */
export interface LayeredRoot {
  kind: 'layers';
  layers: { source: string; at: string }[];
  upper?: TmpfsSize | undefined;
  /** Paths in the session covered with an empty read-only mount once the layers are up (usrMasks.ts). */
  masks?: readonly string[] | undefined;
  /**
   * How masks hide: a mount over each (the default), or a whiteout in the
   * writable layer, made before the overlay (a root that may unmount, under
   * the system profile, could lift a mount; needs an upper).
   */
  hideBy?: 'mount' | 'whiteout' | undefined;
}

/** Everything buildPlan needs, decided by the manager from request + config. */
export interface PlanInputs {
  hostname: string;
  ids: IdRange;
  /** Session cgroup directories the init joins before it is released. */
  cgroups: string[];
  /** Empty directory (host) on which the parent binds the rootfs. */
  newroot: string;
  root: HostRoot | LayeredRoot;
  /** Capabilities kept (hex mask; "0" for none) and whether setgroups is allowed: the profile. */
  capabilities: string;
  setgroups: 'allow' | 'deny';
  /** Host path of the control socket the daemon execs through. */
  control: string;
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
  /** Volumes: host mounts idmapped into the session at their targets (a parent before what is under it). */
  volumes?: { source: string; target: string; readonly: boolean }[] | undefined;
  /** Bridge networking; absent for a session with only lo. */
  network?: NetworkPlan | undefined;
  injected?: Injected | undefined;
  /** The daemon's lxcfs mount (host path): its LXCFS_FILES go over the session's; absent with sessions.lxcfs = "off". */
  lxcfs?: string | undefined;
  /** The session's own cgroups (cgroups.ts, sessionCgroupView), shown at /sys/fs/cgroup: read-only, writable (delegated) for a system session. */
  cgroupView?: CgroupView[] | undefined;
  /**
   * The system profile's /proc, /sys and /dev: the kernel's /proc and /sys
   * without masks, read-only binds or lxcfs files over them (a nested
   * runtime's procfs mount needs a fully visible one), and SYSTEM_DEVICES
   * from the daemon's nodes (deviceNodes.ts), by their path in /dev.
   */
  system?: { nodes: Record<(typeof SYSTEM_DEVICES)[number], string> } | undefined;
  /** --init systemd (bootPlan.ts): a bigger /run, /run/lock, masked units, and the boot op the init starts on the daemon's word. */
  boot?: BootPlan | undefined;
}

/** Root's home in every session; /home holds the other users'. */
export const ROOT_HOME = '/root';

const MIB = 1024 * 1024;

/** runc/Docker masked paths: a file reads empty (/dev/null), a directory is empty. */
export const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats',
  '/proc/sched_debug', '/proc/scsi', '/proc/interrupts', '/sys/firmware', '/sys/devices/virtual/powercap',
];

/** runc/Docker read-only paths. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/**
 * What a mask (or a hidden host path) puts on a directory: an empty tmpfs,
 * mounted read-only, nosuid, nodev and noexec (what the op means). A file
 * gets /dev/null.
 */
export const MASK_DATA = 'size=4k,nr_inodes=1,mode=0555';

/**
 * lxcfs's files bound over the kernel's, as LXD and Incus bind them: memory,
 * CPUs, CPU time, uptime, load and swap of the session's cgroups and PID
 * namespace, and the CPUs online (glibc's get_nprocs). Not diskstats: lxcfs
 * answers it from blkio statistics kernels without CFQ/BFQ no longer keep,
 * and then passes the host's through, which the session reads already.
 */
export const LXCFS_FILES = ['proc/cpuinfo', 'proc/meminfo', 'proc/stat', 'proc/uptime', 'proc/loadavg', 'proc/swaps', 'sys/devices/system/cpu/online'] as const;

/** Device nodes bound from the host: the minimal set runc and bubblewrap give. */
export const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'] as const;

/**
 * What the system profile adds: TUN/TAP (VPNs, slirp) and FUSE (fuse-overlayfs,
 * sshfs); each works only within the session's own namespaces (a TUN device
 * is made in its network namespace, a FUSE mount in its mount namespace).
 * No block device, /dev/mem or host tty; no /dev/kmsg: reading it needs
 * CAP_SYSLOG of the host, and runtimes do without it.
 */
export const SYSTEM_DEVICES = ['net/tun', 'fuse'] as const;

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
  const add = (...o: PlanOp[]) => ops.push(...o);

  const root = p.root;
  if (root.kind === 'host') {
    add(op.rootfs(p.newroot, root.rootfs));
    for (const m of [...new Set(root.masks.map(relativeToRoot))].filter((m) => m !== '').sort()) add(op.hide(m, MASK_DATA));
  } else {
    if (root.layers[0]?.at !== '/') throw new PlanError('the first layer of a layered root must be "/"');
    // Bound only as the child's starting directory: the root is the layers.
    add(op.rootfs(p.newroot, root.layers[0].source));
    // Read-only volumes come by propagation, their flags locked (native/src/init.c stage_volumes).
    if (p.volumes?.some((v) => v.readonly)) add(op.stageVolumes());
  }
  add(op.control(p.control));

  for (const dir of p.cgroups) add(op.cgroup(dir));
  add(op.uidMap(0, p.ids.hostBase, p.ids.size));
  add(op.setgroups(p.setgroups));
  add(op.gidMap(0, p.ids.hostBase, p.ids.size));
  const n = p.network;
  if (n) add(op.veth(n.hostIf, 'eth0', n.mac, n.mtu, n.bridge));
  if (root.kind === 'layers') for (const l of root.layers) add(op.layer(l.source));
  const volumes = [...(p.volumes ?? [])].sort((a, b) => (a.target < b.target ? -1 : a.target > b.target ? 1 : 0));
  if (new Set(volumes.map((v) => v.target)).size !== volumes.length) throw new PlanError('two volumes on the same target');
  // Refused at create and at a start; here too, so no path builds such a plan.
  const roRefused = p.system && volumes.some((v) => v.readonly) ? readOnlyVolumeRefusal('system', root.kind === 'host') : undefined;
  if (roRefused) throw new PlanError(roRefused);
  for (const v of volumes) add(op.volume(v.source, v.readonly ? ['ro'] : []));

  add(op.loopback());
  if (n) add(op.ipv4('eth0', n.address, n.prefix, n.gateway));

  if (p.system && !(root.kind === 'host' || root.hideBy === 'whiteout')) throw new PlanError('the system profile\'s root hides by whiteouts (its root may unmount a mask)');
  if (root.kind === 'layers') {
    if (root.hideBy === 'whiteout' && !root.upper) throw new PlanError('whiteouts need a writable root');
    if (root.upper) add(op.upper(tmpfsData('0755', root.upper)));
    add(op.root(0));
    root.layers.forEach((l, i) => i > 0 && add(op.overlay(relativeToRoot(l.at), i)));
    // On top of the overlays, so neither the layer nor the session's writes show there.
    for (const m of [...new Set((root.masks ?? []).map(relativeToRoot))].sort()) {
      if (m === '') throw new PlanError('a layered root cannot mask "/"');
      add(root.hideBy === 'whiteout' ? op.whiteout(m) : op.mask(m, MASK_DATA));
    }
  }
  for (const f of p.files) add(op.bindFile(f.source, relativeToRoot(f.target)));
  const plain: MountFlag[] = ['nosuid', 'nodev'];
  const secret: MountFlag[] = ['nosuid', 'nodev', 'noexec'];
  // A volume on /home is the session's home instead of the tmpfs.
  if (!volumes.some((v) => v.target === '/home')) add(op.tmpfs('home', plain, tmpfsData('0755', p.home)));
  // Root's home: on the writable layer when there is one, else a tmpfs of its own (as big as /home may be).
  if (!(root.kind === 'layers' && root.upper) && !volumes.some((v) => v.target === ROOT_HOME)) add(op.tmpfs(relativeToRoot(ROOT_HOME), plain, tmpfsData('0700', p.home)));
  add(op.tmpfs('tmp', plain, tmpfsData('1777', p.tmp)));
  volumes.forEach((v, i) => add(op.volumeAt(relativeToRoot(v.target), i)));
  // A fresh /run: the host's (and the daemon's socket in it) stays outside.
  // systemd keeps its journal (until it is flushed), units and sockets there: room for them.
  const boot = p.boot;
  if (boot && !p.system) throw new PlanError('only a system session boots an init of its own');
  add(op.tmpfs('run', plain, tmpfsData('0755', boot ? { bytes: 64 * MIB, inodes: 16384 } : { bytes: 4 * MIB, inodes: 1024 })));
  add(op.mkdir('run/enclave', 0o755));
  if (boot) {
    add(op.mkdir('run/lock', 0o755), op.tmpfs('run/lock', secret, tmpfsData('1777', { bytes: 4 * MIB, inodes: 1024 })));
    add(op.mkdir('run/systemd', 0o755), op.mkdir('run/systemd/system', 0o755));
    for (const unit of boot.masks) add(op.symlink('/dev/null', `run/systemd/system/${unit}`));
  }
  const inj = p.injected;
  const [dirMode, dirData] = inj?.shared ? [0o711, '0711'] : [0o700, '0700'];
  for (const dir of ['run/enclave/auth', 'run/enclave/env']) add(op.mkdir(dir, dirMode), op.tmpfs(dir, secret, tmpfsData(dirData, p.secrets)));
  inj?.files.forEach((f, i) => {
    if (!/^\/run\/enclave\/(auth|env)\/[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(f.path)) throw new PlanError(`secret file ${f.path} is not a file directly in /run/enclave/auth or /run/enclave/env`);
    add(op.file(relativeToRoot(f.path), f.mode, 0, f.gid ?? 0, i));
  });
  add(op.proc('proc', ['nosuid', 'nodev', 'noexec']));
  add(op.sysfs('sys', ['ro', 'nosuid', 'nodev', 'noexec']));
  // The session's own numbers, not the host's: `free`, `top`, `uptime` tell the truth.
  if (p.lxcfs && !p.system) for (const f of LXCFS_FILES) add(op.lxcfsFile(posix.join(p.lxcfs, f), f));
  add(...cgroupViewOps(p.cgroupView ?? [], p.system !== undefined));
  if (!p.system) {
    for (const m of [...MASKED_PATHS, ...p.sysMasks]) add(op.mask(relativeToRoot(m), MASK_DATA));
    for (const r of READONLY_PATHS) add(op.readonly(relativeToRoot(r)));
  }
  add(op.tmpfs('dev', ['nosuid', 'noexec'], tmpfsData('0755', { bytes: 64 * 1024, inodes: 64 })));
  for (const dev of DEVICES) add(op.bindDev(`dev/${dev}`, `/dev/${dev}`));
  if (p.system) {
    add(op.mkdir('dev/net', 0o755));
    for (const dev of SYSTEM_DEVICES) add(op.devNode(p.system.nodes[dev], `dev/${dev}`));
  }
  add(op.mkdir('dev/pts', 0o755));
  add(op.devpts('dev/pts', ['nosuid', 'noexec'], 'newinstance,ptmxmode=0666,mode=0620'));
  add(op.symlink('pts/ptmx', 'dev/ptmx'));
  add(op.mkdir('dev/shm', 0o1777));
  add(op.tmpfs('dev/shm', secret, tmpfsData('1777', p.tmp)));
  add(op.mkdir('dev/mqueue', 0o755));
  add(op.mqueue('dev/mqueue', ['nosuid', 'nodev', 'noexec']));
  add(op.symlink('/proc/self/fd', 'dev/fd'));
  for (const [i, name] of ['stdin', 'stdout', 'stderr'].entries()) add(op.symlink(`/proc/self/fd/${i}`, `dev/${name}`));

  add(op.hostname(p.hostname));
  for (const r of p.rlimits) add(op.rlimit(r.name, r.soft, r.hard));
  add(op.capabilities(p.capabilities));
  add(op.seccomp(p.seccomp));
  for (const e of inj?.env ?? []) add(op.env(e.name, e.value));
  for (const e of inj?.envFiles ?? []) add(op.envFile(e.name, e.path));
  if (boot) add(op.boot(boot.init, boot.machineId));
  const plan: SessionPlan = { version: 1, ops };
  checkFields(plan);
  return plan;
}

/**
 * The session's own cgroups at /sys/fs/cgroup, as the host lays them out:
 * on a unified host the v2 tree there; else a tmpfs with one directory per
 * hierarchy the session is in, each hierarchy mounted from its cgroup
 * namespace (so rooted at its own cgroup), the tmpfs read-only once they
 * are. The mounts are read-only by what the op means; a system session's
 * (delegated) are the -rw ops: its root owns its directories there.
 */
function cgroupViewOps(view: CgroupView[], delegated: boolean): PlanOp[] {
  if (view.length === 0) return [];
  const v2 = delegated ? op.cgroup2fsRw : op.cgroup2fs;
  const v1 = delegated ? op.cgroupfsRw : op.cgroupfs;
  if (view.some((v) => v.at === '')) {
    if (view.length > 1 || view[0]!.version !== 2) throw new PlanError('a cgroup view at /sys/fs/cgroup itself is the v2 tree alone');
    return [v2('sys/fs/cgroup')];
  }
  const ops = [op.tmpfs('sys/fs/cgroup', ['nosuid', 'nodev', 'noexec'], tmpfsData('0755', { bytes: 16 * 1024, inodes: 32 }))];
  for (const v of view) {
    if (!/^[a-z0-9_,]+$/.test(v.at)) throw new PlanError(`cgroup view: ${JSON.stringify(v.at)} is not a hierarchy's directory name`);
    const at = `sys/fs/cgroup/${v.at}`;
    ops.push(op.mkdir(at, 0o555), v.version === 2 ? v2(at) : v1(at, v.controllers ?? ''));
  }
  ops.push(op.readonly('sys/fs/cgroup'));
  return ops;
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

/** The control socket a stored plan's init listens on (planView.ts reads the rest of a stored plan). */
export function controlPath(plan: SessionPlan): string {
  const c = plan.ops.find((o) => o.op === 'control');
  const args = c && readOp(c, 'control');
  if (!args) throw new PlanError('the plan has no control op');
  return args.path;
}
