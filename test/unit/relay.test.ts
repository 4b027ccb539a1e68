// Published ports relay connections through the daemon: each holds two of
// its fds, and anyone on the host may connect. The relay is capped per port,
// per owner of the sessions and in all, and a connection's slot comes back
// when either end closes.
import { afterEach, describe, expect, it } from 'vitest';
import { connect, createServer, type Server, type Socket } from 'node:net';
import pino from 'pino';
import { PortPublisher } from '../../src/network/publish.js';

const log = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A "session" that accepts and holds every connection. */
async function holdingServer(): Promise<{ server: Server; port: number; held: Socket[] }> {
  const held: Socket[] = [];
  const server = createServer((s) => held.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: (server.address() as { port: number }).port, held };
}

const freePort = async () => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
};

/** Open n client connections; after a moment, how many are still open. */
async function openClients(port: number, n: number): Promise<Socket[]> {
  const clients = Array.from({ length: n }, () => connect({ host: '127.0.0.1', port }).on('error', () => undefined));
  await sleep(300);
  return clients;
}

describe('published-port relay', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanup.splice(0)) c();
  });

  it('caps connections per port, per owner and in all, and gives a slot back when a client goes', async () => {
    const session = await holdingServer();
    const p = new PortPublisher(log, { perPort: 3, perOwner: 4, total: 5 });
    const [a, b, c] = [await freePort(), await freePort(), await freePort()];
    await p.publish('s-a', 1000, '127.0.0.1', [{ host_ip: '127.0.0.1', host_port: a, session_port: session.port }, { host_ip: '127.0.0.1', host_port: b, session_port: session.port }]);
    await p.publish('s-c', 2000, '127.0.0.1', [{ host_ip: '127.0.0.1', host_port: c, session_port: session.port }]);
    cleanup.push(() => {
      p.closeAll();
      session.server.close();
      for (const s of session.held) s.destroy();
    });
    const alive = (xs: Socket[]) => xs.filter((x) => !x.destroyed && x.readyState === 'open').length;
    const onA = await openClients(a, 6);
    expect(alive(onA)).toBe(3); // per port
    const onB = await openClients(b, 6);
    expect(alive(onB)).toBe(1); // owner 1000 has 4 in all
    const onC = await openClients(c, 6);
    expect(alive(onC)).toBe(1); // 5 through the daemon in all
    expect(session.held.filter((s) => !s.destroyed)).toHaveLength(5);
    // A client that goes frees its slot, and the session side goes with it.
    onA.filter((x) => !x.destroyed)[0]!.destroy();
    await sleep(200);
    expect(session.held.filter((s) => !s.destroyed && !s.closed)).toHaveLength(4);
    const again = await openClients(c, 1);
    expect(alive(again)).toBe(1);
    for (const x of [...onA, ...onB, ...onC, ...again]) x.destroy();
  });
});
