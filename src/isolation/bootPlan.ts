// --init systemd: what a session that boots systemd inside needs, as policy.
// The mechanism is native/src/boot.c (systemd as PID 1 of a nested PID and
// mount namespace, forked by the session's own init when the daemon says
// "boot"); this file decides who may, what its plan adds, and which of the
// units the host's /usr ships are masked in it, each with why.
import { createHash } from 'node:crypto';
import type { Init, Profile } from '../vocab/profiles.js';
import type { CgroupLayout } from './cgroups.js';

/** systemd, from the session's /usr (the host's: Debian's systemd 252 here). */
export const SYSTEMD_PATH = '/usr/lib/systemd/systemd';

/**
 * Units masked in the session (symlinks to /dev/null in /run/systemd/system,
 * made fresh at every start: `systemctl unmask --runtime` lifts one). Each
 * is one that cannot work in a user namespace and would only fail.
 */
export const MASKED_UNITS: readonly { unit: string; why: string }[] = [
  { unit: 'sys-kernel-debug.mount', why: 'debugfs cannot be mounted from a user namespace (the kernel refuses with EPERM)' },
  { unit: 'sys-kernel-tracing.mount', why: 'tracefs cannot be mounted from a user namespace (EPERM)' },
  { unit: 'sys-kernel-config.mount', why: 'configfs is the host\'s (FS_USERNS_MOUNT unset): a mount from the session is refused' },
  { unit: 'sys-fs-fuse-connections.mount', why: 'fusectl is the host\'s: refused in a user namespace' },
  { unit: 'systemd-modules-load.service', why: 'module loading is the host\'s; seccomp refuses init_module and finit_module' },
  { unit: 'systemd-sysctl.service', why: 'the kernel/ and vm/ knobs are the host\'s: they stay read-only to the session' },
  { unit: 'systemd-udevd.service', why: 'devices are the host\'s: the session has a fixed /dev and no uevents' },
];

/** The session's machine ID: 128 bits derived from its id, stable across stop and start. */
export function machineIdFor(sessionId: string): string {
  return createHash('sha256').update(`enclave machine-id\0${sessionId}`).digest('hex').slice(0, 32);
}

/** Why a session cannot boot `init` here, or undefined: it can. */
export function bootRefusal(init: Init, profile: Profile, layout: CgroupLayout, rootfs: string): string | undefined {
  if (profile !== 'system') {
    return `--init ${init} needs --profile system: ${init} mounts, makes namespaces and cgroups, which only a system session may (this session: profile "${profile}")`;
  }
  if (rootfs === '/') return `--init ${init} needs a writable root (its /etc, /var): sessions.rootfs is "/", the host's own root, read-only`;
  // A v1 host: systemd keeps its tree in name=systemd, which a user namespace cannot make; it must be the host's, delegated.
  if (layout.mode !== 'unified' && !layout.named) return `--init ${init}: this host's v1 cgroups have no name=systemd hierarchy for the session's ${init} to keep its units in`;
  return undefined;
}

/** What buildPlan adds for a session that boots systemd. */
export interface BootPlan {
  init: string;
  machineId: string;
  masks: readonly string[];
}

export function bootPlanFor(sessionId: string): BootPlan {
  return { init: SYSTEMD_PATH, machineId: machineIdFor(sessionId), masks: MASKED_UNITS.map((u) => u.unit) };
}
