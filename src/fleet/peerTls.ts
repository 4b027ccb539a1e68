// The node-to-node channel's TLS (mutual): every node presents a certificate
// signed by the fleet's CA whose common name is its node name, and accepts a
// peer only if its certificate chains to that CA and names a node registered
// in the fleet. A forwarded call carries its caller's identity in headers
// that only such a peer is trusted to set (src/daemon/peerServer.ts).
import { readFileSync } from 'node:fs';
import { Agent, request, type RequestOptions } from 'node:https';
import { connect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { z } from 'zod';
import type { ClusterConfig } from './etcd.js';

export type PeerConfig = NonNullable<ClusterConfig['peer']>;

/** The caller's identity on a forwarded call. */
export const UID_HEADER = 'x-enclave-uid';
export const GIDS_HEADER = 'x-enclave-gids';
// Digits only: coercion would read an empty header as uid 0 (root).
const id = z.string().regex(/^\d{1,10}$/, 'a decimal id').transform(Number).pipe(z.number().int().max(4_294_967_294));
const identitySchema = z.object({ uid: id, gids: z.array(id).max(1024) });

/** The identity a peer sent, or an error naming the header. */
export function identityOf(headers: Record<string, string | string[] | undefined>): { uid: number; gids: number[] } {
  const uid = headers[UID_HEADER];
  const gids = headers[GIDS_HEADER];
  const r = identitySchema.safeParse({ uid, gids: typeof gids === 'string' && gids !== '' ? gids.split(',') : [] });
  if (typeof uid !== 'string' || !r.success) throw new Error(`a forwarded call needs ${UID_HEADER} (a uid) and ${GIDS_HEADER} (comma-separated gids)`);
  return r.data;
}

export interface PeerTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** Read the CA, certificate and key; one line naming the file if one cannot be read. */
export function loadPeerTls(p: PeerConfig): PeerTls {
  const read = (what: string, f: string) => {
    try {
      return readFileSync(f);
    } catch (e) {
      throw new Error(`cluster.peer.${what} ${f}: ${(e as Error).message}`);
    }
  };
  return { ca: read('ca', p.ca), cert: read('cert', p.cert), key: read('key', p.key) };
}

/** The node a verified peer certificate names (its CN), or undefined. */
export function peerName(cert: PeerCertificate | undefined): string | undefined {
  const cn = cert?.subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}

/** Server options: a client certificate is required and must chain to the fleet CA. */
export function serverOptions(t: PeerTls) {
  return { ca: t.ca, cert: t.cert, key: t.key, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' as const };
}

/** HOST:PORT split, or an error saying the node's endpoint is not one. */
export function hostPort(node: string, endpoint: string): { host: string; port: number } {
  const m = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(endpoint);
  if (!m) throw new Error(`node ${node} advertises no node-to-node endpoint (HOST:PORT), only '${endpoint.slice(0, 100)}': give it [cluster.peer]`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** Client options to reach `node`: its certificate must chain to the CA and name that node. */
function clientOptions(t: PeerTls, node: string) {
  return {
    ca: t.ca,
    cert: t.cert,
    key: t.key,
    minVersion: 'TLSv1.3' as const,
    servername: node,
    checkServerIdentity: (_host: string, cert: PeerCertificate) => (peerName(cert) === node ? undefined : new Error(`the peer's certificate names '${peerName(cert) ?? ''}', not node ${node}`)),
  };
}

/** Connections to other nodes, kept alive per node (a list asks every node). */
export class PeerClient {
  private readonly agents = new Map<string, Agent>();

  constructor(private readonly tls: PeerTls) {}

  private agent(node: string): Agent {
    let a = this.agents.get(node);
    if (!a) {
      a = new Agent({ keepAlive: true, maxSockets: 16, ...clientOptions(this.tls, node) });
      this.agents.set(node, a);
    }
    return a;
  }

  /**
   * An HTTPS request to `node` at `endpoint`, with the caller's identity.
   * `long`: a reply that may last (logs --follow) gets a connection of its
   * own, so no caller can hold the kept-alive ones every other call and
   * every list's fan-out to that node need.
   */
  request(node: string, endpoint: string, o: Pick<RequestOptions, 'method' | 'path' | 'headers'>, who: { uid: number; gids: number[] }, long = false) {
    const { host, port } = hostPort(node, endpoint);
    const via = long ? { agent: false as const, ...clientOptions(this.tls, node) } : { agent: this.agent(node) };
    return request({ host, port, ...via, ...o, headers: { ...o.headers, [UID_HEADER]: String(who.uid), [GIDS_HEADER]: who.gids.join(',') } });
  }

  /** A raw TLS connection to `node` (a WebSocket upgrade is piped through it byte for byte). */
  connect(node: string, endpoint: string): TLSSocket {
    const { host, port } = hostPort(node, endpoint);
    return connect({ host, port, ...clientOptions(this.tls, node) });
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}
