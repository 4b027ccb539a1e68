// IPv4 arithmetic for the session subnet: gateway, the allocatable range, and
// the MAC each address is bound to (02:00 + the four address bytes), which the
// firewall's anti-spoofing set relies on.
export interface Subnet {
  network: number;
  prefix: number;
  gateway: number;
  /** First and last address a session may lease. */
  first: number;
  last: number;
}

export function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new RangeError(`not an IPv4 address: ${ip}`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function parseSubnet(cidr: string): Subnet {
  const [addr, len] = cidr.split('/');
  const prefix = Number(len);
  if (!addr || !Number.isInteger(prefix) || prefix < 8 || prefix > 29) throw new RangeError(`subnet ${cidr}: prefix must be /8 to /29`);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (ipToInt(addr) & mask) >>> 0;
  const broadcast = (network | (~mask >>> 0)) >>> 0;
  return { network, prefix, gateway: network + 1, first: network + 2, last: broadcast - 1 };
}

export function macFor(ip: number): string {
  return ['02', '00', ...[ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** Host end of a session's veth: "ve-" + the id's 10 hex digits (13 < IFNAMSIZ). */
export function hostIfName(sessionId: string): string {
  return `ve-${sessionId.slice(2)}`;
}
