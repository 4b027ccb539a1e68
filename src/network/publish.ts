// Published ports: the daemon listens on the host address and relays each TCP
// connection to the session's address (a userland proxy, as Docker's
// docker-proxy does for loopback), for as long as the session runs. Every
// relayed connection holds two of the daemon's fds, and anyone on the host
// may connect to a published port: so connections are capped per port, per
// owner of the session and in all, an upstream that does not connect in
// time is dropped, and both ends go when either closes.
import { createServer, connect, type Server } from 'node:net';
import type { Logger } from 'pino';

export interface RelayCaps {
  /** Connections at once through one published port. */
  perPort: number;
  /** Through all the ports of one owner's sessions. */
  perOwner: number;
  /** Through every published port of the daemon. */
  total: number;
  /** An upstream that has not connected by then is dropped. */
  connectTimeoutMs?: number;
}

export interface PortMapping {
  host_ip: string;
  host_port: number;
  session_port: number;
}

const key = (m: { host_ip: string; host_port: number }) => `${m.host_ip}:${m.host_port}`;

export class PortPublisher {
  /** Per session, its listeners by host address:port. */
  private readonly servers = new Map<string, Map<string, Server>>();

  private relayed = 0;
  private readonly byOwner = new Map<number, number>();

  constructor(
    private readonly log: Logger,
    private readonly caps: RelayCaps = { perPort: 256, perOwner: 1024, total: 4096 },
  ) {}

  /** A relay slot of the owner's, or false (the connection is closed at once). */
  private take(owner: number): boolean {
    const mine = this.byOwner.get(owner) ?? 0;
    if (this.relayed >= this.caps.total || mine >= this.caps.perOwner) return false;
    this.relayed++;
    this.byOwner.set(owner, mine + 1);
    return true;
  }

  private give(owner: number): void {
    this.relayed--;
    const mine = (this.byOwner.get(owner) ?? 1) - 1;
    if (mine > 0) this.byOwner.set(owner, mine);
    else this.byOwner.delete(owner);
  }

  private async listen(owner: number, sessionIp: string, m: PortMapping): Promise<Server> {
    const server = createServer((client) => {
      if (!this.take(owner)) {
        client.destroy();
        return;
      }
      const upstream = connect({ host: sessionIp, port: m.session_port });
      // A plain timer: a socket's own idle timeout cannot be set and cleared around its connect.
      const connecting = setTimeout(() => upstream.destroy(), this.caps.connectTimeoutMs ?? 5000);
      upstream.once('connect', () => clearTimeout(connecting));
      client.pipe(upstream).pipe(client);
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        clearTimeout(connecting);
        client.destroy();
        upstream.destroy();
        this.give(owner);
      };
      for (const side of [client, upstream]) {
        side.on('error', end);
        side.on('close', end);
      }
    });
    server.maxConnections = this.caps.perPort;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: m.host_ip, port: m.host_port, exclusive: true }, () => resolve());
    });
    return server;
  }

  /** Listen on every mapping; on any failure close what this call opened and throw. `owner`: the session's, whose relay share it uses. */
  async publish(sessionId: string, owner: number, sessionIp: string, mappings: PortMapping[]): Promise<void> {
    const opened: [string, Server][] = [];
    try {
      for (const m of mappings) opened.push([key(m), await this.listen(owner, sessionIp, m)]);
    } catch (e) {
      for (const [, s] of opened) s.close();
      throw e;
    }
    const mine = this.servers.get(sessionId) ?? new Map<string, Server>();
    for (const [k, s] of opened) mine.set(k, s);
    this.servers.set(sessionId, mine);
    if (mappings.length) this.log.info({ session: sessionId, ports: mappings }, 'ports published');
  }

  /** Stop one mapping; existing connections through it are left to end. */
  unpublishOne(sessionId: string, m: { host_ip: string; host_port: number }): void {
    const mine = this.servers.get(sessionId);
    mine?.get(key(m))?.close();
    mine?.delete(key(m));
    this.log.info({ session: sessionId, port: key(m) }, 'port unpublished');
  }

  unpublish(sessionId: string): void {
    for (const s of this.servers.get(sessionId)?.values() ?? []) s.close();
    this.servers.delete(sessionId);
  }

  closeAll(): void {
    for (const id of [...this.servers.keys()]) this.unpublish(id);
  }
}
