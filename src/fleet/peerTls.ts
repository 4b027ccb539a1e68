// The node-to-node channel's TLS (mutual): every node presents a certificate
// signed by the fleet's CA whose common name is its node name, and accepts a
// peer only if its certificate chains to that CA and names a node registered
// in the fleet. A forwarded call carries its caller's identity in headers
// that only such a peer is trusted to set (src/daemon/peerServer.ts).
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request, type RequestOptions } from 'node:https';
import { connect, createSecureContext, type PeerCertificate, type TLSSocket } from 'node:tls';
import { z } from 'zod';
import type { ClusterConfig } from './etcd.js';

export type PeerConfig = NonNullable<ClusterConfig['peer']>;

/** The caller's identity on a forwarded call. */
export const UID_HEADER = 'x-enclave-uid';
export const GIDS_HEADER = 'x-enclave-gids';
/** On a call forwarded for a caller (src/daemon/forward.ts), not one of the reads a node makes for its own lists and lookups. */
export const FORWARDED_HEADER = 'x-enclave-forwarded';
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

/**
 * Whether the material can serve as node `node`: the key is the
 * certificate's, the certificate is signed by the CA and names the node
 * (what every peer checks). One line saying what is wrong, or undefined.
 */
export function peerTlsProblem(t: PeerTls, node: string, now = Date.now()): string | undefined {
  try {
    createSecureContext(serverOptions(t));
    // The certificate file: the node's, then any intermediates; the CA file may hold several CAs
    // (an old and a new one while a fleet moves to another): a chain to any of them will do.
    const [cert, ...intermediates] = certsIn(t.cert);
    const cas = certsIn(t.ca);
    if (!cert) return 'cluster.peer.cert holds no certificate';
    const signs = (by: X509Certificate, c: X509Certificate) => c.checkIssued(by) && c.verify(by.publicKey);
    const expired = (c: X509Certificate) => now < Date.parse(c.validFrom) || now > Date.parse(c.validTo);
    // Up the chain, each link in date, to a CA of the file.
    let at = cert;
    for (let depth = 0; ; depth++) {
      if (expired(at)) return `cluster.peer.cert ${at === cert ? '' : `(an intermediate, ${at.subject.replace(/\n/g, ', ')}) `}is valid from ${at.validFrom} to ${at.validTo}, not now`;
      if (cas.some((ca) => signs(ca, at) && !expired(ca))) break;
      const up = intermediates.find((i) => signs(i, at));
      if (!up || depth > 4) return 'cluster.peer.cert is not signed by a CA of cluster.peer.ca (nor through an intermediate in its file)';
      at = up;
    }
    const cn = /^CN=(.*)$/m.exec(cert.subject)?.[1];
    if (cn !== node) return `cluster.peer.cert names '${cn ?? ''}', not this node (${node})`;
    return undefined;
  } catch (e) {
    return `cluster.peer: ${(e as Error).message}`;
  }
}

/** Every certificate of a PEM file, in order. */
function certsIn(pem: Buffer): X509Certificate[] {
  return (pem.toString().match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

/**
 * The node's TLS material, read again on a reload (certificate rotation:
 * new files at the same paths). New connections, both ways, use the new
 * material; those open finish on the old.
 */
export class PeerCredentials {
  private current: PeerTls;
  private readonly listeners: Array<(t: PeerTls) => void> = [];

  constructor(
    private readonly files: PeerConfig,
    private readonly node: string,
  ) {
    this.current = loadPeerTls(files);
    const problem = peerTlsProblem(this.current, node);
    if (problem) throw new Error(problem);
  }

  get tls(): PeerTls {
    return this.current;
  }

  onChange(f: (t: PeerTls) => void): void {
    this.listeners.push(f);
  }

  /** Read the files again: true if they changed (checked, and in use now), false if not; throws one line if they cannot be used (the running ones stay). */
  reload(): boolean {
    const next = loadPeerTls(this.files);
    if (next.ca.equals(this.current.ca) && next.cert.equals(this.current.cert) && next.key.equals(this.current.key)) return false;
    const problem = peerTlsProblem(next, this.node);
    if (problem) throw new Error(`${problem}; the running certificate stays`);
    this.current = next;
    for (const f of this.listeners) f(next);
    return true;
  }
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

  constructor(private readonly credentials: PeerCredentials) {
    credentials.onChange(() => this.retire());
  }

  private get tls(): PeerTls {
    return this.credentials.tls;
  }

  /** Agents of earlier material, until their last connection is done. */
  private readonly retired = new Set<Agent>();

  /**
   * New material: new agents from now on. An old one keeps no connection
   * alive any more (each busy one closes once its call is done, or serves
   * the calls queued behind it first); its idle ones close now.
   */
  private retire(): void {
    // Those of an earlier rotation with nothing open any more are forgotten.
    for (const r of this.retired) if (Object.keys(r.sockets).length === 0 && Object.keys(r.requests).length === 0) this.retired.delete(r);
    for (const a of this.agents.values()) {
      (a as Agent & { keepAlive: boolean }).keepAlive = false;
      for (const list of Object.values(a.freeSockets)) for (const socket of list ?? []) socket.destroy();
      this.retired.add(a);
    }
    this.agents.clear();
  }

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
    for (const a of [...this.agents.values(), ...this.retired]) a.destroy();
    this.agents.clear();
    this.retired.clear();
  }
}
