// The fleet's network on one machine (`npm run fleet`, the fleet tests): a
// host bridge, the fleet's switch, with the host's address on it (where etcd
// listens), and per node a network namespace joined to it by a veth pair.
// A daemon started in its namespace (`nsenter --net`, mount namespace kept)
// has its own links, session bridge and nftables table, reaches etcd and the
// other nodes only across that link, and is cut off by taking its host end
// down. Built with ip(8): set up once per run, never on a hot path.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { randomInt } from 'node:crypto';

const NETNS_DIR = '/run/netns';

export interface NodeNet {
  /** The namespace's name (ip netns) and its path, for `nsenter --net=PATH`. */
  name: string;
  path: string;
  /** The node's address on the fleet bridge: its peer listener binds here. */
  address: string;
  /** The namespace's inode: what still runs in it after remove() shows with netnsHolders(). */
  inode: number;
}

export interface FleetNet {
  bridge: string;
  /** The host's address on the fleet bridge: etcd listens there. */
  host: string;
  nodes: NodeNet[];
  /** Take node i's link down: nothing reaches it or leaves it but through its Unix socket. */
  cut(i: number): void;
  heal(i: number): void;
  /** Delete the namespaces (their links, bridges and nftables tables go with them) and the bridge. */
  remove(): void;
}

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`);
}

/** A /24 in 10.200-249.x.0 that no address of this host is in. */
function freeSubnet(): string {
  const used = spawnSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' }).stdout ?? '';
  for (let i = 0; i < 200; i++) {
    const prefix = `10.${200 + randomInt(50)}.${randomInt(256)}`;
    if (!used.includes(` ${prefix}.`)) return prefix;
  }
  throw new Error('no free /24 in 10.200.0.0/13 for the fleet bridge');
}

/**
 * The fleet's bridge `${link}` and `count` namespaces `${netns}-${i}`, node
 * i's host end `${link}h${i}`. `link` must leave room for "h9" in 15 bytes.
 */
export function makeFleetNet(o: { link: string; netns: string; count: number }): FleetNet {
  if (o.link.length > 13) throw new RangeError(`link name ${o.link}: at most 13 bytes`);
  const prefix = freeSubnet();
  const host = `${prefix}.1`;
  const nodes: NodeNet[] = [];
  const net: FleetNet = {
    bridge: o.link,
    host,
    nodes,
    cut: (i) => ip(['link', 'set', `${o.link}h${i}`, 'down']),
    heal: (i) => ip(['link', 'set', `${o.link}h${i}`, 'up']),
    remove: () => removeFleetNet(o.link, nodes.map((n) => n.name)),
  };
  try {
    // The namespaces first: a sweep by another run takes a bridge with no namespace of its tag for a killed run's.
    for (let i = 0; i < o.count; i++) {
      const name = `${o.netns}-${i}`;
      ip(['netns', 'add', name]);
      nodes.push({ name, path: `${NETNS_DIR}/${name}`, address: `${prefix}.${10 + i}`, inode: statSync(`${NETNS_DIR}/${name}`).ino });
    }
    ip(['link', 'add', o.link, 'type', 'bridge']);
    ip(['addr', 'add', `${host}/24`, 'dev', o.link]);
    ip(['link', 'set', o.link, 'up']);
    nodes.forEach(({ name, address }, i) => {
      const hostEnd = `${o.link}h${i}`;
      ip(['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
      ip(['link', 'set', hostEnd, 'master', o.link, 'up']);
      ip(['-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      ip(['-n', name, 'link', 'set', 'eth0', 'up']);
      // Published ports and the daemon's own loopback uses.
      ip(['-n', name, 'link', 'set', 'lo', 'up']);
    });
  } catch (e) {
    net.remove();
    throw e;
  }
  return net;
}

/** PIDs of processes in the network namespace of this inode (a deleted namespace lives on in them). */
export function netnsHolders(inode: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readlinkSync(`/proc/${e}/ns/net`) === `net:[${inode}]`) out.push(Number(e));
    } catch {
      /* gone, or a kernel thread */
    }
  }
  return out;
}

function removeFleetNet(link: string, namespaces: readonly string[]): void {
  // The host ends first, and with each its pair: a namespace's own links go
  // with it only once the kernel's cleanup of it runs, a moment later.
  namespaces.forEach((n, i) => {
    spawnSync('ip', ['link', 'del', `${link}h${i}`], { stdio: 'ignore' });
    if (existsSync(`${NETNS_DIR}/${n}`)) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
  });
  spawnSync('ip', ['link', 'del', link], { stdio: 'ignore' });
}

/** `argv` run in the network namespace at `netns` alone (nsenter execs: the PID is the command's). */
export const inNetns = (netns: string, argv: readonly string[]): [string, string[]] => ['nsenter', [`--net=${netns}`, ...argv]];

/**
 * Remove the namespaces named `${netnsPrefix}...` for which `stale(name)`
 * says so (a killed run's), then the host links matching `links`, whose
 * first group is the tag of their run, that no namespace left names (a
 * run's names are `...-TAG-I`).
 */
export function sweepFleetNets(netnsPrefix: string, stale: (name: string) => boolean, links: RegExp): void {
  const namespaces = () => (existsSync(NETNS_DIR) ? readdirSync(NETNS_DIR).filter((n) => n.startsWith(netnsPrefix)) : []);
  for (const n of namespaces().filter(stale)) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
  const left = namespaces();
  for (const l of existsSync('/sys/class/net') ? readdirSync('/sys/class/net') : []) {
    const tag = links.exec(l)?.[1];
    if (tag !== undefined && !left.some((n) => n.includes(`-${tag}-`))) spawnSync('ip', ['link', 'del', l], { stdio: 'ignore' });
  }
}
