// The fleet's member names as a peer's call checks them (Reach.admits). A
// name known is answered at once, and the names are read again behind it
// once a second old, so a node removed from the fleet (nodeRemoval.ts) is
// refused within about a second; a name not known waits for a read (at
// most one a second). A read that fails keeps the names last read: a
// forwarded call to this node does not depend on etcd answering now.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { prefix } from './keys.js';

export class Members {
  private names = new Set<string>();
  private at = 0;
  /** The read under way: one for the calls that come meanwhile. */
  private reading: Promise<void> | undefined;

  constructor(
    private readonly etcd: Etcd3,
    private readonly log: Logger,
  ) {}

  /** Whether `name` is a member, as etcd said when last read. */
  async has(name: string): Promise<boolean> {
    const stale = Date.now() - this.at > 1000;
    if (stale && this.names.has(name)) {
      void this.read().catch((e: Error) => this.log.debug({ err: e.message }, 'fleet: member names not read again this time'));
      return true;
    }
    if (stale) await this.read();
    return this.names.has(name);
  }

  private read(): Promise<void> {
    this.reading ??= this.etcd
      .getAll()
      .prefix(prefix.members)
      .keys()
      .then((keys) => {
        this.names = new Set(keys.map((k) => k.slice(prefix.members.length)));
        this.at = Date.now();
      })
      .finally(() => (this.reading = undefined));
    return this.reading;
  }
}
