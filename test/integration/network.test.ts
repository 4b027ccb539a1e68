// Per-session networking on a real kernel: veth on a per-run bridge, the
// firewall's isolation claims, egress through masquerade to a test-owned
// "outside" namespace, anti-spoofing, port publishing, and teardown.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Session } from '../../src/api/schemas.js';
import { OutsideHost } from './outside.js';
import { isRoot, listenPort, TestDaemon, SESSION_PROBE } from './harness.js';

/** Node one-liners run inside sessions (the rootfs is the host's, node included). */
const serve = (port: number, reply: string) =>
  `node -e 'require("net").createServer(s=>s.end("${reply}")).listen(${port},"0.0.0.0")' >/dev/null 2>&1 &`;
const tryConnect = (host: string, port: number) =>
  `node -e 'const s=require("net").connect(${port},"${host}");s.setTimeout(3000,()=>{console.log("TIMEOUT");process.exit()});s.on("data",d=>{console.log("DATA "+d);process.exit()});s.on("error",e=>{console.log("ERR "+e.code);process.exit()})'`;

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8' });
}

function hostTcp(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.setTimeout(3000, () => resolve('TIMEOUT'));
    s.on('data', (d) => resolve(`DATA ${d}`));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(`ERR ${e.code}`));
    s.on('close', () => resolve('CLOSED'));
  });
}

/** The anti-spoofing set of the table: "MAC IP" per element, sorted. */
function bindings(table: string): string[] {
  const out = JSON.parse(sh('nft', ['-j', 'list', 'set', 'inet', table, 'bindings'])) as { nftables: { set?: { elem?: { concat: [string, string] }[] } }[] };
  return out.nftables.flatMap((o) => o.set?.elem ?? []).map((e) => e.concat.join(' ')).sort();
}

const macOf = (ip: string) => `02:00:${ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join(':')}`;

async function waitFor<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await f();
  while (!ok(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    v = await f();
  }
  return v;
}

describe.skipIf(!isRoot)('session networking (root)', () => {
  const d = new TestDaemon();
  // The test's own "outside" host: a netns behind a veth from the host.
  const outsideHost = new OutsideHost(d.tag);
  const { ip: outsideIp, hostSideIp } = outsideHost;
  const seen: string[] = [];
  let probe: string;
  let hostServer: Server;
  let hostPort: number;
  let a: Session;
  let b: Session;

  beforeAll(async () => {
    await d.start();
    probe = d.buildProbe();
    outsideHost.up();
    // TCP 7000 answers with the peer's address; UDP 7001 logs each datagram's source.
    const outside = outsideHost.node(
      `require("net").createServer(s=>s.end("from "+s.remoteAddress)).listen(7000,"0.0.0.0",()=>console.log("ready"));` +
        `require("dgram").createSocket("udp4").on("message",(m,r)=>console.log("udp "+m+" "+r.address)).bind(7001,"0.0.0.0")`,
    );
    outside.stdout!.on('data', (c: Buffer) => seen.push(...c.toString().trim().split('\n')));
    await waitFor(async () => seen.includes('ready'), (v) => v);
    hostServer = createServer((s) => s.end('host-service'));
    await new Promise<void>((r) => hostServer.listen(0, '0.0.0.0', () => r()));
    hostPort = (hostServer.address() as { port: number }).port;
    a = await d.create({ name: 'net-a' });
    b = await d.create({ name: 'net-b' });
  });

  afterAll(async () => {
    hostServer?.close();
    outsideHost.down();
    await d.cleanup();
    expect(existsSync(`/sys/class/net/${d.bridge}`)).toBe(false);
    expect(spawnSync('nft', ['list', 'table', 'inet', d.nftTable]).status).not.toBe(0);
  });

  it('gives each session eth0 with its leased address, a default route and its own names', async () => {
    expect(a.network.mode).toBe('bridge');
    expect(a.network.address).toMatch(new RegExp(`^${d.subnetPrefix.replace(/\./g, '\\.')}\\.\\d+$`));
    expect(a.network.address).not.toBe(b.network.address);
    const r = await d.sh('net-a', 'cat /sys/class/net/eth0/address; ip -4 -o addr show eth0 | awk "{print \\$4}"; ip route show default; ls /sys/class/net | tr "\\n" " "; echo; getent hosts net-a; cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6');
    const [mac, addr, route, links, hosts, v6off] = r.stdout.trim().split('\n');
    const bytes = a.network.address!.split('.').map((x) => Number(x).toString(16).padStart(2, '0'));
    expect(mac).toBe(`02:00:${bytes.join(':')}`);
    expect(addr).toBe(`${a.network.address}/32`);
    expect(route!.trim()).toBe(`default via ${a.network.gateway} dev eth0`);
    expect(links!.trim().split(' ').sort()).toEqual(['eth0', 'lo']);
    expect(hosts).toMatch(new RegExp(`^${a.network.address!.replace(/\./g, '\\.')}\\s+net-a$`));
    expect(v6off).toBe('1');
    // Host side: the veth is a port of the run's bridge, isolated, MTU of the bridge.
    const port = `ve-${a.id.slice(2)}`;
    expect(readdirSync(`/sys/class/net/${d.bridge}/brif`)).toContain(port);
    // The bridge's MAC is pinned (02:00 + gateway): it must not follow its ports.
    const gw = a.network.gateway!.split('.').map((x) => Number(x).toString(16).padStart(2, '0'));
    expect(readFileSync(`/sys/class/net/${d.bridge}/address`, 'utf8').trim()).toBe(`02:00:${gw.join(':')}`);
    expect(readFileSync(`/sys/class/net/${d.bridge}/addr_assign_type`, 'utf8').trim()).toBe('3'); // set by us
    expect(sh('bridge', ['-d', 'link', 'show', 'dev', port])).toMatch(/isolated on/);
  });

  it('lets two sessions bind 0.0.0.0:4000 and each reach its own through eth0', async () => {
    await d.sh('net-a', serve(4000, 'A'));
    await d.sh('net-b', serve(4000, 'B'));
    const ra = await waitFor(() => d.sh('net-a', tryConnect(a.network.address!, 4000)), (r) => r.stdout.startsWith('DATA'));
    const rb = await waitFor(() => d.sh('net-b', tryConnect(b.network.address!, 4000)), (r) => r.stdout.startsWith('DATA'));
    expect(ra.stdout.trim()).toBe('DATA A');
    expect(rb.stdout.trim()).toBe('DATA B');
  });

  it("cannot reach another session's address", async () => {
    // B listens on 4000 (previous test); A is refused at once.
    const r = await d.sh('net-a', tryConnect(b.network.address!, 4000));
    expect(r.stdout.trim()).toBe('ERR ECONNREFUSED');
  });

  it('cannot reach host services on the gateway or on another host address, nor the metadata address', async () => {
    expect(await hostTcp('127.0.0.1', hostPort)).toBe('DATA host-service'); // the service is up
    const other = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal && !i.address.startsWith(d.subnetPrefix + '.'))!.address;
    for (const target of [a.network.gateway!, other, hostSideIp]) {
      const r = await d.sh('net-a', tryConnect(target, hostPort));
      expect(r.stdout.trim(), target).toBe('ERR ECONNREFUSED');
    }
    const meta = await d.sh('net-a', tryConnect('169.254.169.254', 80));
    expect(meta.stdout.trim()).toBe('ERR ECONNREFUSED');
    // Not TCP: ICMP admin-prohibited.
    const udp = await d.cli(['session', 'exec', 'net-a', '--', SESSION_PROBE, 'udp-from', 'freebind', a.network.address!, a.network.gateway!, String(hostPort), 'x']);
    expect(udp.stdout.trim()).toBe('ok');
  });

  it('reaches the outside through masquerade: the server sees the host, not the session', async () => {
    const r = await d.sh('net-a', tryConnect(outsideIp, 7000));
    expect(r.stdout.trim()).toBe(`DATA from ${hostSideIp}`);
  });

  it('drops a datagram with a spoofed source address, passes a genuine one', async () => {
    // The session itself cannot even emit one: no CAP_NET_ADMIN, so the kernel
    // refuses a non-local source.
    const inside = await d.cli(['session', 'exec', 'net-a', '--', SESSION_PROBE, 'udp-from', 'freebind', b.network.address!, outsideIp, '7001', 'inside']);
    expect(inside.stdout.trim()).not.toBe('ok');
    // A sender with CAP_NET_ADMIN in the session's network namespace (what an
    // escaped session would have) gets the packet out, and the firewall drops it.
    const netns = `--net=/proc/${a.init_pid}/ns/net`;
    const spoofed = sh('nsenter', [netns, probe, 'udp-from', 'transparent', b.network.address!, outsideIp, '7001', 'spoofed']);
    const genuine = sh('nsenter', [netns, probe, 'udp-from', 'transparent', a.network.address!, outsideIp, '7001', 'genuine']);
    expect(spoofed.trim()).toBe('ok');
    expect(genuine.trim()).toBe('ok');
    await waitFor(async () => seen.some((l) => l.startsWith('udp genuine')), (v) => v);
    expect(seen).toContain(`udp genuine ${hostSideIp}`);
    expect(seen.filter((l) => /^udp (spoofed|inside)/.test(l))).toEqual([]);
  });

  it('publishes a session port on the host loopback while the session runs', async () => {
    const port = listenPort(56);
    const s = await d.create({ name: 'pub', publish: [{ host_ip: '127.0.0.1', host_port: port, session_port: 4000 }] });
    expect(s.network.published).toEqual([{ host_ip: '127.0.0.1', host_port: port, session_port: 4000 }]);
    await d.sh('pub', serve(4000, 'published'));
    expect(await waitFor(() => hostTcp('127.0.0.1', port), (v) => v.startsWith('DATA'))).toBe('DATA published');
    const clash = await d.api('POST', '/v1/sessions', { publish: [{ host_ip: '127.0.0.1', host_port: port, session_port: 80 }] });
    expect(clash.status).toBe(409);
    expect(clash.body).toMatchObject({ error: { code: 'conflict', field: 'publish' } });
    await d.destroy(s.id);
    expect(await hostTcp('127.0.0.1', port)).toBe('ERR ECONNREFUSED');
  });

  it('gives a --network none session only lo', async () => {
    const r = await d.cli(['session', 'create', '--name', 'offline', '--network', 'none', '--json']);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout) as Session;
    expect(s.network).toEqual({ mode: 'none', address: null, gateway: null, published: [] });
    const links = await d.sh('offline', 'ls /sys/class/net');
    expect(links.stdout.trim()).toBe('lo');
    await d.destroy(s.id);
  });

  it('leaves no link, lease or port behind after destroying sessions', async () => {
    const made = await Promise.all([1, 2, 3].map(() => d.create()));
    for (const s of made) await d.destroy(s.id);
    // Sessions coming and going did not cut the others off (a bridge whose MAC
    // followed its ports did: the survivors kept a stale gateway MAC).
    expect((await d.sh('net-a', tryConnect(outsideIp, 7000))).stdout.trim()).toBe(`DATA from ${hostSideIp}`);
    // The links go with the sessions' netns, a moment after the destroy returned; their leases with them.
    const ids = made.map((s) => s.id);
    const left = () => Promise.resolve(ids.filter((id) => existsSync(`/sys/class/net/ve-${id.slice(2)}`)));
    expect(await waitFor(left, (l) => l.length === 0)).toEqual([]);
    const db = new Database(join(d.stateDir, 'enclave.db'), { readonly: true });
    try {
      const leases = () => Promise.resolve(db.prepare(`SELECT count(*) AS n FROM ip_leases WHERE session_id IN (${ids.map(() => '?').join(',')})`).get(...ids));
      expect(await waitFor(leases, (n) => JSON.stringify(n) === '{"n":0}', 2000)).toEqual({ n: 0 });
      expect(db.prepare(`SELECT count(*) AS n FROM kernel_objects WHERE kind = 'veth'`).get()).toEqual({ n: 2 }); // net-a, net-b
    } finally {
      db.close();
    }
    // Each lease had its anti-spoofing element; the released ones went with them.
    const expected = [a, b].map((s) => `${macOf(s.network.address!)} ${s.network.address}`).sort();
    expect(await waitFor(() => Promise.resolve(bindings(d.nftTable)), (x) => JSON.stringify(x) === JSON.stringify(expected), 2000)).toEqual(expected);
  });

  it('binds a leased address in the firewall before the session runs, and a restart rebuilds exactly the leased ones', async () => {
    const c = await d.create();
    const mine = `${macOf(c.network.address!)} ${c.network.address}`;
    expect(bindings(d.nftTable)).toContain(mine);
    await d.stop();
    // A stale element the last daemon left (a crash between a release and its removal) does not survive a start.
    const stale = '02:00:ac:1f:00:fa . 172.31.0.250';
    sh('nft', ['add', 'element', 'inet', d.nftTable, 'bindings', `{ ${stale} }`]);
    await d.start();
    const after = bindings(d.nftTable);
    expect(after).toContain(mine);
    expect(after).not.toContain(stale.replace(' . ', ' '));
    expect(after).toHaveLength(3); // net-a, net-b, c
    await d.destroy(c.id);
    expect(await waitFor(() => Promise.resolve(bindings(d.nftTable)), (x) => !x.includes(mine), 4000)).not.toContain(mine);
  });

  it("holds a destroyed session's address until its link is gone, and deletes a link its netns outlives", async () => {
    // A host process outside the session keeps its netns, and with it the veth pair, alive past the destroy.
    const held = async () => {
      const s = await d.create();
      const holder = spawn('nsenter', [`--net=/proc/${s.init_pid}/ns/net`, 'sleep', '60'], { stdio: 'ignore' });
      await waitFor(() => Promise.resolve(readFileSync(`/proc/${holder.pid}/cmdline`, 'utf8')), (cmd) => cmd.startsWith('sleep'));
      await d.destroy(s.id);
      return { s, link: `ve-${s.id.slice(2)}`, holder };
    };
    const leased = (id: string) => {
      const db = new Database(join(d.stateDir, 'enclave.db'), { readonly: true });
      try {
        return (db.prepare('SELECT count(*) AS n FROM ip_leases WHERE session_id = ?').get(id) as { n: number }).n === 1;
      } finally {
        db.close();
      }
    };
    const { s: c, link, holder } = await held();
    const later: string[] = [];
    try {
      expect(existsSync(`/sys/class/net/${link}`)).toBe(true);
      // Its address is still leased: the lowest free one is not handed out again while the old port is on the bridge.
      const next = await d.create();
      later.push(next.id);
      expect(next.network.address).not.toBe(c.network.address);
      // Past the grace the daemon deletes the link itself, then frees the address.
      expect(await waitFor(() => Promise.resolve(existsSync(`/sys/class/net/${link}`)), (x) => !x, 8000)).toBe(false);
      expect(await waitFor(() => Promise.resolve(leased(c.id)), (x) => !x, 2000)).toBe(false);
      expect(d.log()).toMatch(/outlived its netns teardown; deleted it/);
      const reused = await d.create();
      later.push(reused.id);
      expect(reused.network.address).toBe(c.network.address);
    } finally {
      holder.kill('SIGKILL');
      for (const id of later) await d.destroy(id);
    }
    // A daemon that stops while a link is still going: the next start removes it and frees its address.
    const second = await held();
    try {
      expect(leased(second.s.id)).toBe(true);
      await d.stop();
      expect(existsSync(`/sys/class/net/${second.link}`)).toBe(true);
      await d.start();
      expect(existsSync(`/sys/class/net/${second.link}`)).toBe(false);
      expect(await waitFor(() => Promise.resolve(leased(second.s.id)), (x) => !x, 2000)).toBe(false);
    } finally {
      second.holder.kill('SIGKILL');
    }
  });

  it('cleans up after a daemon SIGKILLed in the middle of a create', async () => {
    const before = new Set(readdirSync('/sys/class/net'));
    // Kill the daemon exactly while the row says 'creating'. Under load the
    // create may finish between two looks: then destroy it and try again.
    let caught = false;
    for (let attempt = 0; attempt < 5 && !caught; attempt++) {
      const pending = d.api('POST', '/v1/sessions', { name: 'interrupted' }).catch(() => undefined);
      const watch = new Database(join(d.stateDir, 'enclave.db'), { readonly: true });
      const q = watch.prepare(`SELECT state FROM sessions WHERE name = 'interrupted' ORDER BY created_at DESC LIMIT 1`);
      let row: { state: string } | undefined;
      for (const deadline = Date.now() + 5000; Date.now() < deadline; ) {
        row = q.get() as { state: string } | undefined;
        if (row?.state === 'creating') {
          process.kill(d.pid, 'SIGKILL');
          caught = true;
          break;
        }
        if (row) break;
        await new Promise((r) => setImmediate(r)); // let the request go out
      }
      watch.close();
      if (!caught) {
        await pending;
        if (row) await d.destroy('interrupted');
      } else await pending;
    }
    expect(caught).toBe(true);
    await d.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 200)); // let an orphaned helper finish or fail
    await d.start();
    const list = ((await d.api('GET', '/v1/sessions?all=1')).body as { sessions: Session[] }).sessions;
    const victim = list.filter((s) => s.name === 'interrupted').pop()!;
    expect(victim.state).toBe('failed');
    expect(victim.last_error).toMatch(/daemon stopped while the session was being created/);
    expect(d.cgroupDirs(victim.id)).toEqual([]);
    // The kernel tears a dead netns (and its veth) down asynchronously: wait for it.
    const leftovers = () => [
      ...readdirSync('/sys/class/net').filter((l) => !before.has(l) && l.startsWith('ve-')),
      ...readdirSync(`/sys/class/net/${d.bridge}/brif`).filter((p) => ![`ve-${a.id.slice(2)}`, `ve-${b.id.slice(2)}`].includes(p)),
    ];
    for (const deadline = Date.now() + 5000; leftovers().length > 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
    expect(leftovers()).toEqual([]);
    const db = new Database(join(d.stateDir, 'enclave.db'), { readonly: true });
    try {
      // A lease goes right after its link (linkReaper.ts polls every 25 ms).
      const q = db.prepare(`SELECT count(*) AS n FROM ip_leases l JOIN sessions s ON s.id = l.session_id WHERE s.state NOT IN ('running')`);
      expect(await waitFor(() => Promise.resolve(q.get()), (n) => JSON.stringify(n) === '{"n":0}', 2000)).toEqual({ n: 0 });
    } finally {
      db.close();
    }
    d.reapOrphanHelpers();
    // The earlier sessions were re-adopted and their network still works.
    expect((await d.sh('net-a', 'echo alive')).stdout).toBe('alive\n');
    expect((await d.sh('net-a', tryConnect(outsideIp, 7000))).stdout.trim()).toBe(`DATA from ${hostSideIp}`);
  });
});
