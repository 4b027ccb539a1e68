// Running copies a node made for a placement (`placed`, migration 022) that
// the fleet no longer places on it, and that nothing ended: a copy whose
// report etcd did not take when it was made, and whose move there was then
// undone (the undo found nothing there yet to end; with its report taken,
// the report itself finds the placement gone: worker.ts withdrawn()).
// Looked at once a second by the node's settle; ended only on the fleet's
// word that the session lives on another node (an undo leaves it placed on
// the node it was to leave).
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { LiveRow } from '../store/fleetRows.js';
import { key } from './keys.js';
import { placementsAndMoves } from './placement.js';
import type { SessionState } from '../vocab/states.js';

/** How long a copy the sweep kept is left before it is looked at again, ms: each look reads every placement's key. */
const AGAIN_MS = 30_000;

export interface UnplacedDeps {
  /** Whether this node may create now: not while it is back and not yet fenced (the fence ends what the fleet took from it). */
  mayCreate(): boolean;
  /** Whether this node is making the session now. */
  making(id: string): boolean;
  /** The session's state here now. */
  stateOf(id: string): SessionState | undefined;
  /** End the copy, marked as the copy of `livesOn`, unless the fleet declared it lost here (the fence's); whether it was ended. */
  withdrawn(id: string, log: Logger, livesOn: string): Promise<boolean>;
}

export class UnplacedCopies {
  /** Copies the sweep kept, and when each is looked at again. */
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
   * failure.ts's (endOldCopies). The fleet read once for all of them (every
   * placement's key and every move, at one revision), and only when there
   * is one to look at; one that fails leaves the others.
   */
  async sweep(here: ReadonlyMap<string, LiveRow>, placedIds: ReadonlySet<string>): Promise<void> {
    for (const id of this.kept.keys()) if (here.get(id)?.state !== 'running') this.kept.delete(id);
    if (!this.deps.mayCreate()) return;
    const now = Date.now();
    const due = [...here].filter(([id, row]) => row.placed && row.state === 'running' && !placedIds.has(id) && !this.deps.making(id) && (this.kept.get(id) ?? 0) <= now).map(([id]) => id);
    if (due.length === 0) return;
    let fleet: Awaited<ReturnType<typeof placementsAndMoves>>;
    try {
      fleet = await placementsAndMoves(this.etcd);
    } catch (e) {
      this.log.warn({ err: (e as Error).message, copies: due.length }, 'fleet: running copies placed here no more were not looked at; tried again later');
      for (const id of due) this.kept.set(id, now + AGAIN_MS);
      return;
    }
    for (const id of due) {
      const log = this.log.child({ session: id });
      const on = fleet.where.get(id) ?? [];
      const placedHere = on.includes(this.node);
      const livesOn = on.find((n) => n !== this.node);
      // Kept while etcd itself still places it here (the copy was behind: a create that landed between
      // settle's reads), records a move of it (its mover ends or keeps it), or places it nowhere (etcd's keys
      // lost, or restored from an older snapshot: nothing says it should not run here).
      if (placedHere || fleet.moves.has(key.move(id)) || livesOn === undefined) {
        if (!placedHere && livesOn === undefined && !this.kept.has(id)) log.warn('a running copy made for a placement is placed on no node of the fleet: kept (nothing says it runs elsewhere)');
        this.kept.set(id, Date.now() + AGAIN_MS);
        continue;
      }
      // As it is now, not as settle read it before its awaits: still running, not being made, the node not back unfenced.
      if (!this.deps.mayCreate() || this.deps.making(id) || this.deps.stateOf(id) !== 'running') continue;
      try {
        if (await this.deps.withdrawn(id, log, livesOn)) this.kept.delete(id);
        else this.kept.set(id, Date.now() + AGAIN_MS);
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'fleet: a running copy placed here no more was not ended; tried again later');
        this.kept.set(id, Date.now() + AGAIN_MS);
      }
    }
  }
}
