// Ports of a running session, published and unpublished while it runs:
// recorded first, then held and forwarded (publish.ts); the record goes if
// that fails. Unpublished: the element goes first, then the record.
// (Create publishes through the session's "publish" step.)
import { ApiError } from '../vocab/errors.js';
import { PortTakenError, type PublishedPort, type SessionStore } from '../store/sessionStore.js';
import { HostPortInUseError, type PortPublisher } from './publish.js';

export class RunningPorts {
  constructor(
    private readonly store: SessionStore,
    private readonly publisher: PortPublisher,
  ) {}

  private running(id: string): { network: string; owner_uid: number | null } {
    const row = this.store.get(id);
    if (!row) throw new ApiError('not_found', `no session ${id}`);
    if (row.state !== 'running') throw new ApiError('conflict', `session ${id} is ${row.state}, not running`);
    return row;
  }

  async publish(id: string, p: PublishedPort): Promise<void> {
    const row = this.running(id);
    const lease = this.store.leaseOf(id);
    if (row.network !== 'bridge' || lease === undefined) throw new ApiError('invalid_request', `session ${id} has no network (created with --network none): nothing to publish to`, 'publish');
    try {
      this.store.addPort(id, p);
    } catch (e) {
      if (e instanceof PortTakenError) throw new ApiError('conflict', e.for(row.owner_uid), 'publish');
      throw e;
    }
    try {
      await this.publisher.publish(id, lease, [p]);
    } catch (e) {
      this.store.removePort(id, p.host_ip, p.host_port);
      throw new ApiError('conflict', `cannot publish ${p.host_ip}:${p.host_port}: ${e instanceof HostPortInUseError ? 'the host port is already in use' : (e as Error).message}`, 'publish');
    }
    // Released while it was being forwarded: its ports went with it, so this one goes too.
    if (this.store.get(id)?.state !== 'running') {
      await this.publisher.unpublishOne(id, p).catch(() => undefined);
      throw new ApiError('conflict', `session ${id} ended while the port was being published`);
    }
  }

  async unpublish(id: string, hostIp: string, hostPort: number): Promise<void> {
    this.running(id);
    if (!this.store.portsOf(id).some((p) => p.host_ip === hostIp && p.host_port === hostPort)) {
      throw new ApiError('not_found', `session ${id} does not publish ${hostIp}:${hostPort}`);
    }
    await this.publisher.unpublishOne(id, { host_ip: hostIp, host_port: hostPort });
    this.store.removePort(id, hostIp, hostPort);
  }
}
