// The one nftables table Enclave owns, rendered from config and applied
// atomically with `nft -f` (once, at daemon start). No rule changes per
// session: anti-spoofing binds each address to the MAC derived from it, and a
// session cannot change its MAC (no CAP_NET_ADMIN, no packet sockets).
import { spawn } from 'node:child_process';
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

/** Pure: the complete ruleset, replacing any earlier version of the table. */
export function renderRuleset(p: FirewallPlan): string {
  const br = JSON.stringify(p.bridge);
  const cidr = subnetCidr(p.subnet);
  const bindings: string[] = [];
  for (let ip = p.subnet.first; ip <= p.subnet.last; ip++) bindings.push(`${macFor(ip)} . ${intToIp(ip)}`);
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
    `    elements = { ${bindings.join(', ')} }`,
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

function nft(input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('nft', ['-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    p.stderr.on('data', (b: Buffer) => err.push(b));
    p.on('error', (e) => reject(new Error(`cannot run nft (install nftables): ${e.message}`)));
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`nft failed: ${Buffer.concat(err).toString().trim().slice(0, 500)}`))));
    p.stdin.end(input);
  });
}

export function applyRuleset(p: FirewallPlan): Promise<void> {
  return nft(renderRuleset(p));
}

export function removeRuleset(table: string): Promise<void> {
  return nft(`table inet ${table}\ndelete table inet ${table}\n`);
}
