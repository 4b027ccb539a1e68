// Reach from anywhere: where a session of the fleet lives, and the calls
// that go there. A session is found by id or by its owner and name among
// the placements in etcd (/enclave/desired/NODE/ID: present from placement
// until the session ends, stopped ones included); a call on it is forwarded
// to that node over the mutual-TLS channel (peerTls.ts). A listing asks
// every live node for its own sessions at once and shows a node that does
// not answer (or whose lease lapsed) with what etcd last knew of its sessions.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { z } from 'zod';
import { sessionSchema, type Session } from '../api/schemas.js';
import { ApiError } from '../vocab/errors.js';
import { getPrefix } from './etcd.js';
import { desiredSchema, key, parseValue, prefix, PREFIX, statusSchema, type Desired } from './keys.js';
import { loadPeerTls, PeerClient, peerName, type PeerConfig, type PeerTls } from './peerTls.js';
import { readFleet } from './placement.js';
import { FLEET_READ_TIMEOUT_MS, fleetOp, within } from './deadline.js';

export interface Located {
  id: string;
  node: string;
  owner_uid: number;
  endpoint: string;
}

export type SessionRef = { kind: 'id'; id: string } | { kind: 'name'; name: string; owner: number };

const listReply = z.object({ sessions: z.array(sessionSchema) });
/** An etcd read a list waits on: its answer within the list's bound, else `fallback` (the list goes on without it). */
const quick = <T>(p: Promise<T>, fallback: T, onLate?: (e: Error) => void): Promise<T> =>
  within(p, FLEET_READ_TIMEOUT_MS, "the fleet's etcd").catch((e: Error) => (onLate?.(e), fallback));
const DESIRED = `${PREFIX}desired/`;

export class Reach {
  readonly client: PeerClient;
  /** This node's TLS material: the listener serves with it, the client presents it. */
  readonly tls: PeerTls;
  private members = new Set<string>();
  private membersAt = 0;

  constructor(
    private readonly etcd: Etcd3,
    private readonly self: string,
    peer: PeerConfig,
    private readonly log: Logger,
  ) {
    this.tls = loadPeerTls(peer);
    this.client = new PeerClient(this.tls);
  }

  /** Whether a verified peer certificate names a node registered in the fleet (re-read at most once a second). */
  async admits(cert: Parameters<typeof peerName>[0]): Promise<string> {
    const name = peerName(cert);
    if (name === undefined) throw new ApiError('forbidden', 'the peer certificate has no common name');
    if (!this.members.has(name) && Date.now() - this.membersAt > 1000) {
      const m = await getPrefix(this.etcd, prefix.members);
      this.members = new Set([...m.keys()].map((k) => k.slice(prefix.members.length)));
      this.membersAt = Date.now();
    }
    if (!this.members.has(name) || name === this.self) throw new ApiError('forbidden', `peer '${name.slice(0, 64)}' is not a node of this fleet`);
    return name;
  }

  private async placements(): Promise<Array<{ node: string; d: Desired }>> {
    const all = await getPrefix(this.etcd, DESIRED);
    return [...all].map(([k, v]) => ({ node: k.slice(DESIRED.length).split('/')[0]!, d: parseValue(desiredSchema, k, v) }));
  }

  private async endpoints(): Promise<Map<string, { endpoint: string; alive: boolean }>> {
    return new Map((await readFleet(this.etcd)).map((n) => [n.member.name, { endpoint: n.member.endpoint, alive: n.alive }]));
  }

  /** The session on another node that `ref` names, or undefined; a name two nodes hold is a conflict. */
  async locate(ref: SessionRef): Promise<Located | undefined> {
    return fleetOp(() => this.locateIn(ref));
  }

  private async locateIn(ref: SessionRef): Promise<Located | undefined> {
    const found = (await this.placements()).filter(({ node, d }) => node !== this.self && (ref.kind === 'id' ? d.id === ref.id : d.request.name === ref.name && d.owner_uid === ref.owner));
    if (found.length === 0) return undefined;
    if (found.length > 1) throw new ApiError('conflict', `session name '${ref.kind === 'name' ? ref.name : ''}' is held on nodes ${found.map((f) => f.node).join(', ')}: name it by id`);
    const { node, d } = found[0]!;
    const ep = (await this.endpoints()).get(node);
    if (!ep) throw new ApiError('not_found', `session ${d.id} is placed on node ${node}, which is not a member of the fleet`);
    if (!ep.alive) throw new ApiError('exhausted', `session ${d.id} is on node ${node}, which is unreachable (its lease lapsed)`);
    return { id: d.id, node, owner_uid: d.owner_uid, endpoint: ep.endpoint };
  }

  /** Every other node's sessions (all of them: the caller's node filters by its own policy), each with its node. */
  async others(all: boolean): Promise<Session[]> {
    // Bounded as the pending list is: without etcd a node lists its own sessions, at once.
    const eps = await quick(this.endpoints(), new Map<string, { endpoint: string; alive: boolean }>(), (e) => this.log.warn({ err: e.message }, 'fleet list: this node alone'));
    // Read only when a node does not answer: a list where every node does costs one etcd read.
    let placed: Promise<Array<{ node: string; d: Desired }>> | undefined;
    const lists = [...eps].filter(([n]) => n !== this.self).map(async ([node, ep]) => {
      if (ep.alive) {
        try {
          return (await this.listOf(node, ep.endpoint, all)).map((s) => ({ ...s, node }));
        } catch (e) {
          this.log.debug({ node, err: (e as Error).message }, 'fleet list: node did not answer');
        }
      }
      placed ??= quick(this.placements(), []);
      return quick(this.asKnown(node, (await placed).filter((p) => p.node === node).map((p) => p.d)), []);
    });
    return (await Promise.all(lists)).flat();
  }

  /** A node that does not answer: its sessions as etcd last knew them (the owning node's report), marked unreachable. */
  private async asKnown(node: string, placed: Desired[]): Promise<Session[]> {
    const known = await Promise.all(
      placed.map(async (d) => {
        const v = await this.etcd.get(key.status(d.id)).string().catch(() => null);
        const st = v === null ? undefined : parseValue(statusSchema, key.status(d.id), v);
        const s = st?.session === undefined ? undefined : sessionSchema.safeParse(st.session);
        // No report yet: it was being created when the node went; its placement alone is no session to show.
        return s?.success ? [{ ...s.data, node, last_error: `node ${node} unreachable: shown as etcd last knew it` }] : [];
      }),
    );
    return known.flat();
  }

  private listOf(node: string, endpoint: string, all: boolean): Promise<Session[]> {
    return new Promise((resolve, reject) => {
      const req = this.client.request(node, endpoint, { method: 'GET', path: all ? '/v1/sessions?all=1' : '/v1/sessions' }, { uid: 0, gids: [] });
      // A deadline on the whole answer, not an idle timeout: a request queued behind busy connections
      // to that node, or a peer that trickles bytes, must not hold the list.
      const timer = setTimeout(() => req.destroy(new Error('no whole answer within 5 s')), 5000);
      timer.unref();
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          clearTimeout(timer);
          if (res.statusCode !== 200) return reject(new Error(`node ${node} answered ${res.statusCode}`));
          try {
            resolve(listReply.parse(JSON.parse(Buffer.concat(chunks).toString('utf8'))).sessions);
          } catch (e) {
            reject(new Error(`node ${node}'s list does not parse: ${(e as Error).message.slice(0, 200)}`));
          }
        });
      });
      req.end();
    });
  }

  close(): void {
    this.client.close();
  }
}
