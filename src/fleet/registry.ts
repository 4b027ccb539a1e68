// This node in the fleet: its member record (endpoint, capacity), its alive
// key under a lease it keeps alive, and registering again whenever the
// lease is lost (etcd unreachable past the TTL, or the lease expired while
// the process was stopped). Also the fleet's node list and cordons.
import type { Etcd3, Lease } from 'etcd3';
import type { Logger } from 'pino';
import type { ClusterConfig } from './etcd.js';
import { key, NODE_FEATURES, type NodeCapacity } from './keys.js';
import { readFleet, usedMemory, usedSlots } from './placement.js';

export interface NodeRow {
  name: string;
  /** unreachable (no lease), cordoned, or ready. */
  state: 'ready' | 'cordoned' | 'unreachable';
  cordoned: boolean;
  endpoint: string;
  sessions: number;
  capacity: NodeCapacity;
  used_memory_mb: number;
}

export class Registry {
  private lease: Lease | undefined;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  /** Resolves once registered the first time. */
  registered = false;
  /** Counts registrations: a new one (after a lost lease) is fenced again (failure.ts). */
  generation = 0;
  /** The registration held now (its member record's registered_at), undefined while the lease is lost: this node's list in etcd names it (listPublisher.ts). */
  registeredAt: string | undefined;

  constructor(
    private readonly etcd: Etcd3,
    private readonly c: ClusterConfig,
    private readonly endpoint: string,
    private readonly capacity: () => NodeCapacity,
    private readonly log: Logger,
    /** What this node offers beyond its version's NODE_FEATURES (LocalNode.features). */
    private readonly features: readonly string[] = [],
  ) {}

  /**
   * Write the member record and the alive key under a fresh lease, in one
   * transaction: never a member record written again without its alive key,
   * which a removal of the node (nodeRemoval.ts) could take for a node gone
   * and remove, leaving this one registered as no member. Throws if etcd does not answer.
   */
  async register(): Promise<void> {
    const member = { name: this.c.node, endpoint: this.endpoint, capacity: this.capacity(), registered_at: new Date().toISOString() };
    const lease = this.etcd.lease(this.c.lease_ttl_s);
    lease.on('lost', (e: Error) => {
      if (this.closed || this.lease !== lease) return;
      this.log.warn({ err: e.message }, 'fleet lease lost: registering again');
      this.lease = undefined;
      this.registeredAt = undefined;
      this.again();
    });
    try {
      const id = await lease.grant();
      const me = this.c.node;
      // Features under the lease: whatever version registers next (an older one too) writes its own, or none.
      // A move kit needs the node-to-node channel ([cluster.peer]): without it the node claims none.
      const features = this.c.peer ? this.etcd.put(key.features(me)).value(JSON.stringify([...NODE_FEATURES, ...this.features])).lease(id) : this.etcd.delete().key(key.features(me));
      const ops = await Promise.all([this.etcd.put(key.member(me)).value(JSON.stringify(member)), this.etcd.put(key.alive(me)).value(JSON.stringify({ since: member.registered_at })).lease(id), features].map((o) => o.op()));
      await this.etcd.kv.txn({ success: ops });
      // Lost meanwhile (its 'lost' went unheard: not this node's lease yet): registered under it, the node would think itself live.
      if (lease.revoked()) throw new Error('the fleet lease was lost while registering');
    } catch (e) {
      // Not kept alive for nothing: the next try takes a lease of its own.
      await lease.revoke().catch(() => undefined);
      throw e;
    }
    this.lease = lease;
    this.registeredAt = member.registered_at;
    this.registered = true;
    this.generation++;
    this.log.info({ node: this.c.node, lease_ttl_s: this.c.lease_ttl_s, capacity: member.capacity }, 'registered in the fleet');
  }

  private again(): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.register().catch((e: Error) => {
        this.log.warn({ err: e.message }, 'fleet registration failed; retrying');
        this.again();
      });
    }, 1000);
  }

  /** Registered under a lease not known to be lost. */
  get live(): boolean {
    return this.lease !== undefined;
  }

  async nodes(): Promise<NodeRow[]> {
    return (await readFleet(this.etcd)).map((n) => ({
      name: n.member.name,
      state: !n.alive ? 'unreachable' : n.cordoned ? 'cordoned' : 'ready',
      cordoned: n.cordoned,
      endpoint: n.member.endpoint,
      sessions: usedSlots(n),
      capacity: n.member.capacity,
      used_memory_mb: usedMemory(n),
    }));
  }

  /** Cordon (no new sessions) or uncordon a member; false if no such node (a cordon is written only while it is one: nodeRemoval.ts). */
  async cordon(node: string, on: boolean): Promise<boolean> {
    const member = this.etcd.if(key.member(node), 'Version', '>', 0);
    return (await (on ? member.then(this.etcd.put(key.cordon(node)).value(new Date().toISOString())) : member.then(this.etcd.delete().key(key.cordon(node)))).commit()).succeeded;
  }

  /**
   * Stop renewing. `revoke`: drop the alive key now (a clean stop); else it
   * lapses after the TTL as if the node had died (the lease is released).
   */
  async close(revoke: boolean): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    const l = this.lease;
    this.lease = undefined;
    this.registeredAt = undefined;
    if (!l) return;
    if (revoke) await l.revoke().catch(() => undefined);
    else l.release();
  }
}
