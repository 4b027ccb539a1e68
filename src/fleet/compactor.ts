// etcd keeps every revision of every key until someone compacts it; a fleet
// whose reports, allocations and placements are written for weeks would fill
// etcd's backend quota (2 GiB by default) and etcd would then refuse every
// write (alarm NOSPACE). Kubernetes' API servers compact etcd themselves,
// every 5 minutes, to the revision they saw one interval earlier; the fleet
// does the same. Each round, every node tries one compare-and-swap of
// /enclave/compaction on the key's version it last saw: one node per round
// wins it and compacts to the revision it read at its previous round. A node
// whose swap failed takes the version it found, and tries the next round.
// A watch resuming from a compacted revision (its stream broke, and it had
// heard nothing newer: etcd 3.4 tells a quiet watch its revision only every
// 10 minutes) is cancelled by etcd, and made again (watched.ts, worker.ts).
// Compaction is etcd-wide: on an etcd shared with others it compacts their
// history too; cluster.compact_interval_s = 0 leaves it to etcd's own
// --auto-compaction-* (or to whoever runs that etcd). Space freed is reused
// by etcd; giving it back to the file system (etcdctl defrag) stays the
// operator's, as on Kubernetes.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { PREFIX } from './keys.js';
import { every, type Every } from './every.js';

export const COMPACTION_KEY = `${PREFIX}compaction`;

export class Compactor {
  /** The version of COMPACTION_KEY this node last saw (0: none yet). */
  private seen = 0;
  /** etcd's revision at this node's previous round: what the next won round compacts to. */
  private lastRev = 0;
  private loop: Every | undefined;

  constructor(
    private readonly etcd: Etcd3,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.intervalMs <= 0 || this.loop) return;
    this.loop = every(this.intervalMs, () => this.round(), (e) => this.log.warn({ err: e.message }, 'fleet: etcd not compacted this round'), true);
  }

  close(): void {
    this.loop?.stop();
  }

  /** One round: the revision compacted to, if this node won the round and had a revision to compact to. */
  async round(): Promise<number | undefined> {
    const r = await this.etcd
      .if(COMPACTION_KEY, 'Version', '==', this.seen)
      .then(this.etcd.put(COMPACTION_KEY).value(String(this.lastRev)))
      .else(this.etcd.get(COMPACTION_KEY))
      .commit();
    const target = this.lastRev;
    this.lastRev = Number(r.header.revision);
    if (!r.succeeded) {
      // Another node won this round (or this node's own swap, sent again, applied: it then compacts next round).
      this.seen = Number(r.responses[0]?.response_range?.kvs[0]?.version ?? 0);
      return undefined;
    }
    this.seen++;
    if (target === 0) return undefined; // its first round: nothing seen an interval ago
    try {
      await this.etcd.kv.compact({ revision: String(target) });
    } catch (e) {
      // Compacted past it already (etcd's own --auto-compaction, or an operator): nothing to do.
      if (/compacted/.test((e as Error).message)) return undefined;
      throw e;
    }
    this.log.info({ revision: target }, 'fleet: etcd compacted');
    return target;
  }
}
