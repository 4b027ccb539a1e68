// Pure planning: from a create request to the session's limits and checked
// volume targets, and from a session row (its slot, lease, hostname), its
// limits, the config and a few host facts to the session's plan. No I/O; the
// same inputs give the same plan. The create pipeline stores what this returns.
import { dirname, join } from 'node:path';
import { ApiError } from '../vocab/errors.js';
import { LIMITS, type LimitKey, type Limits } from '../vocab/limitTable.js';
import type { Config } from '../config/schema.js';
import { rlimitsFor } from '../isolation/hardening.js';
import { rangeForSlot } from '../isolation/idRange.js';
import { buildPlan, PlanError, type HostRoot, type Injected, type LayeredRoot, type SessionPlan } from '../isolation/plan.js';
import { HOST_USR } from '../isolation/usrMasks.js';
import { planView } from '../isolation/planView.js';
import type { BootPlan } from '../isolation/bootPlan.js';
import type { CgroupView } from '../isolation/cgroups.js';
import type { DeviceNodes } from '../isolation/deviceNodes.js';
import { capabilityMask, plainProcSys, setgroupsFor, writableRoot, type Profile } from '../isolation/profiles.js';

export type { Profile };
import { hostIfName, intToIp, macFor } from '../network/addressing.js';
import type { SessionRow } from '../store/sessionStore.js';

const MIB = 1024 * 1024;

/** What the daemon found on the host at start, the same for every session. */
export interface HostFacts {
  /** Each profile's compiled seccomp program. */
  seccomp: Record<Profile, Buffer>;
  sysMasks: string[];
  bridge: string;
  mtu: number;
  gateway: number;
  /** The minimal root's base layer (sessions.rootfs = "minimal"). */
  baseLayer?: string | undefined;
  /** Entries of the host's /usr other users cannot read, masked in the minimal root (usrMasks.ts); set once the start's scan is done. */
  usrMasks?: readonly string[] | undefined;
  /** The mount point of the daemon's lxcfs, set while it serves (sessions.lxcfs "on" or "required"). */
  lxcfs?: string | undefined;
  /** Why lxcfs does not serve, when it is wanted and does not: sessions planned meanwhile get the kernel's files (sessions.lxcfs = "on"). */
  lxcfsDown?: string | undefined;
  /** The system profile's TUN and FUSE nodes (deviceNodes.ts), or why the host has none. */
  devices?: { nodes: DeviceNodes } | { missing: string } | undefined;
}

/** The system profile's part of a plan; fails closed on a host without its devices. */
function systemPart(host: HostFacts, profile: Profile): { nodes: DeviceNodes } | undefined {
  if (!plainProcSys(profile)) return undefined;
  const d = host.devices;
  if (!d || 'missing' in d) throw new PlanError(`the system profile needs /dev/net/tun and /dev/fuse: ${d ? d.missing : 'not prepared'}`);
  return { nodes: d.nodes };
}

export function sessionDir(config: Config, id: string): string {
  return join(config.state_dir, 'sessions', id);
}

export function controlPathFor(config: Config, id: string): string {
  return join(sessionDir(config, id), 'control');
}

export function newrootDir(config: Config): string {
  return join(config.state_dir, 'newroot');
}

/**
 * The session's root: layers (minimal or a root directory), or the host's own "/" as it was.
 *
 * Only the minimal root masks what other host users cannot read, because
 * only there is host data idmapped: its /usr layer shows host uid 0 as the
 * session's root. The host's "/" is bound unmapped: host root's files are
 * no ID of the session's, so its root (capabilities or not) gets what any
 * host user gets, the "other" bits, and sessions.hide covers the rest. A
 * root directory is the administrator's own content, made for sessions:
 * its root-only files are the session OS's own (its shadow, say), not the
 * host's.
 */
function rootFor(c: Config, host: HostFacts, profile: Profile, limits: Limits): HostRoot | LayeredRoot {
  const rootfs = c.sessions.rootfs;
  if (rootfs === '/') return { kind: 'host', rootfs, masks: [c.state_dir, dirname(c.socket), ...c.sessions.hide] };
  const upper = writableRoot(profile) ? { bytes: (limits.root_mb ?? c.limits.root_mb) * MIB, inodes: c.tmpfs.root_inodes } : undefined;
  if (rootfs !== 'minimal') return { kind: 'layers', layers: [{ source: rootfs, at: '/' }], upper, hideBy: plainProcSys(profile) ? 'whiteout' : 'mount' };
  // Fail closed: no minimal root without the list of what it must hide.
  if (!host.baseLayer || !host.usrMasks) throw new PlanError('the minimal root is not ready: its base layer or the scan of the host\'s /usr is missing');
  // HOST_USR is mounted at /usr, so its host paths are the session's.
  // A system session's root may unmount: its masks are whiteouts in its writable layer.
  return { kind: 'layers', layers: [{ source: host.baseLayer, at: '/' }, { source: HOST_USR, at: '/usr' }], upper, masks: host.usrMasks, hideBy: plainProcSys(profile) ? 'whiteout' : 'mount' };
}

export function planFor(
  row: Pick<SessionRow, 'id' | 'hostname' | 'id_slot'>,
  limits: Limits,
  config: Config,
  host: HostFacts,
  s: {
    cgroups: string[];
    lease: number | undefined;
    files: { source: string; target: string }[];
    injected?: Injected | undefined;
    profile: Profile;
    volumes?: { source: string; target: string; readonly: boolean }[];
    cgroupView?: CgroupView[];
    boot?: BootPlan | undefined;
  },
): SessionPlan {
  const c = config;
  const root = rootFor(c, host, s.profile, limits);
  // "required" fails closed: no session sees the host's numbers by accident.
  if (c.sessions.lxcfs === 'required' && !host.lxcfs) throw new PlanError(`lxcfs is not serving (sessions.lxcfs = "required")${host.lxcfsDown ? `: ${host.lxcfsDown}` : ''}`);
  return buildPlan({
    hostname: row.hostname,
    ids: rangeForSlot(c.ids, row.id_slot!),
    cgroups: s.cgroups,
    newroot: newrootDir(c),
    root,
    capabilities: capabilityMask(s.profile),
    setgroups: setgroupsFor(s.profile),
    control: controlPathFor(c, row.id),
    home: { bytes: limits.home_mb * MIB, inodes: c.tmpfs.home_inodes },
    tmp: { bytes: limits.tmp_mb * MIB, inodes: c.tmpfs.tmp_inodes },
    secrets: { bytes: c.tmpfs.secrets_mb * MIB, inodes: c.tmpfs.secrets_inodes },
    rlimits: rlimitsFor(c.rlimits, limits),
    seccomp: host.seccomp[s.profile],
    sysMasks: host.sysMasks,
    files: s.files,
    injected: s.injected,
    volumes: s.volumes,
    lxcfs: c.sessions.lxcfs === 'off' ? undefined : host.lxcfs,
    cgroupView: s.cgroupView,
    system: systemPart(host, s.profile),
    boot: s.boot,
    network:
      s.lease === undefined
        ? undefined
        : { hostIf: hostIfName(row.id), mac: macFor(s.lease), mtu: host.mtu, bridge: host.bridge, address: intToIp(s.lease), prefix: 32, gateway: intToIp(host.gateway) },
  });
}

/** The limits of a new session: the request's, else the config's defaults; root_mb only with a writable root. */
export function limitsFor(c: Config, req: Partial<Record<LimitKey, number | undefined>>, profile: Profile): Limits {
  // A writable root needs layers: the host's own "/" stays read-only.
  const writable = writableRoot(profile) && c.sessions.rootfs !== '/';
  if (req.root_mb !== undefined && !writable) {
    throw new ApiError('invalid_request', `root_mb needs a writable root: profile "workspace" or "system" and a sessions.rootfs other than "/" (this session: profile "${profile}", rootfs "${c.sessions.rootfs}")`, 'root_mb');
  }
  const limits: Record<string, number> = {};
  for (const row of LIMITS) if (!('writableRootOnly' in row) || writable) limits[row.key] = req[row.key] ?? c.limits[row.key];
  return limits as Limits;
}

/**
 * A read-only root cannot grow mount points: there a volume goes on /home
 * (instead of its tmpfs), under another volume, or on a directory the root
 * already has (/srv, /opt, /mnt in the minimal root). A writable root makes
 * any missing directory in its layer. `isDir` asks the root (a host path).
 */
export function checkVolumeTargets(volumes: { name: string; target: string }[], limits: Limits, isDir: (target: string) => boolean): void {
  if (limits.root_mb !== undefined) return;
  for (const v of volumes) {
    if (v.target === '/home' || volumes.some((o) => v.target.startsWith(`${o.target}/`))) continue;
    if (!isDir(v.target)) throw new ApiError('invalid_request', `volume ${v.name}: ${v.target} is not a directory of this session's read-only root (a strict session, or sessions.rootfs "/"): use /home, /srv, /opt or /mnt, or a workspace session`, 'volumes');
  }
}

/**
 * The host path where a session's read-only root (its layers, as created)
 * holds `path`, for choosing a login shell; what the session wrote in its
 * own layer is not looked at.
 */
export function hostPathInRoot(plan: SessionPlan, path: string): string {
  return planView(plan).hostPath(path);
}
