// Typed queries over volumes and the sessions that mount them.
import type Database from 'better-sqlite3';
import { z } from 'zod';

const volumeRow = z.object({
  name: z.string(),
  state: z.enum(['creating', 'ready', 'removing']),
  size_mb: z.number().int(),
  owner_uid: z.number().int(),
  created_at: z.string(),
});
export type VolumeRow = z.infer<typeof volumeRow>;

export interface VolumeUse {
  session_id: string;
  session_name: string | null;
  volume: string;
  target: string;
  readonly: boolean;
}

const LIVE = `('creating','running','stopping')`;

export class VolumeInUseError extends Error {}
export class VolumeExistsError extends Error {}

export class VolumeStore {
  constructor(private readonly db: Database.Database) {}

  get(name: string): VolumeRow | undefined {
    const r = this.db.prepare('SELECT * FROM volumes WHERE name = ?').get(name);
    return r ? volumeRow.parse(r) : undefined;
  }

  list(): VolumeRow[] {
    return this.db.prepare('SELECT * FROM volumes ORDER BY name').all().map((r) => volumeRow.parse(r));
  }

  /** The intent, recorded before the image exists. */
  insertCreating(name: string, sizeMb: number, ownerUid: number): void {
    try {
      this.db.prepare(`INSERT INTO volumes (name, state, size_mb, owner_uid, created_at) VALUES (?, 'creating', ?, ?, ?)`).run(name, sizeMb, ownerUid, new Date().toISOString());
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new VolumeExistsError(`volume ${name} already exists`);
      throw e;
    }
  }

  markReady(name: string): void {
    this.db.prepare(`UPDATE volumes SET state = 'ready' WHERE name = ?`).run(name);
  }

  /** Marks it 'removing' unless a live session mounts it: one transaction, so no create slips in between. */
  markRemoving(name: string): void {
    this.db
      .transaction(() => {
        const users = this.usersOf(name);
        if (users.length > 0) throw new VolumeInUseError(`volume ${name} is mounted by ${users.map((u) => u.session_name ?? u.session_id).join(', ')}: destroy those sessions first`);
        this.db.prepare(`UPDATE volumes SET state = 'removing' WHERE name = ?`).run(name);
      })
      .immediate();
  }

  delete(name: string): void {
    this.db
      .transaction(() => {
        this.db.prepare('DELETE FROM session_volumes WHERE volume = ?').run(name);
        this.db.prepare('DELETE FROM volumes WHERE name = ?').run(name);
      })
      .immediate();
  }

  /** Live sessions that mount it. */
  usersOf(name: string): VolumeUse[] {
    return this.db
      .prepare(
        `SELECT v.session_id, s.name AS session_name, v.volume, v.target, v.readonly FROM session_volumes v JOIN sessions s ON s.id = v.session_id
         WHERE v.volume = ? AND s.state IN ${LIVE} ORDER BY s.created_at`,
      )
      .all(name)
      .map((r) => ({ ...(r as Omit<VolumeUse, 'readonly'>), readonly: (r as { readonly: number }).readonly === 1 }));
  }
}
