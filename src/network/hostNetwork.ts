// Host side of session networking, set up once at daemon start: the bridge
// with the gateway address, IPv4 forwarding, and Enclave's nftables table
// with what sessions hold now (leases, published ports).
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { addon } from '../native/addon.js';
import { intToIp, parseSubnet, type Subnet } from './addressing.js';
import { applyRuleset, removeRuleset, type PortForward } from './firewall.js';

export interface HostNetwork {
  bridge: string;
  subnet: Subnet;
  mtu: number;
}

/** The network config (network.*). */
export interface NetworkConfig {
  bridge: string;
  table: string;
  subnet: string;
  egress: boolean;
}

/**
 * `leased`: the addresses sessions hold now; `published`: the ports they
 * publish now. Their elements are part of the one atomic load, which
 * replaces the table's earlier version in one commit: an element of a live
 * session is never missing, not even for a moment, and one no session holds
 * any more is gone.
 */
export async function ensureHostNetwork(n: NetworkConfig, leased: readonly number[], published: readonly PortForward[] = []): Promise<HostNetwork> {
  const subnet = parseSubnet(n.subnet);
  addon().ensureBridge(n.bridge, intToIp(subnet.gateway), subnet.prefix);
  // Sessions route through the host; Docker and every router do the same.
  writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
  // Published ports: a connection to 127.x.y.z is DNAT'd to a session in the
  // output hook, and its packets keep their 127/8 source until postrouting
  // SNATs them. The kernel refuses to route a locally generated packet with
  // a 127/8 source out of a device other than lo (and treats a 127/8
  // destination arriving on one as martian: the session's replies, once
  // un-NAT'd) unless that device has route_localnet. On the bridge only; the
  // table drops what a session itself sends to 127/8 (prerouting), and its
  // input chain refuses any new connection from the bridge anyway.
  writeFileSync(`/proc/sys/net/ipv4/conf/${n.bridge}/route_localnet`, '1');
  await applyRuleset({ table: n.table, bridge: n.bridge, subnet, egress: n.egress }, leased, published);
  const bridge = addon().link(n.bridge);
  if (!bridge) throw new Error(`bridge ${n.bridge} vanished while it was set up`);
  decideSysfs(n.bridge, bridge.index, intToIp(subnet.gateway));
  return { bridge: n.bridge, subnet, mtu: bridge.mtu };
}

// Whether /sys/class/net shows the daemon's own links: sysfs shows the netns
// of whoever mounted it (the host's, at boot), and a daemon entered into a
// netns of its own (`nsenter --net`, as a fleet node is) keeps that mount.
// The daemon tells at start by its bridge (ensureHostNetwork): sysfs is its
// netns's if it holds that bridge with rtnetlink's ifindex and the MAC the
// daemon pinned. Not by PID 1's netns, which a sandbox may hide even from
// root. A process that sets up no bridge (doctor, --cleanup) compares every
// link instead, each time.
let sysfsOurs: boolean | undefined;

function decideSysfs(bridge: string, index: number, gateway: string): void {
  const mac = ['02', '00', ...gateway.split('.').map((n) => Number(n).toString(16).padStart(2, '0'))].join(':');
  try {
    sysfsOurs = Number(readFileSync(`/sys/class/net/${bridge}/ifindex`, 'utf8')) === index && readFileSync(`/sys/class/net/${bridge}/address`, 'utf8').trim() === mac;
  } catch {
    sysfsOurs = false;
  }
}

function sysfsIsOurs(): boolean {
  if (sysfsOurs !== undefined) return sysfsOurs;
  try {
    const mine = addon().links().map((l) => `${l.name}:${l.index}`).sort().join();
    // Links only (bonding_masters is a file there when bonding is loaded).
    const seen = readdirSync('/sys/class/net', { withFileTypes: true })
      .filter((e) => !e.isFile())
      .map((e) => `${e.name}:${readFileSync(`/sys/class/net/${e.name}/ifindex`, 'utf8').trim()}`)
      .sort()
      .join();
    return mine === seen;
  } catch {
    return false; // a link went between the readings: the per-netns answer, which is never another netns's
  }
}

/**
 * Whether a link of this name exists in the daemon's network namespace, as
 * long as its name cannot be taken again: its sysfs entry, which goes last
 * (rtnetlink forgets the name first, and asking it waits on the kernel's
 * RTNL lock, which a netns teardown holds for tens of ms). In a netns of its
 * own, its IPv4 sysctl directory, per netns and gone a moment before.
 */
export function linkExists(name: string): boolean {
  // Never a name that is always there: '.', '..', and the sysctl tree's own 'all' and 'default'.
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name) || ['.', '..', 'all', 'default'].includes(name)) return false;
  return existsSync(sysfsIsOurs() ? `/sys/class/net/${name}` : `/proc/sys/net/ipv4/conf/${name}`);
}

/** A link's traffic counters: from sysfs where it is ours, else through rtnetlink; null if there is no such link. */
export function linkCounters(name: string): { rxBytes: number; txBytes: number } | null {
  if (sysfsIsOurs()) {
    try {
      const read = (c: string) => Number(readFileSync(`/sys/class/net/${name}/statistics/${c}`, 'utf8'));
      return { rxBytes: read('rx_bytes'), txBytes: read('tx_bytes') };
    } catch {
      return null;
    }
  }
  const l = addon().link(name);
  return l && l.rxBytes !== null && l.txBytes !== null ? { rxBytes: l.rxBytes, txBytes: l.txBytes } : null;
}

/** Ports currently enslaved to the bridge (host ends of session veths). */
export function bridgePorts(bridge: string): string[] {
  const all = addon().links();
  const index = all.find((l) => l.name === bridge)?.index;
  return index === undefined ? [] : all.filter((l) => l.master === index).map((l) => l.name);
}

/** `enclave daemon --cleanup`: remove the bridge and the table. */
export async function removeHostNetwork(n: Pick<NetworkConfig, 'bridge' | 'table'>): Promise<void> {
  for (const port of bridgePorts(n.bridge)) addon().deleteLink(port);
  addon().deleteLink(n.bridge);
  await removeRuleset(n.table);
}

/** resolv.conf for sessions: the host's non-loopback nameservers. */
export function resolvConf(hostResolv: string): string {
  const servers = hostResolv
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((s): s is string => !!s && !/^127\.|^::1$/.test(s) && !s.includes(':'));
  const search = hostResolv.split('\n').find((l) => /^\s*search\s/.test(l));
  return ['# generated by Enclave', ...servers.map((s) => `nameserver ${s}`), ...(search ? [search.trim()] : [])].join('\n') + '\n';
}

export function hostsFile(hostname: string, address: string | null): string {
  return ['127.0.0.1\tlocalhost', `${address ?? '127.0.1.1'}\t${hostname}`, ''].join('\n');
}
