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

  it('masquerades egress only when enabled', () => {
    expect(text).toContain('ip saddr 10.200.7.0/29 oifname != "enclave0" masquerade');
    expect(text).toMatch(/iifname "enclave0" accept\n/);
    const closed = renderRuleset({ ...plan, egress: false }, []);
    expect(closed).not.toContain('masquerade');
    expect(closed).toMatch(/iifname "enclave0" goto refuse\n\s*\}\n\s*chain postrouting/);
  });
});
