// Running copies a node made for a placement (`placed`, migration 022) that
// the fleet no longer places on it, and that nothing ended: a copy whose
// report etcd did not take when it was made, and whose move there was then
// undone (the undo found nothing there yet to end; with its report taken,
// the report itself finds the placement gone: worker.ts withdrawn()).
// Looked at once a second by the node's settle, each on its own; ended
// only on the fleet's word that the session lives on another node.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { LiveRow } from '../store/fleetRows.js';
import { key } from './keys.js';
import { placedNodes } from './placement.js';

/** How long a copy unplaced() kept is left before it is looked at again, ms: each look reads every placement's key. */
const AGAIN_MS = 30_000;

export interface UnplacedDeps {
  /** Whether this node may create now: not while it is back and not yet fenced (the fence ends what the fleet took from it). */
  mayCreate(): boolean;
  /** Whether this node is making the session now. */
  making(id: string): boolean;
  /** End the copy, marked as the copy of `livesOn`, unless the fleet declared it lost here (the fence's); whether it was ended. */
  withdrawn(id: string, log: Logger, livesOn: string): Promise<boolean>;
}

export class UnplacedCopies {
  /** Copies unplaced() kept, and when each is looked at again. */
  private readonly kept = new Map<string, number>();

  constructor(
    private readonly etcd: Etcd3,
    private readonly node: string,
    private readonly log: Logger,
    private readonly deps: UnplacedDeps,
  ) {}

  /**
   * This node's running copies made for a placement that `placedIds` (the
   * fleet's copy of this node's placements) does not hold. A stopped one is
   * failure.ts's (endOldCopies). One that fails leaves the others.
   */
  async sweep(here: ReadonlyMap<string, LiveRow>, placedIds: ReadonlySet<string>): Promise<void> {
    for (const id of this.kept.keys()) if (here.get(id)?.state !== 'running') this.kept.delete(id);
    if (!this.deps.mayCreate()) return;
    for (const [id, row] of here) {
      if (!row.placed || row.state !== 'running' || placedIds.has(id) || this.deps.making(id) || (this.kept.get(id) ?? 0) > Date.now()) continue;
      try {
        if (await this.unplaced(id)) this.kept.delete(id);
        else this.kept.set(id, Date.now() + AGAIN_MS);
      } catch (e) {
        this.log.warn({ session: id, err: (e as Error).message }, 'fleet: a running copy placed here no more was not looked at; tried again later');
        this.kept.set(id, Date.now() + AGAIN_MS);
      }
    }
  }

  /**
   * Ended only when etcd places it on another node (an undo leaves it
   * placed on the node it was to leave). Kept while etcd itself still
   * places it here (the copy is behind: a create that landed between
   * settle's reads), records a move of it (its mover ends or keeps it), or
   * places it nowhere (etcd's keys lost, or restored from an older
   * snapshot: nothing says it should not run here). Whether it was ended.
   */
  private async unplaced(id: string): Promise<boolean> {
    if ((await this.etcd.get(key.desired(this.node, id)).string()) !== null) return false;
    if ((await this.etcd.get(key.move(id)).string()) !== null) return false;
    const log = this.log.child({ session: id });
    const livesOn = (await placedNodes(this.etcd, id)).find((n) => n !== this.node);
    if (livesOn !== undefined) return this.deps.withdrawn(id, log, livesOn);
    log.warn('a running copy made for a placement is placed on no node of the fleet: kept (nothing says it runs elsewhere)');
    return false;
  }
}
