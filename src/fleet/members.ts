// The fleet's member names as a peer's call checks them (Reach.admits):
// from the node's watched copy of etcd while it follows etcd (no read: a
// node removed from the fleet, nodeRemoval.ts, is refused once the copy
// has its delete). Otherwise from names read from etcd: a name known is
// answered at once and the names are read again behind it once a second
// old; a name not known waits for a read (at most one a second). A read
// that fails keeps the names last read: a forwarded call to this node does
// not depend on etcd answering now.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { key, prefix } from './keys.js';

export class Members {
  private names = new Set<string>();
  private at = 0;
  /** The read under way: one for the calls that come meanwhile. */
  private reading: Promise<void> | undefined;

  constructor(
    private readonly etcd: Etcd3,
    private readonly log: Logger,
    /** The member records as the watched copy holds them now, undefined while it does not follow etcd. */
    private readonly copy: () => ReadonlyMap<string, string> | undefined = () => undefined,
  ) {}

  /** Whether `name` is a member, as the copy holds it, or etcd said when last read. */
  async has(name: string): Promise<boolean> {
    const copy = this.copy();
    if (copy) return copy.has(key.member(name));
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
