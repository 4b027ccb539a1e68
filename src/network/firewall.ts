// The one nftables table Enclave owns, rendered from config and applied
// atomically through libnftables (native/src/nft.c) at daemon start. No rule
// changes per session: anti-spoofing binds each leased address to the MAC
// derived from it (a session cannot change its MAC: no CAP_NET_ADMIN, no
// packet sockets), one set element per lease, added before the session's
// link exists and removed when the lease is given back. A packet from an
// address no session holds matches no element and is dropped.
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

/** Pure: the complete ruleset, replacing any earlier version of the table, with the bindings of the addresses leased now. */
export function renderRuleset(p: FirewallPlan, leased: readonly number[]): string {
  const br = JSON.stringify(p.bridge);
  const cidr = subnetCidr(p.subnet);
  const bindings = leased.map(binding);
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
    `  chain refuse {`,
    `    meta l4proto tcp reject with tcp reset`,
    `    reject with icmpx type admin-prohibited`,
    `  }`,
    `  chain prerouting {`,
    `    type filter hook prerouting priority raw; policy accept;`,
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
    p.egress ? `    ip saddr ${cidr} oifname != ${br} masquerade` : '',
    `  }`,
    `}`,
    '',
  ]
    .filter((l) => l !== '')
    .join('\n');
}

export function applyRuleset(p: FirewallPlan, leased: readonly number[]): Promise<void> {
  return addon().nftApply(renderRuleset(p, leased));
}

export function removeRuleset(table: string): Promise<void> {
  return addon().nftApply(`table inet ${table}\ndelete table inet ${table}\n`);
}

/**
 * The anti-spoofing element of each lease. Changes are applied one at a time
 * in the order they were asked for: an address given back and leased again
 * is unbound before it is bound anew, never after.
 */
export class AddressBindings {
  private tail: Promise<void> = Promise.resolve();

  /** `apply`: how a script reaches the kernel (libnftables; a test passes its own). */
  constructor(
    private readonly table: string,
    private readonly apply: (script: string) => Promise<void> = (script) => addon().nftApply(script),
  ) {}

  private queue(script: string): Promise<void> {
    const next = this.tail.then(() => this.apply(script));
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** Before the session's link exists: until then its packets are dropped anyway. */
  bind(ip: number): Promise<void> {
    return this.queue(`add element inet ${this.table} bindings { ${binding(ip)} }\n`);
  }

  /** Once the address is no longer the session's. Rejects if there was no such element. */
  unbind(ip: number): Promise<void> {
    return this.queue(`delete element inet ${this.table} bindings { ${binding(ip)} }\n`);
  }
}
