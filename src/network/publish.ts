// Published ports: the daemon listens on the host address and relays each TCP
// connection to the session's address (a userland proxy, as Docker's
// docker-proxy does for loopback), for as long as the session runs.
import { createServer, connect, type Server } from 'node:net';
import type { Logger } from 'pino';

export interface PortMapping {
  host_ip: string;
  host_port: number;
  session_port: number;
}

const key = (m: { host_ip: string; host_port: number }) => `${m.host_ip}:${m.host_port}`;

export class PortPublisher {
  /** Per session, its listeners by host address:port. */
  private readonly servers = new Map<string, Map<string, Server>>();

  constructor(private readonly log: Logger) {}

  private async listen(sessionIp: string, m: PortMapping): Promise<Server> {
    const server = createServer((client) => {
      const upstream = connect({ host: sessionIp, port: m.session_port });
      client.pipe(upstream).pipe(client);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end);
      upstream.on('error', end);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: m.host_ip, port: m.host_port, exclusive: true }, () => resolve());
    });
    return server;
  }

  /** Listen on every mapping; on any failure close what this call opened and throw. */
  async publish(sessionId: string, sessionIp: string, mappings: PortMapping[]): Promise<void> {
    const opened: [string, Server][] = [];
    try {
      for (const m of mappings) opened.push([key(m), await this.listen(sessionIp, m)]);
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
