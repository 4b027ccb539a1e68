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

export class PortPublisher {
  private readonly servers = new Map<string, Server[]>();

  constructor(private readonly log: Logger) {}

  /** Listen on every mapping; on any failure close what was opened and throw. */
  async publish(sessionId: string, sessionIp: string, mappings: PortMapping[]): Promise<void> {
    const opened: Server[] = [];
    try {
      for (const m of mappings) {
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
        opened.push(server);
      }
    } catch (e) {
      for (const s of opened) s.close();
      throw e;
    }
    this.servers.set(sessionId, opened);
    if (mappings.length) this.log.info({ session: sessionId, ports: mappings }, 'ports published');
  }

  unpublish(sessionId: string): void {
    for (const s of this.servers.get(sessionId) ?? []) s.close();
    this.servers.delete(sessionId);
  }

  closeAll(): void {
    for (const id of [...this.servers.keys()]) this.unpublish(id);
  }
}
