import { describe, expect, it } from 'vitest';
import { renderRuleset } from '../../src/network/firewall.js';
import { parseSubnet } from '../../src/network/addressing.js';

const plan = { table: 'enclave', bridge: 'enclave0', subnet: parseSubnet('10.200.7.0/29'), egress: true };

describe('nftables ruleset', () => {
  // Two of the subnet's addresses leased now.
  const text = renderRuleset(plan, [0x0ac80702, 0x0ac80705]);

  it('replaces only its own inet table, atomically', () => {
    const lines = text.split('\n');
    expect(lines.slice(0, 3)).toEqual(['table inet enclave', 'delete table inet enclave', 'table inet enclave {']);
    expect(text).not.toMatch(/table (ip|ip6|bridge|netdev) /);
    expect(text.match(/^(delete )?table /gm)).toHaveLength(3);
  });

  it('binds each leased address, and only those, to its MAC for anti-spoofing', () => {
    expect(text).toContain('elements = { 02:00:0a:c8:07:02 . 10.200.7.2, 02:00:0a:c8:07:05 . 10.200.7.5 }');
    expect(text).toContain('iifname "enclave0" meta protocol ip ether saddr . ip saddr != @bindings drop');
    // No lease: an empty set (nft refuses an empty elements list), every IPv4 packet from the bridge dropped.
    const none = renderRuleset(plan, []);
    expect(none).not.toContain('elements');
    expect(none).toMatch(/set bindings \{\n\s*type ether_addr \. ipv4_addr\n\s*\}/);
  });

  it('refuses session-to-host, session-to-session and metadata traffic, fast', () => {
    expect(text).toMatch(/chain input \{[^}]*iifname "enclave0" ct state established,related accept\n\s*iifname "enclave0" goto refuse/);
    expect(text).toContain('iifname "enclave0" oifname "enclave0" goto refuse');
    expect(text).toContain('iifname "enclave0" ip daddr 169.254.0.0/16 goto refuse');
    expect(text).toMatch(/chain refuse \{\n\s*meta l4proto tcp reject with tcp reset\n\s*reject with icmpx type admin-prohibited/);
  });

  it('forwards each published port, and only those, from a map: DNAT in the output hook, SNAT to the gateway out through the bridge', () => {
    const published = [
      { host_ip: '127.0.0.1', host_port: 8080, address: 0x0ac80702, session_port: 80 },
      { host_ip: '127.0.0.2', host_port: 3000, address: 0x0ac80705, session_port: 3000 },
    ];
    const withPorts = renderRuleset(plan, [0x0ac80702, 0x0ac80705], published);
    expect(withPorts).toMatch(/map published \{\n\s*type ipv4_addr \. inet_service : ipv4_addr \. inet_service\n\s*elements = \{ 127\.0\.0\.1 \. 8080 : 10\.200\.7\.2 \. 80, 127\.0\.0\.2 \. 3000 : 10\.200\.7\.5 \. 3000 \}\n\s*\}/);
    // Host-originated only: the output hook; nothing arriving from outside is translated.
    expect(withPorts).toMatch(/chain output \{\n\s*type nat hook output priority -100; policy accept;\n\s*ip daddr 127\.0\.0\.0\/8 dnat ip to ip daddr \. tcp dport map @published/);
    expect(withPorts).not.toMatch(/hook prerouting priority dstnat/);
    expect(withPorts).toMatch(/chain postrouting \{[^}]*ip saddr 127\.0\.0\.0\/8 oifname "enclave0" snat ip to 10\.200\.7\.1/);
    // route_localnet is on for the bridge: what a session sends to the host's loopback is dropped first.
    expect(withPorts).toMatch(/chain prerouting \{\n\s*type filter hook prerouting priority raw; policy accept;\n\s*iifname "enclave0" ip daddr 127\.0\.0\.0\/8 drop/);
    // None published: an empty map (nft refuses an empty elements list); the rules stay.
    expect(text).toMatch(/map published \{\n\s*type ipv4_addr \. inet_service : ipv4_addr \. inet_service\n\s*\}/);
    expect(text).toContain('dnat ip to ip daddr . tcp dport map @published');
    // With egress off too: published ports do not depend on it.
    expect(renderRuleset({ ...plan, egress: false }, [], published)).toContain('ip saddr 127.0.0.0/8 oifname "enclave0" snat ip to 10.200.7.1');
  });

  it('masquerades egress only when enabled', () => {
    expect(text).toContain('ip saddr 10.200.7.0/29 oifname != "enclave0" masquerade');
    expect(text).toMatch(/iifname "enclave0" accept\n/);
    const closed = renderRuleset({ ...plan, egress: false }, []);
    expect(closed).not.toContain('masquerade');
    expect(closed).toMatch(/iifname "enclave0" goto refuse\n\s*\}\n\s*chain postrouting/);
  });
});
