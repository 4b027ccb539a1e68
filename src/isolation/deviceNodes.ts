// The system profile's devices (plan.ts SYSTEM_DEVICES): TUN and FUSE. The
// host's own nodes may be 0600 root's (as on a host without udev's rules),
// which no session ID could open, and a user namespace cannot mknod: the
// daemon makes its own 0666 copies once, under the 0700 state dir, and each
// system session's helper binds them (the host phase opens them, since a
// session's uid cannot walk the state dir). 0666 is udev's own mode for
// both: opening grants nothing, TUNSETIFF needs CAP_NET_ADMIN over the
// network namespace and a FUSE mount CAP_SYS_ADMIN over the mount
// namespace, the session's own. native/src/init.c refuses any other device.
import { execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** Each device the system profile binds: its path in the session (and on the host), its char major:minor. */
export const SYSTEM_DEVICE_NODES = [
  { at: 'net/tun', name: 'tun', major: 10, minor: 200 },
  { at: 'fuse', name: 'fuse', major: 10, minor: 229 },
] as const;

export type DeviceNodes = Record<(typeof SYSTEM_DEVICE_NODES)[number]['at'], string>;

const isNode = (path: string, major: number, minor: number) => {
  try {
    const st = lstatSync(path);
    return st.isCharacterDevice() && st.rdev === ((major << 8) | minor) && (st.mode & 0o7777) === 0o666 && st.uid === 0;
  } catch {
    return false;
  }
};

/**
 * Makes (or checks) the nodes in DIR; returns where each is, or why the
 * host cannot give them (no such device on the host: no system session).
 */
export function prepareDeviceNodes(dir: string): { nodes: DeviceNodes } | { missing: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const nodes: Partial<Record<string, string>> = {};
  for (const d of SYSTEM_DEVICE_NODES) {
    if (!isCharDevice(join('/dev', d.at))) return { missing: `the host has no /dev/${d.at} (char ${d.major}:${d.minor}): modprobe ${d.name}` };
    const path = join(dir, d.name);
    if (!isNode(path, d.major, d.minor)) {
      rmSync(path, { force: true });
      execFileSync('mknod', ['-m', '0666', path, 'c', String(d.major), String(d.minor)]);
      chmodSync(path, 0o666);
    }
    nodes[d.at] = path;
  }
  return { nodes: nodes as DeviceNodes };
}

function isCharDevice(path: string): boolean {
  try {
    return lstatSync(path).isCharacterDevice();
  } catch {
    return false;
  }
}
