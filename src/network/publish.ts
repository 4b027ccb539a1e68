// Published ports: kernel NAT in the daemon's own nftables table (see
// firewall.ts), one element of the map `published` per port, added when it
// is published and removed when it is unpublished or its session ends. The
// daemon's process is on no connection's path: it holds no fd per
// connection, and the ports keep answering while it is down (a stop leaves
// the elements; only `enclave daemon --cleanup` removes the table, and each
// start reloads them from the database in the table's one atomic load).
//
// One session per host address and port is SQLite's (published_ports).
// Against every other program of the host, the daemon holds each published
// host address and port with a bound socket that does not listen
// (native/src/addon/ports.cc): taken before the element is added, so a port
// another program uses is refused before anything forwards it, and kept for
// as long as it is published. DNAT in the output hook comes before socket
// lookup, so this socket never gets a connection. A daemon that is down
// holds nothing: another program may bind the port meanwhile, gets no
// connection through it (the element still sends them to the session), and
// the next start logs that it cannot hold the port again.
import { constants } from 'node:os';
import type { Logger } from 'pino';
import { addon } from '../native/addon.js';
import type { PortForward, PortForwards } from './firewall.js';

export interface PortMapping {
  host_ip: string;
  host_port: number;
  session_port: number;
}

/** Another program of the host holds that address and port. */
export class HostPortInUseError extends Error {
  readonly code = 'EADDRINUSE';
}

/** How a host port is held and let go (native; a test passes its own). */
export interface PortHolder {
  /** The fd of a socket bound to ip:port; throws with .errno. */
  hold(ip: string, port: number): number;
  release(fd: number): void;
}

const nativeHolder: PortHolder = {
  hold: (ip, port) => addon().holdPort(ip, port),
  release: (fd) => addon().closeFd(fd),
};

interface Published {
  forward: PortForward;
  /** Its element is in the map. */
  mapped: boolean;
  /** The socket holding the host port, while this daemon holds it. */
  fd: number | undefined;
}

const key = (m: { host_ip: string; host_port: number }) => `${m.host_ip}:${m.host_port}`;
const absent = (e: unknown) => /No such file or directory/.test((e as Error).message);

export class PortPublisher {
  /** Per session, its published ports by host address:port. */
  private readonly sessions = new Map<string, Map<string, Published>>();

  constructor(
    private readonly log: Logger,
    private readonly forwards: PortForwards,
    private readonly holder: PortHolder = nativeHolder,
  ) {}

  private of(sessionId: string): Map<string, Published> {
    let mine = this.sessions.get(sessionId);
    if (!mine) this.sessions.set(sessionId, (mine = new Map()));
    return mine;
  }

  /** Start-up: the elements the table was just loaded with, by session. Nothing is held yet (`holdAgain`). */
  loaded(forwards: readonly (PortForward & { session_id: string })[]): void {
    for (const { session_id, ...f } of forwards) this.of(session_id).set(key(f), { forward: f, mapped: true, fd: undefined });
  }

  private hold(m: { host_ip: string; host_port: number }): number {
    try {
      return this.holder.hold(m.host_ip, m.host_port);
    } catch (e) {
      if ((e as { errno?: number }).errno === constants.errno.EADDRINUSE) throw new HostPortInUseError(`${key(m)}: the host port is already in use`);
      throw e;
    }
  }

  /**
   * Hold each host port, then add its element. On a failure what this call
   * did is undone and it throws (HostPortInUseError: another program has
   * one of the ports).
   */
  async publish(sessionId: string, address: number, mappings: readonly PortMapping[]): Promise<void> {
    const done: Published[] = [];
    try {
      for (const m of mappings) {
        const p: Published = { forward: { host_ip: m.host_ip, host_port: m.host_port, address, session_port: m.session_port }, mapped: false, fd: this.hold(m) };
        done.push(p);
        await this.forwards.add(p.forward);
        p.mapped = true;
      }
    } catch (e) {
      for (const p of done.reverse()) await this.drop(sessionId, p);
      throw e;
    }
    const mine = this.of(sessionId);
    for (const p of done) mine.set(key(p.forward), p);
    if (done.length) this.log.info({ session: sessionId, ports: mappings }, 'ports published');
  }

  /**
   * A re-adopted session: its elements are in the table (start-up loaded
   * them); its host ports are held again. One another program took while
   * the daemon was down is logged: the session keeps it (the element sends
   * every connection to it), that program gets none.
   */
  holdAgain(sessionId: string): void {
    for (const p of this.sessions.get(sessionId)?.values() ?? []) {
      if (p.fd !== undefined) continue;
      try {
        p.fd = this.hold(p.forward);
      } catch (e) {
        this.log.warn(
          { session: sessionId, port: key(p.forward), err: (e as Error).message },
          'cannot hold a published host port again (another program bound it while the daemon was down): connections to it still reach the session',
        );
      }
    }
  }

  /** The element removed, then the host port let go. Throws (keeping both) if the element cannot be removed. */
  private async drop(sessionId: string, p: Published, strict = false): Promise<void> {
    if (p.mapped) {
      try {
        await this.forwards.remove(p.forward);
      } catch (e) {
        if (!absent(e)) {
          if (strict) throw e;
          this.log.error({ session: sessionId, port: key(p.forward), err: (e as Error).message }, 'cannot remove the element of a published port (the next start drops it)');
        }
      }
      p.mapped = false;
    }
    if (p.fd !== undefined) this.holder.release(p.fd);
    p.fd = undefined;
  }

  /** One port no longer published: new connections to it are refused at once; those open carry on. */
  async unpublishOne(sessionId: string, m: { host_ip: string; host_port: number }): Promise<void> {
    const mine = this.sessions.get(sessionId);
    // Not known here: its element may still be in the kernel all the same.
    const p = mine?.get(key(m)) ?? { forward: { host_ip: m.host_ip, host_port: m.host_port, address: 0, session_port: 0 }, mapped: true, fd: undefined };
    await this.drop(sessionId, p, true);
    mine?.delete(key(m));
    this.log.info({ session: sessionId, port: key(m) }, 'port unpublished');
  }

  /** Every port of the session (it ends). Never throws: an element that cannot be removed is logged, and the next start drops it. */
  async unpublish(sessionId: string): Promise<void> {
    const mine = this.sessions.get(sessionId);
    if (!mine) return;
    this.sessions.delete(sessionId);
    for (const p of mine.values()) await this.drop(sessionId, p);
  }

  /** Daemon stop: the host ports are let go; the elements stay, and the ports keep answering. */
  closeAll(): void {
    for (const mine of this.sessions.values()) {
      for (const p of mine.values()) {
        if (p.fd !== undefined) this.holder.release(p.fd);
        p.fd = undefined;
      }
    }
    this.sessions.clear();
  }
}
