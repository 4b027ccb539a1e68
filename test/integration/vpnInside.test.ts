// A VPN between two system sessions (issue 26): Debian's OpenVPN on a TUN
// device in each session's own network namespace, a static key made in the
// test. Sessions cannot reach each other directly (bridge port isolation and
// the forward chain), so both dial out, as two peers behind NAT do, to a
// relay on a host outside Enclave (outside.ts) that splices their two TCP
// connections: everything the sessions say to each other goes encrypted
// through it. Traffic passes over the tunnel addresses; the host's links and
// routes and a third session's stay as they were.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isRoot, TestDaemon } from './harness.js';
import { OutsideHost } from './outside.js';

const OPENVPN = '/usr/sbin/openvpn';
const installed = existsSync(OPENVPN) && existsSync('/bin/busybox');

/** Splices the first two live TCP connections to each other (a peer that hangs up before its partner comes is forgotten). */
const RELAY = `
const net = require('net');
let waiting = null;
net.createServer((c) => {
  c.on('error', () => c.destroy());
  if (!waiting) { waiting = c; c.pause(); c.once('close', () => { if (waiting === c) waiting = null; }); return; }
  const a = waiting; waiting = null;
  a.pipe(c); c.pipe(a); a.resume();
  a.on('close', () => c.destroy()); c.on('close', () => a.destroy());
}).listen(Number(process.argv[1]), () => console.log('ready'));
`;

const host = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });
/**
 * The host's network as a VPN in a session could change it: its TUN/TAP
 * links, its policy rules, and its routes on the links it had before. Other
 * tests on the machine add and remove their own links (and their routes)
 * meanwhile: a route on a link that came or went since is not compared; a
 * new tun, a route to the tunnel or a changed route on any other link shows.
 */
const linkNames = () => new Set(host('ip', ['-o', 'link', 'show']).split('\n').map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1]).filter((n): n is string => !!n));
const hostNet = (devices: Set<string>) => ({
  tun: host('ip', ['-o', 'link', 'show', 'type', 'tun']),
  rules: host('ip', ['rule', 'show']),
  // A bridge's carrier comes and goes with its ports (this test's own sessions'): linkdown is not compared.
  routes: host('ip', ['route', 'show', 'table', 'all']).split('\n').filter((l) => l && devices.has(/ dev (\S+)/.exec(l)?.[1] ?? '')).map((l) => l.replace(' linkdown', '')),
  tunnelRoutes: host('ip', ['route', 'show', 'table', 'all']).split('\n').filter((l) => l.includes('10.99.0.')),
  forward: host('cat', ['/proc/sys/net/ipv4/ip_forward']),
});
/** Unchanged since `before` on every link still there but `own` (the test's bridge and outside link, which come up meanwhile). */
const expectHostUnchanged = (beforeLinks: Set<string>, before: ReturnType<typeof hostNet>, own: string[]) => {
  const links = linkNames();
  const both = new Set([...beforeLinks].filter((n) => links.has(n) && !own.includes(n)));
  const strip = (h: ReturnType<typeof hostNet>) => ({ ...h, routes: h.routes.filter((l) => both.has(/ dev (\S+)/.exec(l)![1]!)) });
  const now = hostNet(both);
  expect(strip(now)).toEqual(strip(before));
  expect(now.tun).toBe('');
  expect(now.tunnelRoutes).toEqual([]);
};

const LISTEN = "import socket; s = socket.socket(); s.bind(('10.99.0.2', 7000)); s.listen(); c, a = s.accept(); print(a[0], c.makefile().readline().strip())";
const waitUp = (log: string) => `i=0; until grep -q "Initialization Sequence Completed" ${log}; do i=$((i+1)); [ $i -lt 300 ] || { cat ${log}; exit 1; }; sleep 0.1; done; echo up`;
const openvpn = (outside: string, dir: 0 | 1, local: string, remote: string) =>
  `openvpn --dev tun0 --proto tcp-client --remote ${outside} 1194 --ifconfig ${local} ${remote} --secret /etc/vpn.key ${dir} --cipher AES-256-CBC --auth SHA256 ` +
  '--connect-retry 1 --daemon --log /var/log/vpn.log --writepid /run/vpn.pid';

describe.skipIf(!isRoot)('a VPN between two system sessions (root)', () => {
  const d = new TestDaemon();
  const outside = new OutsideHost(d.tag);
  let relay: ChildProcess;
  let before: ReturnType<typeof hostNet>;
  let beforeLinks: Set<string>;
  let bystanderBefore = '';
  const bystanderNet = async () => (await d.sh('bystander', 'ip -o link show; ip route show table all; ip -o addr show')).stdout;

  beforeAll(async () => {
    // The root suite needs it (npm run setup installs openvpn): a missing package fails, it does not skip.
    expect(installed, `${OPENVPN} and /bin/busybox must be installed (apt-get install openvpn busybox-static)`).toBe(true);
    await d.start();
    outside.up();
    relay = outside.node(RELAY, ['1194']);
    await OutsideHost.waitForLine(relay, 'ready');
    beforeLinks = linkNames();
    before = hostNet(beforeLinks);
    await d.create({ name: 'bystander', profile: 'system', memory_mb: 128 });
    bystanderBefore = await bystanderNet();
    await d.create({ name: 'left', profile: 'system', memory_mb: 256 });
    await d.create({ name: 'right', profile: 'system', memory_mb: 256 });
  });
  afterAll(async () => {
    outside.down();
    await d.cleanup();
  });

  it('the two sessions cannot reach each other directly', async () => {
    const right = (await d.show('right')).network.address!;
    const r = await d.sh('left', `busybox ping -c 1 -W 2 ${right} > /dev/null 2>&1 && echo reached || echo refused`);
    expect(r.stdout).toBe('refused\n');
  });

  it('connects OpenVPN on a TUN device in each session and passes ping and a TCP exchange over the tunnel addresses', async () => {
    const key = await d.sh('left', 'openvpn --genkey secret /etc/vpn.key && chmod 0600 /etc/vpn.key && cat /etc/vpn.key');
    expect(key.stdout).toMatch(/BEGIN OpenVPN Static key/);
    expect((await d.sh('right', 'umask 077 && cat > /etc/vpn.key', key.stdout)).code).toBe(0);
    expect((await d.sh('left', openvpn(outside.ip, 0, '10.99.0.1', '10.99.0.2'))).code).toBe(0);
    expect((await d.sh('right', openvpn(outside.ip, 1, '10.99.0.2', '10.99.0.1'))).code).toBe(0);
    expect((await d.sh('left', waitUp('/var/log/vpn.log'))).stdout).toBe('up\n');
    expect((await d.sh('right', waitUp('/var/log/vpn.log'))).stdout).toBe('up\n');

    const ping = await d.sh('left', 'busybox ping -c 3 -W 10 10.99.0.2');
    expect(ping.stdout).toMatch(/3 packets transmitted, 3 packets received/);

    // A listener bound to right's tunnel address only, which exists nowhere but on its tun0; it prints its peer's address.
    const listen = d.sh('right', `python3 -c "${LISTEN}"`);
    const send = await d.sh('left', 'i=0; until echo "over the tunnel" | busybox nc -w 5 10.99.0.2 7000; do i=$((i+1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done; echo sent');
    expect(send.stdout).toBe('sent\n');
    expect((await listen).stdout).toBe('10.99.0.1 over the tunnel\n');
    const rx = await d.sh('right', 'cat /sys/class/net/tun0/statistics/rx_packets');
    expect(Number(rx.stdout)).toBeGreaterThan(3);
  });

  it('the host\'s links and routes and a third session\'s network are unchanged while the tunnel is up', async () => {
    expect((await d.sh('left', 'ip -o link show tun0 | grep -c tun0; ip route show 10.99.0.2')).stdout).toMatch(/^1\n10\.99\.0\.2 dev tun0/);
    expectHostUnchanged(beforeLinks, before, [d.bridge, outside.hostEnd]);
    expect(await bystanderNet()).toBe(bystanderBefore);
  });

  it('destroying the sessions ends the VPN: nothing of it on the host', async () => {
    await d.destroy('left');
    await d.destroy('right');
    expectHostUnchanged(beforeLinks, before, [d.bridge, outside.hostEnd]);
    expect(await bystanderNet()).toBe(bystanderBefore);
  });
});
