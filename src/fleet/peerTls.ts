// The node-to-node channel's TLS (mutual): every node presents a certificate
// signed by the fleet's CA whose common name is its node name, and accepts a
// peer only if its certificate chains to that CA and names a node registered
// in the fleet. A forwarded call carries its caller's identity in headers
// that only such a peer is trusted to set (src/daemon/peerServer.ts).
import { randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import type { Logger } from 'pino';
import { connect, createSecureContext, createServer, type DetailedPeerCertificate, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { z } from 'zod';
import type { ClusterConfig } from './etcd.js';
import { certsIn, crlBlocks, Revocations } from './peerCrl.js';

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
  /** The CAs' revocation lists ([cluster.peer] crl), if the fleet keeps them, and what they say. */
  crl?: Buffer;
  revocations?: Revocations;
}

/** Read the CA, certificate and key (and the CRLs); one line naming the file if one cannot be read. */
export function loadPeerTls(p: PeerConfig): PeerTls {
  const read = (what: string, f: string) => {
    try {
      return readFileSync(f);
    } catch (e) {
      throw new Error(`cluster.peer.${what} ${f}: ${(e as Error).message}`);
    }
  };
  const t: PeerTls = { ca: read('ca', p.ca), cert: read('cert', p.cert), key: read('key', p.key) };
  if (!p.crl) return t;
  const crl = read('crl', p.crl);
  return { ...t, crl, revocations: Revocations.read(crl, t.ca) };
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
    if (t.crl && crlBlocks(t.crl).length === 0) return 'cluster.peer.crl holds no CRL (PEM, -----BEGIN X509 CRL-----)';
    return t.revocations?.problem(now);
  } catch (e) {
    return `cluster.peer: ${(e as Error).message}`;
  }
}

/** Whether every peer would take this material as node `node`: what a start checks, and a reload, and `enclave doctor`. */
export async function peerMaterialProblem(t: PeerTls, node: string, now = Date.now()): Promise<string | undefined> {
  return peerTlsProblem(t, node, now) ?? (await revocationProblem(t, node));
}

/** What OpenSSL's verdict on our own certificate means for this node, by its code. */
const REVOCATION_PROBLEMS: Record<string, string> = {
  CERT_REVOKED: 'cluster.peer.cert (or a CA above it) is revoked by cluster.peer.crl: every node refuses this node',
  UNABLE_TO_GET_CRL: 'cluster.peer.crl holds no CRL of a CA of cluster.peer.cert\'s chain, intermediates too (with a CRL file, every CA needs its own, an empty one if it revoked nothing)',
  CRL_HAS_EXPIRED: 'cluster.peer.crl is past its next update: make a new one (openssl ca -gencrl), or every node is refused',
  CRL_NOT_YET_VALID: 'cluster.peer.crl is not valid yet (its last update is in the future)',
  CRL_SIGNATURE_FAILURE: 'cluster.peer.crl has a CRL whose signature does not verify against its CA',
};

/**
 * With a CRL: whether peers would take this node's certificate, checked as
 * they check it (a handshake with ourselves, through an abstract socket of
 * this network namespace): revoked, or a CRL missing or out of date, refuse
 * every call. One line saying what is wrong, or undefined.
 */
export async function revocationProblem(t: PeerTls, node: string): Promise<string | undefined> {
  if (!t.crl) return undefined;
  const path = `\0enclave-peer-check-${process.pid}-${randomBytes(6).toString('hex')}`;
  const server = createServer(serverOptions(t), (s) => s.end());
  server.on('tlsClientError', () => undefined); // the client side reports the same verdict
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new Error(`cluster.peer: cannot check the certificate against cluster.peer.crl: ${e.message}`)));
      server.listen(path, () => resolve());
    });
    return await new Promise<string | undefined>((resolve) => {
      const socket = connect({ path, ...clientOptions(t, node) });
      const timer = setTimeout(() => (socket.destroy(), resolve('cluster.peer: the check of the certificate against cluster.peer.crl did not finish within 5 s')), 5000);
      const done = (problem: string | undefined) => (clearTimeout(timer), socket.destroy(), resolve(problem));
      socket.once('secureConnect', () => done(undefined));
      socket.once('error', (e: Error & { code?: string }) => done(REVOCATION_PROBLEMS[e.code ?? ''] ?? `cluster.peer: its certificate, checked against cluster.peer.crl: ${e.message}`));
    });
  } finally {
    server.close();
  }
}

/**
 * The node's TLS material, read again on a reload (certificate rotation,
 * new CRLs: new files at the same paths). New connections, both ways, use
 * the new material; those open finish on the old, but for those of a
 * certificate the new CRLs revoke, which are cut (serveWith, PeerClient).
 */
export class PeerCredentials {
  private current: PeerTls;
  private readonly listeners: Array<(t: PeerTls) => void> = [];

  /** Reloads one after the other: each compares with what the one before put in use. */
  private reloading: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly files: PeerConfig,
    private readonly node: string,
  ) {
    this.current = loadPeerTls(files);
    const problem = peerTlsProblem(this.current, node);
    if (problem) throw new Error(problem);
  }

  /** At start, before the node listens or calls: throws one line if peers would refuse its certificate (revoked, CRLs unfit). */
  async check(): Promise<void> {
    const problem = await revocationProblem(this.current, this.node);
    if (problem) throw new Error(problem);
  }

  /**
   * A connection whose handshake is done (either side): cut at once if the
   * CRLs in use revoke its peer (a handshake begun under the lists before,
   * a connection pool's made before), else kept in view until it closes, so
   * that a reload whose CRLs revoke it cuts it (a call in flight, an event
   * stream, an attach through).
   */
  hold(s: TLSSocket, cut: (s: TLSSocket) => void): void {
    if (this.revokes(s)) return cut(s);
    this.open.set(s, cut);
    s.once('close', () => this.open.delete(s));
  }

  /** Connections held, each with how its side cuts it. */
  private readonly open = new Map<TLSSocket, (s: TLSSocket) => void>();

  /**
   * Whether the CRLs in use revoke the certificate the other end of `s`
   * presented (or a CA above it). Read with the legacy call: Node's
   * getPeerX509Certificate hands a client socket's chain over only once.
   */
  private revokes(s: TLSSocket): boolean {
    return this.revokesChain(chainOf(s.getPeerCertificate(true)));
  }

  /** Whether the CRLs in use revoke a certificate a node presents as it is being reached (its chain, as the client sees it). */
  revokesPresented(c: DetailedPeerCertificate): boolean {
    return this.revokesChain(chainOf(c));
  }

  private revokesChain(chain: X509Certificate[]): boolean {
    const r = this.current.revocations;
    if (!r?.any) return false;
    // None to look at (a resumed session may carry none): refused while anything is revoked.
    return chain.length === 0 || r.revokes(chain);
  }

  /**
   * An expired list makes every node refuse every other: said in the log
   * each hour from three days before its next update, and once it is past.
   */
  watchExpiry(log: Logger, now = () => Date.now()): NodeJS.Timeout {
    const look = () => {
      const due = this.current.revocations?.due(now());
      if (due?.state === 'past') log.error({ next_update: due.next.toISOString() }, 'cluster.peer.crl is past its next update: every node refuses this one; make a new one and reload');
      else if (due?.state === 'soon') log.warn({ next_update: due.next.toISOString() }, 'cluster.peer.crl must be made again before its next update, or every node refuses the others');
    };
    look();
    const t = setInterval(look, 3_600_000);
    t.unref();
    return t;
  }

  get tls(): PeerTls {
    return this.current;
  }

  onChange(f: (t: PeerTls) => void): void {
    this.listeners.push(f);
  }

  /**
   * Read the files again (a new certificate, or new CRLs: a node revoked):
   * true if they changed (checked, and in use now), false if not; throws one
   * line if they cannot be used (the running ones stay).
   */
  reload(): Promise<boolean> {
    const r = this.reloading.then(() => this.reloadNow());
    this.reloading = r.catch(() => undefined);
    return r;
  }

  private async reloadNow(): Promise<boolean> {
    const next = loadPeerTls(this.files);
    const same = (a: Buffer | undefined, b: Buffer | undefined) => (a && b ? a.equals(b) : a === b);
    if (same(next.ca, this.current.ca) && same(next.cert, this.current.cert) && same(next.key, this.current.key) && same(next.crl, this.current.crl)) return false;
    const problem = await peerMaterialProblem(next, this.node);
    if (problem) throw new Error(`${problem}; the running certificate stays`);
    this.current = next;
    for (const f of this.listeners) f(next);
    // What the new CRLs revoke of the connections open now is cut, both ways.
    for (const [s, cut] of this.open) if (this.revokes(s)) cut(s);
    return true;
  }
}

/**
 * The listener serves with the node's material as it is reloaded: new
 * connections get the new certificate and CRLs, which OpenSSL checks at
 * their handshake. What it does not check again is cut here: a connection
 * open when new CRLs come (a call in flight, an event stream, an attach
 * through), and one whose handshake began under the CRLs before, if the
 * new ones revoke its certificate. Other nodes' connections are left alone.
 */
export function serveWith(server: HttpsServer, credentials: PeerCredentials, log: Logger): void {
  const cut = (s: TLSSocket) => {
    log.warn({ node: peerName(s.getPeerCertificate()) }, 'closed a node-to-node connection: cluster.peer.crl revokes its certificate');
    s.destroy();
  };
  server.on('secureConnection', (s: TLSSocket) => credentials.hold(s, cut));
  credentials.onChange((t) => server.setSecureContext(serverOptions(t)));
}

/** A peer's certificate chain as it sent it, each pointing to its issuer's (a root to itself); none if it showed none. */
function chainOf(c: DetailedPeerCertificate | null | undefined): X509Certificate[] {
  const chain: X509Certificate[] = [];
  for (let at = c, depth = 0; at?.raw && depth < 6; at = at.issuerCertificate === at ? undefined : at.issuerCertificate, depth++) chain.push(new X509Certificate(at.raw));
  return chain;
}

export const revokedPeer = () => new Error("the node's certificate is revoked by cluster.peer.crl");


/** The node a verified peer certificate names (its CN), or undefined. */
export function peerName(cert: PeerCertificate | undefined): string | undefined {
  const cn = cert?.subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}

/** Server options: a client certificate is required and must chain to the fleet CA. */
export function serverOptions(t: PeerTls) {
  return { ca: t.ca, cert: t.cert, key: t.key, ...crlOption(t), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' as const };
}

/** One client context per material: made per connection, its CA, key, certificate and CRLs were parsed each time (about 1 ms of a forwarded exec's connection). */
const clientContexts = new WeakMap<PeerTls, SecureContext>();
function clientContext(t: PeerTls): SecureContext {
  let c = clientContexts.get(t);
  if (!c) {
    c = createSecureContext({ ca: t.ca, cert: t.cert, key: t.key, ...crlOption(t), minVersion: 'TLSv1.3' });
    clientContexts.set(t, c);
  }
  return c;
}

/** The CRLs, if any: a certificate they revoke is refused both ways (OpenSSL then wants a CRL of each CA in a chain). */
function crlOption(t: PeerTls): { crl?: string[] } {
  return t.crl ? { crl: crlBlocks(t.crl) } : {};
}

/** HOST:PORT split, or an error saying the node's endpoint is not one. */
export function hostPort(node: string, endpoint: string): { host: string; port: number } {
  const m = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(endpoint);
  if (!m) throw new Error(`node ${node} advertises no node-to-node endpoint (HOST:PORT), only '${endpoint.slice(0, 100)}': give it [cluster.peer]`);
  return { host: m[1]!, port: Number(m[2]) };
}

/**
 * Client options to reach `node`: its certificate must chain to the CA, name
 * that node, and not be revoked by the CRLs in use when it is reached
 * (`revoked`, read then: an agent made before new CRLs came, whose OpenSSL
 * context has the old ones, checks against the new ones too, before any byte
 * of a call is sent).
 */
export function clientOptions(t: PeerTls, node: string, revoked?: (c: DetailedPeerCertificate) => boolean) {
  return {
    secureContext: clientContext(t),
    minVersion: 'TLSv1.3' as const,
    servername: node,
    // Node passes the detailed certificate (getPeerCertificate(true): with its chain), typed as the plain one.
    checkServerIdentity: (_host: string, cert: PeerCertificate) =>
      peerName(cert) !== node ? new Error(`the peer's certificate names '${peerName(cert) ?? ''}', not node ${node}`) : revoked?.(cert as DetailedPeerCertificate) ? revokedPeer() : undefined,
  };
}
