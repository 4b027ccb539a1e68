// The one nftables table Enclave owns, rendered from config and applied
// atomically through libnftables (native/src/nft.c) at daemon start. No rule
// changes per session: anti-spoofing binds each leased address to the MAC
// derived from it (a session cannot change its MAC: no CAP_NET_ADMIN, no
// packet sockets), one set element per lease, added before the session's
// link exists and removed when the lease is given back. A packet from an
// address no session holds matches no element and is dropped.
//
// Published ports are kernel NAT in the same table, as Docker publishes on
// loopback without its userland proxy: host-originated TCP to a published
// (127.x.y.z, port) is DNAT'd in the output hook to (session address,
// session port) from the map `published`, one element per published port,
// and SNAT'd to the gateway on its way out through the bridge, so that the
// session's reply comes back to the host. Nothing of the daemon's process is
// on the path: the ports answer while the daemon is down.
import { addon } from '../native/addon.js';
import { intToIp, macFor, type Subnet } from './addressing.js';

export interface FirewallPlan {
  table: string;
  bridge: string;
  subnet: Subnet;
  egress: boolean;
}

export function subnetCidr(s: Subnet): string {
  return `${intToIp(s.network)}/${s.prefix}`;
}

const binding = (ip: number) => `${macFor(ip)} . ${intToIp(ip)}`;

/** A published port as the kernel holds it: the host address and port, to the session's address and port. */
export interface PortForward {
  host_ip: string;
  host_port: number;
  /** The session's address. */
  address: number;
  session_port: number;
}

const forwardKey = (f: { host_ip: string; host_port: number }) => `${f.host_ip} . ${f.host_port}`;
const forward = (f: PortForward) => `${forwardKey(f)} : ${intToIp(f.address)} . ${f.session_port}`;

/**
 * Pure: the complete ruleset, replacing any earlier version of the table,
 * with the bindings of the addresses leased now and the ports published now.
 */
export function renderRuleset(p: FirewallPlan, leased: readonly number[], published: readonly PortForward[] = []): string {
  const br = JSON.stringify(p.bridge);
  const cidr = subnetCidr(p.subnet);
  const gateway = intToIp(p.subnet.gateway);
  const bindings = leased.map(binding);
  const forwards = published.map(forward);
  // TCP gets a reset: ICMP errors are rate-limited per destination
  // (icmp_ratelimit), so a second refusal within a second would be a timeout.
  const reject = 'goto refuse';
  return [
    // Declaring then deleting makes the load idempotent and atomic.
    `table inet ${p.table}`,
    `delete table inet ${p.table}`,
    `table inet ${p.table} {`,
    `  set bindings {`,
    `    type ether_addr . ipv4_addr`,
    bindings.length ? `    elements = { ${bindings.join(', ')} }` : '',
    `  }`,
    `  map published {`,
    `    type ipv4_addr . inet_service : ipv4_addr . inet_service`,
    forwards.length ? `    elements = { ${forwards.join(', ')} }` : '',
    `  }`,
    `  chain refuse {`,
    `    meta l4proto tcp reject with tcp reset`,
    `    reject with icmpx type admin-prohibited`,
    `  }`,
    `  chain prerouting {`,
    `    type filter hook prerouting priority raw; policy accept;`,
    `    iifname ${br} ip daddr 127.0.0.0/8 drop comment "host loopback: route_localnet is on for the bridge"`,
    `    # anti-spoofing: a session sends only from its own address`,
    `    iifname ${br} meta protocol ip ether saddr . ip saddr != @bindings drop`,
    `    iifname ${br} meta protocol != { ip, arp } drop`,
    `  }`,
    `  chain input {`,
    `    type filter hook input priority filter; policy accept;`,
    `    # sessions reach no host service, on the gateway or any other host address`,
    `    iifname ${br} ct state established,related accept`,
    `    iifname ${br} ${reject}`,
    `  }`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    iifname ${br} oifname ${br} ${reject} comment "session to session, through the gateway"`,
    `    iifname ${br} ip daddr 169.254.0.0/16 ${reject} comment "link-local and cloud metadata"`,
    `    oifname ${br} ct state established,related accept`,
    `    oifname ${br} drop comment "nothing outside starts a connection to a session"`,
    `    iifname ${br} ${p.egress ? 'accept' : reject}`,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    ip saddr 127.0.0.0/8 oifname ${br} snat ip to ${gateway} comment "published ports: the session answers its gateway"`,
    p.egress ? `    ip saddr ${cidr} oifname != ${br} masquerade` : '',
    `  }`,
    `  chain output {`,
    // nft 1.0.6 knows the name dstnat for prerouting only: -100 is its value.
    `    type nat hook output priority -100; policy accept;`,
    `    ip daddr 127.0.0.0/8 dnat ip to ip daddr . tcp dport map @published comment "published ports"`,
    `  }`,
    `}`,
    '',
  ]
    .filter((l) => l !== '')
    .join('\n');
}

export function applyRuleset(p: FirewallPlan, leased: readonly number[], published: readonly PortForward[] = []): Promise<void> {
  return addon().nftApply(renderRuleset(p, leased, published));
}

export function removeRuleset(table: string): Promise<void> {
  return addon().nftApply(`table inet ${table}\ndelete table inet ${table}\n`);
}

/** nft scripts applied one at a time, in the order they were asked for; one that fails does not stop the next. */
class ScriptQueue {
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly apply: (script: string) => Promise<void>) {}

  run(script: string): Promise<void> {
    const next = this.tail.then(() => this.apply(script));
    this.tail = next.catch(() => undefined);
    return next;
  }
}

const viaLibnftables = (script: string) => addon().nftApply(script);

/**
 * The anti-spoofing element of each lease. Changes are applied one at a time
 * in the order they were asked for: an address given back and leased again
 * is unbound before it is bound anew, never after.
 */
export class AddressBindings {
  private readonly queue: ScriptQueue;

  /** `apply`: how a script reaches the kernel (libnftables; a test passes its own). */
  constructor(
    private readonly table: string,
    apply: (script: string) => Promise<void> = viaLibnftables,
  ) {
    this.queue = new ScriptQueue(apply);
  }

  /** Before the session's link exists: until then its packets are dropped anyway. */
  bind(ip: number): Promise<void> {
    return this.queue.run(`add element inet ${this.table} bindings { ${binding(ip)} }\n`);
  }

  /** Once the address is no longer the session's. Rejects if there was no such element. */
  unbind(ip: number): Promise<void> {
    return this.queue.run(`delete element inet ${this.table} bindings { ${binding(ip)} }\n`);
  }
}

/**
 * The element of each published port in the map `published`, applied one
 * at a time in the order asked for: a port unpublished by one session and
 * published by another is removed before it is added again.
 */
export class PortForwards {
  private readonly queue: ScriptQueue;

  constructor(
    private readonly table: string,
    apply: (script: string) => Promise<void> = viaLibnftables,
  ) {
    this.queue = new ScriptQueue(apply);
  }

  /** Rejects if the host address and port forward elsewhere already ("File exists"). */
  add(f: PortForward): Promise<void> {
    return this.queue.run(`add element inet ${this.table} published { ${forward(f)} }\n`);
  }

  /** Rejects if there was no such element ("No such file or directory"). */
  remove(f: { host_ip: string; host_port: number }): Promise<void> {
    return this.queue.run(`delete element inet ${this.table} published { ${forwardKey(f)} }\n`);
  }
}
