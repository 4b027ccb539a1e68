// Typed queries over volumes and the sessions that mount them. A volume has
// an id (its image and mount are named by it) and a name unique per owner.
import type Database from 'better-sqlite3';
import { z } from 'zod';
import { LIVE_SQL } from '../vocab/states.js';

const volumeRow = z.object({
  id: z.string(),
  name: z.string(),
  state: z.enum(['creating', 'ready', 'removing']),
  size_mb: z.number().int(),
  owner_uid: z.number().int(),
  created_at: z.string(),
  /** Made here by a drain's move of this session (migration 024). */
  moved_for: z.string().nullable(),
});
export type VolumeRow = z.infer<typeof volumeRow>;

export interface VolumeUse {
  session_id: string;
  session_name: string | null;
  session_owner: number | null;
  /** A stopped session mounts it by reference only: no process of its can touch it until it starts. */
  session_state: string;
  volume: string;
  target: string;
  readonly: boolean;
}

const LIVE = LIVE_SQL;

export class VolumeInUseError extends Error {}
export class VolumeExistsError extends Error {}
export class VolumeBusyError extends Error {}

export class VolumeStore {
  constructor(private readonly db: Database.Database) {}

  get(id: string): VolumeRow | undefined {
    const r = this.db.prepare('SELECT * FROM volumes WHERE id = ?').get(id);
    return r ? volumeRow.parse(r) : undefined;
  }

  /** An owner's volume of that name (names are per owner). */
  byName(owner: number, name: string): VolumeRow | undefined {
    const r = this.db.prepare('SELECT * FROM volumes WHERE owner_uid = ? AND name = ?').get(owner, name);
    return r ? volumeRow.parse(r) : undefined;
  }

  list(): VolumeRow[] {
    return this.db.prepare('SELECT * FROM volumes ORDER BY owner_uid, name').all().map((r) => volumeRow.parse(r));
  }

  /**
   * The intent, recorded before the image exists. `admit` sees the MiB the
   * owner's volumes hold now (every state: a half-made one takes disk too)
   * and throws to refuse, in the same transaction as the insert.
   */
  insertCreating(id: string, name: string, sizeMb: number, ownerUid: number, admit?: (usedMb: number) => void, movedFor: string | null = null): void {
    this.db
      .transaction(() => {
        if (this.byName(ownerUid, name)) throw new VolumeExistsError(`you already have a volume named ${name}`);
        const used = (this.db.prepare('SELECT coalesce(sum(size_mb), 0) AS mb FROM volumes WHERE owner_uid = ?').get(ownerUid) as { mb: number }).mb;
        admit?.(used);
        this.db.prepare(`INSERT INTO volumes (id, name, state, size_mb, owner_uid, created_at, moved_for) VALUES (?, ?, 'creating', ?, ?, ?, ?)`).run(id, name, sizeMb, ownerUid, new Date().toISOString(), movedFor);
      })
      .immediate();
  }

  /**
   * A grow, recorded before the image grows (a start finishes one a crash cut
   * short): only from `fromMb`, of a ready volume. `admit` sees the MiB the
   * owner's volumes hold now and throws to refuse, in the same transaction.
   */
  recordSize(id: string, fromMb: number, toMb: number, ownerUid: number, admit?: (usedMb: number) => void): void {
    this.db
      .transaction(() => {
        const used = (this.db.prepare('SELECT coalesce(sum(size_mb), 0) AS mb FROM volumes WHERE owner_uid = ?').get(ownerUid) as { mb: number }).mb;
        admit?.(used);
        const r = this.db.prepare(`UPDATE volumes SET size_mb = ? WHERE id = ? AND state = 'ready' AND size_mb = ?`).run(toMb, id, fromMb);
        if (r.changes !== 1) throw new VolumeBusyError(`volume ${id} changed meanwhile: try again`);
      })
      .immediate();
  }

  /** Undo a recorded grow whose filesystem did not grow. */
  setSize(id: string, sizeMb: number): void {
    this.db.prepare('UPDATE volumes SET size_mb = ? WHERE id = ?').run(sizeMb, id);
  }

  markReady(id: string): void {
    this.db.prepare(`UPDATE volumes SET state = 'ready' WHERE id = ?`).run(id);
  }

  /** Marks it 'removing' unless a live session mounts it: one transaction, so no create slips in between. `seen`: the sessions the message may name. */
  markRemoving(id: string, label: string, seen: (u: VolumeUse) => boolean): void {
    this.db
      .transaction(() => {
        const users = this.usersOf(id);
        if (users.length > 0) {
          const named = users.filter(seen).map((u) => u.session_name ?? u.session_id);
          const others = users.length - named.length;
          const by = [...named, ...(others ? [`${others} session${others > 1 ? 's' : ''} of another user`] : [])].join(', ');
          throw new VolumeInUseError(`volume ${label} is mounted by ${by}: destroy those sessions first`);
        }
        this.db.prepare(`UPDATE volumes SET state = 'removing' WHERE id = ?`).run(id);
      })
      .immediate();
  }

  delete(id: string): void {
    this.db
      .transaction(() => {
        this.db.prepare('DELETE FROM session_volumes WHERE volume = ?').run(id);
        this.db.prepare('DELETE FROM volumes WHERE id = ?').run(id);
      })
      .immediate();
  }

  /** The volumes a drain's move of this session made here (its kit's). */
  movedFor(sessionId: string): string[] {
    return this.db
      .prepare('SELECT id FROM volumes WHERE moved_for = ? ORDER BY id')
      .all(sessionId)
      .map((r) => (r as { id: string }).id);
  }

  /** The ready volumes made here for drains' moves whose moves this node has not yet seen over. */
  madeForMoves(): VolumeRow[] {
    return this.db
      .prepare("SELECT * FROM volumes WHERE moved_for IS NOT NULL AND state = 'ready' ORDER BY id")
      .all()
      .map((r) => volumeRow.parse(r));
  }

  /** Its move over here (committed, or undone): the volumes made for it are its owner's like any other from now on. */
  clearMovedFor(sessionId: string): void {
    this.db.prepare('UPDATE volumes SET moved_for = NULL WHERE moved_for = ?').run(sessionId);
  }


  /**
   * Live sessions that mount it (stopped ones too: a volume they mount is not
   * removed), each read-only only where its mount is: a drain's copy mounts
   * the volumes made for its move read-write (CreateExtra.writable).
   */
  usersOf(id: string): VolumeUse[] {
    return this.db
      .prepare(
        `SELECT v.session_id, s.name AS session_name, s.owner_uid AS session_owner, s.state AS session_state, v.volume, v.target,
           (v.readonly = 1 AND vol.moved_for IS NOT s.id) AS readonly
         FROM session_volumes v JOIN sessions s ON s.id = v.session_id JOIN volumes vol ON vol.id = v.volume
         WHERE v.volume = ? AND s.state IN ${LIVE} ORDER BY s.created_at`,
      )
      .all(id)
      .map((r) => ({ ...(r as Omit<VolumeUse, 'readonly'>), readonly: (r as { readonly: number }).readonly === 1 }));
  }
}
