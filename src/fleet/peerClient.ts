// Connections from this node to the others (the client side of the
// node-to-node channel, src/fleet/peerTls.ts): kept alive per node, made
// again with new material on a reload, and each connection to a node that
// new CRLs revoke cut.
import { request, Agent, type RequestOptions } from 'node:https';
import { connect, type TLSSocket } from 'node:tls';
import { clientOptions, GIDS_HEADER, hostPort, revokedPeer, UID_HEADER, type PeerCredentials, type PeerTls } from './peerTls.js';

/** Cut a connection to a revoked node: its call, if one is on it, hears why; an idle one has no listener to (and must not crash the daemon). */
function cutRevoked(s: TLSSocket): void {
  s.once('error', () => undefined);
  s.destroy(revokedPeer());
}

/** Connections to other nodes, kept alive per node (a list asks every node). */
export class PeerClient {
  private readonly agents = new Map<string, Agent>();

  /** Every connection seen (each watched once). */
  private readonly seen = new WeakSet<TLSSocket>();

  constructor(private readonly credentials: PeerCredentials) {
    let presented = credentials.tls;
    credentials.onChange((t) => {
      // A new certificate (or CA) is presented on new connections; new CRLs alone leave other nodes' connections be.
      if (!(t.ca.equals(presented.ca) && t.cert.equals(presented.cert) && t.key.equals(presented.key))) this.retire();
      presented = t;
    });
  }

  /**
   * A connection to another node, held once its handshake is done
   * (PeerCredentials.hold), so that new CRLs that revoke that node cut it.
   * The handshake itself checked it (checkServerIdentity).
   */
  private watch(s: TLSSocket): void {
    if (this.seen.has(s)) return;
    this.seen.add(s);
    const check = () => this.credentials.hold(s, cutRevoked);
    // One the agent pooled before its request saw it (that request gone first) has shaken hands already.
    if (s.getFinished() !== undefined) check();
    else s.once('secureConnect', check);
  }

  private get tls(): PeerTls {
    return this.credentials.tls;
  }

  private options(node: string) {
    return clientOptions(this.tls, node, (c) => this.credentials.revokesPresented(c));
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
      // No session resumption: a resumed session shows no certificate to check against new CRLs (a full handshake per
      // connection; they are kept alive).
      a = new Agent({ keepAlive: true, maxSockets: 16, maxCachedSessions: 0, ...this.options(node) });
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
    const via = long ? { agent: false as const, ...this.options(node) } : { agent: this.agent(node) };
    const req = request({ host, port, ...via, ...o, headers: { ...o.headers, [UID_HEADER]: String(who.uid), [GIDS_HEADER]: who.gids.join(',') } });
    req.on('socket', (s) => this.watch(s as TLSSocket));
    return req;
  }

  /** A raw TLS connection to `node` (a WebSocket upgrade is piped through it byte for byte). */
  connect(node: string, endpoint: string): TLSSocket {
    const { host, port } = hostPort(node, endpoint);
    const s = connect({ host, port, ...this.options(node) });
    this.watch(s);
    return s;
  }

  close(): void {
    for (const a of [...this.agents.values(), ...this.retired]) a.destroy();
    this.agents.clear();
    this.retired.clear();
  }
}
