// Published ports are kernel NAT in the daemon's own nftables table: a
// host-originated TCP connection to (127.x.y.z, port) is DNAT'd to the
// session from a map of published ports. So a published port keeps answering
// while the daemon is down (SIGTERM or SIGKILL) and after it is back, the
// daemon holds no fd per connection, nothing listening inside is a refused
// connection, unpublish and destroy take the element away, and another host
// program can neither hold the port first nor take it while it is published.
// And route_localnet on the bridge (which the NAT needs) does not let a
// session reach the host's loopback.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import type { Session } from '../../src/api/schemas.js';
import { isRoot, listenPorts, TestDaemon } from './harness.js';

/** Node one-liners run inside sessions (the rootfs is the host's, node included). */
const serve = (port: number, reply: string) => `node -e 'require("net").createServer(s=>s.end("${reply}")).listen(${port},"0.0.0.0")' >/dev/null 2>&1 &`;
const echo = (port: number) => `node -e 'require("net").createServer(s=>s.pipe(s)).listen(${port},"0.0.0.0")' >/dev/null 2>&1 &`;
/** Accepts and holds every connection. */
const hold = (port: number) => `node -e 'const h=[];require("net").createServer(s=>h.push(s)).listen(${port},"0.0.0.0")' >/dev/null 2>&1 &`;

/** One connection from the host: what it got, and how long that took. */
function hostTcp(port: number, host = '127.0.0.1'): Promise<{ got: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const done = (got: string) => {
      s.destroy();
      resolve({ got, ms: Date.now() - t0 });
    };
    const s = connect(port, host);
    s.setTimeout(3000, () => done('TIMEOUT'));
    s.on('data', (d) => done(`DATA ${d}`));
    s.on('error', (e: NodeJS.ErrnoException) => done(`ERR ${e.code}`));
    s.on('close', () => done('CLOSED'));
  });
}

const got = async (port: number) => (await hostTcp(port)).got;

/** A connection that stays open (an echo through a published port): what came back so far. */
async function openConnection(port: number, host = '127.0.0.1'): Promise<{ socket: Socket; echoed: () => string }> {
  const socket = connect(port, host);
  let echoed = '';
  socket.on('data', (b) => (echoed += b.toString()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.on('error', (e: NodeJS.ErrnoException) => (echoed += `ERR ${e.code}`));
  return { socket, echoed: () => echoed };
}

/** Round trips on an open connection: write, and wait until it came back. */
async function roundTrip(c: { socket: Socket; echoed: () => string }, text: string): Promise<string> {
  c.socket.write(text);
  return waitFor(() => Promise.resolve(c.echoed()), (v) => v.includes(text));
}

async function waitFor<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await f();
  while (!ok(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    v = await f();
  }
  return v;
}

/** The elements of the table's map of published ports: "HOST:PORT -> ADDRESS:PORT", sorted. */
function published(table: string): string[] {
  const r = spawnSync('nft', ['-j', 'list', 'map', 'inet', table, 'published'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nft list map inet ${table} published: ${r.stderr.trim()}`);
  type Pair = [{ concat: [string, number] }, { concat: [string, number] }];
  const out = JSON.parse(r.stdout) as { nftables: { map?: { elem?: Pair[] } }[] };
  return out.nftables
    .flatMap((o) => o.map?.elem ?? [])
    .map(([k, v]) => `${k.concat.join(':')} -> ${v.concat.join(':')}`)
    .sort();
}

/** Whether a host program may listen on the address and port now ('OK' or the errno code). */
function hostListen(port: number, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? String(e)));
    s.listen(port, host, () => s.close(() => resolve('OK')));
  });
}

/** TCP sockets listening on 127.0.0.1:port in the host's namespace (ss). */
const listenersOn = (port: number) => spawnSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).stdout.trim();

describe.skipIf(!isRoot)('published ports: kernel NAT in the daemon table (root)', () => {
  const d = new TestDaemon();
  // Below the ephemeral range (32768-), and free now: ten in a row.
  const base = listenPorts(parseInt(d.tag, 16) % 1000, 10);
  const ports = { up: base, echo: base + 1, none: base + 2, gone: base + 3, busy: base + 4, fds: base + 5, stale: base + 6, held: base + 7 };
  let up: Session;

  beforeAll(async () => {
    await d.start();
    up = await d.create({
      name: 'up',
      publish: [
        { host_ip: '127.0.0.1', host_port: ports.up, session_port: 4000 },
        { host_ip: '127.0.0.1', host_port: ports.echo, session_port: 4001 },
        { host_ip: '127.0.0.1', host_port: ports.none, session_port: 4999 },
      ],
    });
    await d.sh('up', `${serve(4000, 'up')} ${echo(4001)}`);
    expect(await waitFor(() => got(ports.up), (v) => v.startsWith('DATA'))).toBe('DATA up');
    // The echo server is up once a connection to it echoes.
    const ready = async () => {
      const c = await openConnection(ports.echo).catch(() => undefined);
      const ok = c !== undefined && (await roundTrip(c, 'ready;')) === 'ready;';
      c?.socket.destroy();
      return ok;
    };
    expect(await waitFor(ready, (v) => v)).toBe(true);
  });

  afterAll(async () => {
    await d.cleanup();
    expect(spawnSync('nft', ['list', 'table', 'inet', d.nftTable]).status).not.toBe(0);
  });

  it('holds each published port in the map of its table, to the session address', () => {
    const a = up.network.address!;
    expect(published(d.nftTable)).toEqual([`127.0.0.1:${ports.up} -> ${a}:4000`, `127.0.0.1:${ports.echo} -> ${a}:4001`, `127.0.0.1:${ports.none} -> ${a}:4999`].sort());
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`answers while the daemon is down (${signal}) and after it is back; a connection open across the restart carries on`, async () => {
      const open = await openConnection(ports.echo);
      expect(await roundTrip(open, 'before;')).toBe('before;');
      await d.stop(signal);
      try {
        expect(await got(ports.up)).toBe('DATA up');
        // Nothing of the daemon's holds the port while it is down: it is the kernel that answers.
        expect(listenersOn(ports.up)).toBe('');
      } finally {
        await d.start();
      }
      expect(await got(ports.up)).toBe('DATA up');
      expect(await roundTrip(open, 'after;')).toBe('before;after;');
      open.socket.destroy();
      // Held again by the new daemon: another host program cannot take it.
      expect(await hostListen(ports.up)).toBe('EADDRINUSE');
    });
  }

  it('refuses a connection at once when nothing listens inside (ECONNREFUSED, not an empty reply)', async () => {
    const r = await hostTcp(ports.none);
    expect(r.got).toBe('ERR ECONNREFUSED');
    expect(r.ms).toBeLessThan(1000);
  });

  it('unpublish and destroy take the element away, and the port stops answering; a connection open at unpublish carries on', async () => {
    const s = await d.create({
      name: 'gone',
      publish: [
        { host_ip: '127.0.0.1', host_port: ports.gone, session_port: 4001 },
        { host_ip: '127.0.0.2', host_port: ports.gone, session_port: 4000 },
      ],
    });
    await d.sh('gone', `${serve(4000, 'gone')} ${echo(4001)}`);
    expect(await waitFor(() => hostTcp(ports.gone, '127.0.0.2').then((r) => r.got), (v) => v.startsWith('DATA'))).toBe('DATA gone');
    const open = await waitFor(() => openConnection(ports.gone).catch(() => undefined), (c) => c !== undefined);
    expect(await roundTrip(open!, 'before;')).toBe('before;');
    const mine = () => published(d.nftTable).filter((e) => e.includes(` -> ${s.network.address}:`));
    expect(mine()).toHaveLength(2);
    const un = await d.cli(['session', 'unpublish', 'gone', `127.0.0.1:${ports.gone}`]);
    expect([un.code, un.stderr]).toEqual([0, '']);
    expect(mine()).toEqual([`127.0.0.2:${ports.gone} -> ${s.network.address}:4000`]);
    expect(await got(ports.gone)).toBe('ERR ECONNREFUSED');
    expect(await hostListen(ports.gone)).toBe('OK'); // no longer held
    expect(await roundTrip(open!, 'after;')).toBe('before;after;');
    open!.socket.destroy();
    await d.destroy(s.id);
    expect(mine()).toEqual([]);
    expect((await hostTcp(ports.gone, '127.0.0.2')).got).toBe('ERR ECONNREFUSED');
    expect(await hostListen(ports.gone, '127.0.0.2')).toBe('OK');
  });

  it('refuses a port another host program listens on (409), and holds a published one without listening on it', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(ports.busy, '127.0.0.1', r));
    try {
      const clash = await d.api('POST', '/v1/sessions', { publish: [{ host_ip: '127.0.0.1', host_port: ports.busy, session_port: 80 }] });
      expect(clash.status).toBe(409);
      expect(clash.body).toMatchObject({ error: { code: 'conflict', field: 'publish' } });
      const runtime = await d.api('POST', '/v1/sessions/up/ports', { host_ip: '127.0.0.1', host_port: ports.busy, session_port: 80 });
      expect(runtime.status).toBe(409);
    } finally {
      busy.close();
    }
    expect((await d.show('up')).network.published.map((p) => p.host_port)).not.toContain(ports.busy);
    // Published: another program can take the port neither on its address nor on the wildcard,
    // though no socket listens on it (the daemon holds it bound) and a connection reaches the session.
    expect(await hostListen(ports.up)).toBe('EADDRINUSE');
    expect(await hostListen(ports.up, '0.0.0.0')).toBe('EADDRINUSE');
    expect(listenersOn(ports.up)).toBe('');
    expect(await got(ports.up)).toBe('DATA up');
    expect(published(d.nftTable).filter((e) => e.startsWith(`127.0.0.1:${ports.busy} `))).toEqual([]);
  });

  it('holds no fd of the daemon per connection: 500 connections held inside', async () => {
    const s = await d.create({ name: 'fds', publish: [{ host_ip: '127.0.0.1', host_port: ports.fds, session_port: 5000 }] });
    await d.sh('fds', hold(5000));
    // The listener is up once one connection is accepted and kept open.
    const probe = await waitFor(
      async () => {
        const c = connect(ports.fds, '127.0.0.1');
        const ok = await new Promise<boolean>((r) => {
          c.once('connect', () => setTimeout(() => r(!c.destroyed), 100));
          c.once('error', () => r(false));
        });
        if (!ok) c.destroy();
        return ok ? c : undefined;
      },
      (c) => c !== undefined,
    );
    expect(probe).toBeDefined();
    const fds = () => readdirSync(`/proc/${d.pid}/fd`).length;
    const before = fds();
    const clients: Socket[] = [];
    let closed = 0;
    await Promise.all(
      Array.from(
        { length: 500 },
        () =>
          new Promise<void>((resolve, reject) => {
            const c = connect(ports.fds, '127.0.0.1');
            clients.push(c);
            c.once('connect', () => resolve());
            c.once('error', reject);
            c.once('close', () => closed++);
          }),
      ),
    );
    await new Promise((r) => setTimeout(r, 300));
    const during = fds();
    try {
      expect(during - before).toBeLessThanOrEqual(5);
      expect(closed).toBe(0); // every one still open, held by the session
    } finally {
      for (const c of [probe!, ...clients]) c.destroy();
    }
    await d.destroy(s.id);
  });

  it("does not open the host's loopback to a session (route_localnet is on for the bridge): a SYN to 127.0.0.1 through the gateway reaches nothing", async () => {
    // The host service a session must not reach. A SYN that reached it would leave a
    // SYN-RECV request socket (the sender never completes the handshake).
    const service = createServer((c) => c.destroy());
    const target = ports.stale + 2;
    await new Promise<void>((r) => service.listen(target, '127.0.0.1', r));
    const synRecv = () => spawnSync('ss', ['-Htn', 'state', 'syn-recv', `sport = :${target}`], { encoding: 'utf8' }).stdout.trim();
    // A sender with CAP_NET_ADMIN in the session's netns (what an escaped session would
    // have): an Ethernet frame to the gateway's MAC, from the session's own address and MAC.
    const mac = (ip: string) => `02:00:${ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join(':')}`;
    const py = `import socket,struct,sys
def csum(b):
    s=sum(struct.unpack('!%dH'%(len(b)//2),b)); s=(s>>16)+(s&0xffff); s+=s>>16; return (~s)&0xffff
src=socket.inet_aton(sys.argv[3]); dst=socket.inet_aton('127.0.0.1'); dport=int(sys.argv[4])
tcp=struct.pack('!HHIIBBHHH',40000,dport,1,0,5<<4,0x02,64240,0,0)
tcp=tcp[:16]+struct.pack('!H',csum(src+dst+struct.pack('!BBH',0,6,len(tcp))+tcp))+tcp[18:]
ip=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(tcp),1,0,64,6,0,src,dst); ip=ip[:10]+struct.pack('!H',csum(ip))+ip[12:]
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind(('eth0',0))
for i in range(3): s.send(bytes.fromhex(sys.argv[1].replace(':',''))+bytes.fromhex(sys.argv[2].replace(':',''))+b'\\x08\\x00'+ip+tcp)
print('sent')`;
    const a = up.network.address!;
    const sent = spawnSync('nsenter', [`--net=/proc/${up.init_pid}/ns/net`, '/usr/bin/python3', '-c', py, mac(up.network.gateway!), mac(a), a, String(target)], { encoding: 'utf8' });
    expect(sent.stdout.trim(), sent.stderr).toBe('sent');
    try {
      expect(await waitFor(() => Promise.resolve(synRecv()), (v) => v !== '', 500)).toBe('');
    } finally {
      service.close();
    }
  });

  it('a session whose init died while the daemon was down loses its elements at the next start', async () => {
    const s = await d.create({ name: 'dies', publish: [{ host_ip: '127.0.0.1', host_port: ports.held + 1, session_port: 4000 }] });
    await d.stop();
    process.kill(s.init_pid!, 'SIGKILL');
    await d.reapAdopted();
    await d.start();
    expect((await d.show(s.id)).state).toBe('failed');
    expect(published(d.nftTable).filter((e) => e.includes(` -> ${s.network.address}:`))).toEqual([]);
    expect(await got(ports.held + 1)).toBe('ERR ECONNREFUSED');
  });

  it('a port another program binds while the daemon is down: its connections still reach the session, and the next start says so', async () => {
    await d.stop();
    const squatter = createServer((c) => c.end('squatter'));
    try {
      await new Promise<void>((r) => squatter.listen(ports.up, '127.0.0.1', r));
      expect(await got(ports.up)).toBe('DATA up');
      await d.start();
      expect(d.log()).toMatch(/cannot hold a published host port again/);
      expect(await got(ports.up)).toBe('DATA up');
    } finally {
      squatter.close();
    }
  });

  it('a start loads exactly the published ports of the database: a stale element is dropped, the live ones kept', async () => {
    const s = await d.create({ name: 'stale', publish: [{ host_ip: '127.0.0.1', host_port: ports.held, session_port: 4000 }] });
    const before = published(d.nftTable);
    await d.stop();
    // An element no session holds (a crash between a release and its removal).
    const plant = spawnSync('nft', ['add', 'element', 'inet', d.nftTable, 'published', `{ 127.0.0.9 . ${ports.stale} : ${d.subnetPrefix}.250 . 80 }`], { encoding: 'utf8' });
    expect(plant.stderr).toBe('');
    expect(published(d.nftTable)).toContain(`127.0.0.9:${ports.stale} -> ${d.subnetPrefix}.250:80`);
    await d.start();
    expect(published(d.nftTable)).toEqual(before);
    await d.destroy(s.id);
    expect(published(d.nftTable).filter((e) => e.includes(` -> ${s.network.address}:`))).toEqual([]);
  });
});
