// Volumes: named, size-capped filesystems that outlive sessions and daemon
// restarts. Each step is recorded before it acts (row 'creating' before the
// image, 'removing' before the unmount), and a start finishes what a crash
// interrupted. Access: the creator owns a volume; the policy's volume.*
// actions apply, with `self` meaning one's own volumes.
import type { Logger } from 'pino';
import { ApiError } from '../api/errors.js';
import type { Volume } from '../api/schemas.js';
import { VolumeExistsError, VolumeInUseError, type VolumeRow, type VolumeStore } from '../store/volumeStore.js';
import { createImage, destroyImage, mountImage, mountPath, prepareVolumesDir, VolumeDiskError } from './volumeDisk.js';

export class Volumes {
  constructor(
    private readonly store: VolumeStore,
    private readonly stateDir: string,
    private readonly defaultSizeMb: number,
    private readonly log: Logger,
  ) {}

  /** At daemon start: root-only directories, and the end of any create or remove a crash cut short. */
  async recover(): Promise<void> {
    prepareVolumesDir(this.stateDir);
    for (const v of this.store.list()) {
      if (v.state === 'ready') continue;
      // A half-made volume never held data; a 'removing' one was already refused to new sessions.
      this.log.warn({ volume: v.name, state: v.state }, 'finishing an interrupted volume operation');
      await destroyImage(this.stateDir, v.name);
      this.store.delete(v.name);
    }
  }

  get(name: string): VolumeRow {
    const v = this.store.get(name);
    if (!v) throw new ApiError('not_found', `no volume named ${name}`);
    return v;
  }

  view(v: VolumeRow): Volume {
    return {
      name: v.name,
      size_mb: v.size_mb,
      owner_uid: v.owner_uid,
      created_at: v.created_at,
      used_by: this.store.usersOf(v.name).map((u) => ({ id: u.session_id, name: u.session_name, target: u.target, readonly: u.readonly })),
    };
  }

  list(): VolumeRow[] {
    return this.store.list().filter((v) => v.state === 'ready');
  }

  async create(name: string, sizeMb: number | undefined, ownerUid: number): Promise<Volume> {
    const size = sizeMb ?? this.defaultSizeMb;
    try {
      this.store.insertCreating(name, size, ownerUid);
    } catch (e) {
      if (e instanceof VolumeExistsError) throw new ApiError('conflict', e.message, 'name');
      throw e;
    }
    try {
      await createImage(this.stateDir, name, size);
      await mountImage(this.stateDir, name);
    } catch (e) {
      await destroyImage(this.stateDir, name).catch(() => undefined);
      this.store.delete(name);
      if (e instanceof VolumeDiskError) throw new ApiError('internal', e.message);
      throw e;
    }
    this.store.markReady(name);
    this.log.info({ volume: name, size_mb: size, owner: ownerUid }, 'volume created');
    return this.view(this.get(name));
  }

  async remove(name: string): Promise<void> {
    this.get(name);
    try {
      this.store.markRemoving(name);
    } catch (e) {
      if (e instanceof VolumeInUseError) throw new ApiError('conflict', e.message);
      throw e;
    }
    await destroyImage(this.stateDir, name);
    this.store.delete(name);
    this.log.info({ volume: name }, 'volume removed');
  }

  /** The host mount a session's plan takes its idmapped copy of, mounted now if it is not (after a reboot). */
  async hostMount(name: string): Promise<string> {
    try {
      await mountImage(this.stateDir, name);
    } catch (e) {
      if (e instanceof VolumeDiskError) throw new ApiError('internal', e.message);
      throw e;
    }
    return mountPath(this.stateDir, name);
  }
}
