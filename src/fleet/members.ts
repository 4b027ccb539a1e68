// The fleet's member names as a peer's call checks them (Reach.admits): read
// from etcd at most once a second, and whenever older than that, so a node
// removed from the fleet (nodeRemoval.ts) is refused within a second.
import type { Etcd3 } from 'etcd3';
import { getPrefix } from './etcd.js';
import { prefix } from './keys.js';

export class Members {
  private names = new Set<string>();
  private at = 0;
  /** The read under way: one for the calls that come meanwhile. */
  private reading: Promise<void> | undefined;

  constructor(private readonly etcd: Etcd3) {}

  /** Whether `name` is a member, as etcd said within the last second. */
  async has(name: string): Promise<boolean> {
    if (Date.now() - this.at > 1000) {
      this.reading ??= getPrefix(this.etcd, prefix.members)
        .then((m) => {
          this.names = new Set([...m.keys()].map((k) => k.slice(prefix.members.length)));
          this.at = Date.now();
        })
        .finally(() => (this.reading = undefined));
      await this.reading;
    }
    return this.names.has(name);
  }
}
