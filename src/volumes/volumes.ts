// Volumes: named, size-capped filesystems that outlive sessions and daemon
// restarts. Each step is recorded before it acts (row 'creating' before the
// image, 'removing' before the unmount), and a start finishes what a crash
// interrupted. A volume belongs to the uid that created it; its name is
// unique per owner, its image and mount are named by its id.
import { randomBytes } from 'node:crypto';
import { statfsSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { ApiError } from '../vocab/errors.js';
import type { Volume } from '../api/schemas.js';
import { VolumeExistsError, VolumeInUseError, type VolumeRow, type VolumeStore, type VolumeUse } from '../store/volumeStore.js';
import { createImage, destroyImage, imagePath, mountImage, mountPath, prepareVolumesDir, volumesDir, VolumeDiskError } from './volumeDisk.js';

const MIB = 1024 * 1024;

export class Volumes {
  constructor(
    private readonly store: VolumeStore,
    private readonly stateDir: string,
    private readonly config: { default_size_mb: number; reserve_mb: number },
    private readonly log: Logger,
  ) {}

  /** At daemon start: root-only directories, and the end of any create or remove a crash cut short. */
  async recover(): Promise<void> {
    prepareVolumesDir(this.stateDir);
    for (const v of this.store.list()) {
      if (v.state === 'ready') continue;
      // A half-made volume never held data; a 'removing' one was already refused to new sessions.
      this.log.warn({ volume: v.id, state: v.state }, 'finishing an interrupted volume operation');
      await destroyImage(this.stateDir, v.id);
      this.store.delete(v.id);
    }
  }

  get(id: string): VolumeRow | undefined {
    return this.store.get(id);
  }

  byName(owner: number, name: string): VolumeRow | undefined {
    return this.store.byName(owner, name);
  }

  /** `seen`: which mounting sessions the reader may be told of (the others are left out). */
  view(v: VolumeRow, seen: (u: VolumeUse) => boolean = () => true): Volume {
    return {
      name: v.name,
      id: v.id,
      size_mb: v.size_mb,
      owner_uid: v.owner_uid,
      created_at: v.created_at,
      used_by: this.store.usersOf(v.id).filter(seen).map((u) => ({ id: u.session_id, name: u.session_name, target: u.target, readonly: u.readonly })),
    };
  }

  list(): VolumeRow[] {
    return this.store.list().filter((v) => v.state === 'ready');
  }

  /**
   * The volume's whole size must fit on the disk with volumes.reserve_mb to
   * spare, beside what every existing volume may still grow by: images are
   * sparse, so free space alone overstates what is left.
   */
  private checkSpace(sizeMb: number): void {
    const st = statfsSync(volumesDir(this.stateDir));
    const freeMb = Math.floor((st.bavail * st.bsize) / MIB);
    let promisedMb = 0;
    for (const v of this.store.list()) {
      let written = 0;
      try {
        written = statSync(imagePath(this.stateDir, v.id)).blocks * 512;
      } catch {
        /* not made yet: all of it is promised */
      }
      promisedMb += Math.max(0, v.size_mb - Math.floor(written / MIB));
    }
    if (freeMb - promisedMb - sizeMb < this.config.reserve_mb) {
      throw new ApiError(
        'insufficient_storage',
        `not enough disk for a volume of ${sizeMb} MiB: ${volumesDir(this.stateDir)} has ${freeMb} MiB free, existing volumes may still grow by ${promisedMb} MiB, and ${this.config.reserve_mb} MiB must stay free (volumes.reserve_mb)`,
        'size_mb',
      );
    }
  }

  /** `admit` sees the MiB the owner's volumes hold, in the transaction that records the new one. */
  async create(name: string, sizeMb: number | undefined, ownerUid: number, admit?: (usedMb: number, sizeMb: number) => void): Promise<Volume> {
    const size = sizeMb ?? this.config.default_size_mb;
    const id = `v-${randomBytes(5).toString('hex')}`;
    try {
      this.store.insertCreating(id, name, size, ownerUid, (used) => {
        admit?.(used, size);
        this.checkSpace(size);
      });
    } catch (e) {
      if (e instanceof VolumeExistsError) throw new ApiError('conflict', e.message, 'name');
      throw e;
    }
    try {
      await createImage(this.stateDir, id, size);
      await mountImage(this.stateDir, id);
    } catch (e) {
      await destroyImage(this.stateDir, id).catch(() => undefined);
      this.store.delete(id);
      if (e instanceof VolumeDiskError) throw new ApiError('internal', e.message);
      throw e;
    }
    this.store.markReady(id);
    this.log.info({ volume: id, name, size_mb: size, owner: ownerUid }, 'volume created');
    return this.view(this.store.get(id)!);
  }

  async remove(v: VolumeRow, seen: (u: VolumeUse) => boolean = () => true): Promise<void> {
    try {
      this.store.markRemoving(v.id, v.name, seen);
    } catch (e) {
      if (e instanceof VolumeInUseError) throw new ApiError('conflict', e.message);
      throw e;
    }
    await destroyImage(this.stateDir, v.id);
    this.store.delete(v.id);
    this.log.info({ volume: v.id, name: v.name }, 'volume removed');
  }

  /** The host mount a session's plan takes its idmapped copy of, mounted now if it is not (after a reboot). */
  async hostMount(id: string): Promise<string> {
    try {
      await mountImage(this.stateDir, id);
    } catch (e) {
      if (e instanceof VolumeDiskError) throw new ApiError('internal', e.message);
      throw e;
    }
    return mountPath(this.stateDir, id);
  }
}
