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
import { volumeRoom } from '../isolation/capacity.js';
import { VolumeBusyError, VolumeExistsError, VolumeInUseError, type VolumeRow, type VolumeStore, type VolumeUse } from '../store/volumeStore.js';
import { createImage, destroyImage, imagePath, mountImage, mountPath, prepareVolumesDir, volumesDir, VolumeDiskError } from './volumeDisk.js';
import { canGrowOnline, fsBytes, growImage, hostMounts, needsGrow, usedBytes } from './volumeSize.js';

const MIB = 1024 * 1024;

/** Sessions for a message: those the reader may see by name, the others counted. */
function sessionsText(users: VolumeUse[], seen: (u: VolumeUse) => boolean): string {
  const named = users.filter(seen).map((u) => u.session_name ?? u.session_id);
  const others = users.length - named.length;
  return [...named, ...(others ? [`${others} session${others > 1 ? 's' : ''} of another user`] : [])].join(', ');
}

/** A user with processes: a stopped session has no mount of it until it starts (and its start asks mountRefusal). */
const active = (u: VolumeUse) => u.session_state !== 'stopped';

/** Work on a volume that excludes other work on it: at most one at a time. */
type Busy = 'resizing' | 'resizing-offline' | 'reading';

export class Volumes {
  private readonly busy = new Map<string, Busy>();

  constructor(
    private readonly store: VolumeStore,
    private readonly stateDir: string,
    private readonly config: { default_size_mb: number; reserve_mb: number },
    private readonly log: Logger,
  ) {}

  /**
   * At daemon start: root-only directories, the end of any create or remove
   * a crash cut short, every ready volume mounted on the host (after a
   * reboot: so its used bytes are known), and any grow a crash cut short
   * finished. A volume that cannot be mounted is logged, not fatal.
   */
  async recover(): Promise<void> {
    prepareVolumesDir(this.stateDir);
    for (const v of this.store.list()) {
      if (v.state === 'ready') {
        await this.ready(v).catch((e: Error) => this.log.error({ volume: v.id, err: e.message }, 'cannot mount a volume on the host'));
        continue;
      }
      // A half-made volume never held data; a 'removing' one was already refused to new sessions.
      this.log.warn({ volume: v.id, state: v.state }, 'finishing an interrupted volume operation');
      await destroyImage(this.stateDir, v.id);
      this.store.delete(v.id);
    }
  }

  private async ready(v: VolumeRow): Promise<void> {
    if (needsGrow(this.stateDir, v.id, v.size_mb)) {
      const online = this.store.usersOf(v.id).some(active);
      if (online && !canGrowOnline()) this.log.error({ volume: v.id, size_mb: v.size_mb }, 'a volume grow a crash cut short cannot be finished while sessions mount it (no CAP_SYS_RESOURCE): resize it again once they are gone');
      else {
        this.log.warn({ volume: v.id, size_mb: v.size_mb }, 'finishing a volume grow a crash cut short');
        await growImage(this.stateDir, v.id, v.size_mb, online);
      }
    }
    await mountImage(this.stateDir, v.id);
  }

  get(id: string): VolumeRow | undefined {
    return this.store.get(id);
  }

  byName(owner: number, name: string): VolumeRow | undefined {
    return this.store.byName(owner, name);
  }

  /** `seen`: which mounting sessions the reader may be told of (the others are left out); `mounts`: the host's, read once per listing. */
  view(v: VolumeRow, seen: (u: VolumeUse) => boolean = () => true, mounts = hostMounts()): Volume {
    return {
      name: v.name,
      id: v.id,
      size_mb: v.size_mb,
      owner_uid: v.owner_uid,
      created_at: v.created_at,
      used_bytes: usedBytes(this.stateDir, v.id, mounts) ?? null,
      used_by: this.store.usersOf(v.id).filter(seen).map((u) => ({ id: u.session_id, name: u.session_name, target: u.target, readonly: u.readonly })),
    };
  }

  /** The volumes a drain's move of this session made here (until this node sees the move over: clearMovedFor). */
  movedFor(sessionId: string): string[] {
    return this.store.movedFor(sessionId);
  }

  clearMovedFor(sessionId: string): void {
    this.store.clearMovedFor(sessionId);
  }

  /** How many live sessions (stopped ones too) mount it, but `except`. */
  mountedBy(id: string, except?: string): number {
    return this.mountersBesides(id, except).length;
  }

  /** The live sessions other than `except` that mount it, with their states. */
  mountersBesides(id: string, except?: string): Array<{ id: string; state: string }> {
    return this.store
      .usersOf(id)
      .filter((u) => u.session_id !== except)
      .map((u) => ({ id: u.session_id, state: u.session_state }));
  }

  /** The ready volumes made here for drains' moves that this node has not yet seen over. */
  madeForMoves(): VolumeRow[] {
    return this.store.madeForMoves();
  }

  list(): VolumeRow[] {
    return this.store.list().filter((v) => v.state === 'ready');
  }

  /** Views of many volumes, with one read of the host's mounts. */
  views(vs: VolumeRow[], seen: (u: VolumeUse) => boolean = () => true): Volume[] {
    const mounts = hostMounts();
    return vs.map((v) => this.view(v, seen, mounts));
  }

  /**
   * The volume's whole size (or a grow's MiB) must fit on the disk with
   * volumes.reserve_mb to spare, beside what every existing volume may still
   * grow by: images are sparse, so free space alone overstates what is left.
   */
  assertRoom(sizeMb: number, what = `a volume of ${sizeMb} MiB`): void {
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
    if (!volumeRoom({ freeMb, promisedMb, reserveMb: this.config.reserve_mb }, sizeMb)) {
      throw new ApiError(
        'insufficient_storage',
        `not enough disk for ${what}: ${volumesDir(this.stateDir)} has ${freeMb} MiB free, existing volumes may still grow by ${promisedMb} MiB, and ${this.config.reserve_mb} MiB must stay free (volumes.reserve_mb)`,
        'size_mb',
      );
    }
  }

  /** A copy of the volume's files (a drain's move writes one) must fit as a new volume would: beside the reserve and what volumes may still grow by. */
  assertCopyFits(v: VolumeRow): void {
    const usedMb = Math.ceil((usedBytes(this.stateDir, v.id, hostMounts()) ?? v.size_mb * MIB) / MIB);
    this.assertRoom(usedMb, `a copy of volume ${v.name}'s ${usedMb} MiB of files`);
  }

  /**
   * `admit` sees the MiB the owner's volumes hold, in the transaction that
   * records the new one. `moved`: a drain's move makes the volume it brings
   * under the id it had on its node, marked as made for that session
   * (src/daemon/moveKitHere.ts).
   */
  async create(name: string, sizeMb: number | undefined, ownerUid: number, admit?: (usedMb: number, sizeMb: number) => void, moved?: { id: string; session: string }): Promise<Volume> {
    const size = sizeMb ?? this.config.default_size_mb;
    const id = moved?.id ?? `v-${randomBytes(5).toString('hex')}`;
    try {
      this.store.insertCreating(
        id,
        name,
        size,
        ownerUid,
        (used) => {
          admit?.(used, size);
          this.assertRoom(size);
        },
        moved?.session ?? null,
      );
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
    this.idle(v);
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

  /** Refuse work on a volume while other work on it runs. */
  private idle(v: VolumeRow): void {
    const b = this.busy.get(v.id);
    if (b) throw new ApiError('conflict', `volume ${v.name} is being ${b === 'reading' ? 'read (an export, or a snapshot with volumes)' : 'resized'}: try again when that is done`);
  }

  /**
   * Why `session` may not mount this volume now (in the transaction that
   * records the mount), or undefined. `joins`: the session of the same move
   * whose kit made it here (a drain moving sessions that share it together).
   */
  mountRefusal(id: string, name: string, readonly: boolean, session: string, joins?: string): string | undefined {
    // Made here for a drain's move: the moving session's alone (and those moved with it) until this node sees the move over (it may yet be undone).
    const movedFor = this.store.get(id)?.moved_for;
    if (movedFor && movedFor !== session && movedFor !== joins) return `volume ${name} is being moved here with session ${movedFor}: it can be mounted once that move is done`;
    const b = this.busy.get(id);
    if (b === 'resizing-offline') return `volume ${name} is being resized (unmounted): try again when that is done`;
    if (!readonly && b === 'reading') return `volume ${name} is being read (an export, or a snapshot with volumes): try again when that is done, or mount it read-only`;
    return undefined;
  }

  /**
   * Grow a volume to sizeMb: online while live sessions mount it (they see
   * the new size at once; the kernel asks CAP_SYS_RESOURCE, else it is
   * refused with that reason), offline otherwise, with new mounts refused
   * meanwhile. The new size is recorded first, with `admit` (the owner's
   * budget: the MiB its volumes hold now) and the disk's reserve for the MiB
   * it grows by in the same transaction; a grow that fails before the
   * filesystem changed is undone.
   */
  async resize(v: VolumeRow, sizeMb: number, admit?: (usedMb: number) => void, seen: (u: VolumeUse) => boolean = () => true): Promise<Volume> {
    if (sizeMb < v.size_mb) {
      throw new ApiError(
        'invalid_request',
        `volume ${v.name} is ${v.size_mb} MiB and volumes only grow: ext4 cannot shrink a mounted filesystem, and cutting an image could lose files. To make it smaller: enclave volume export, create a smaller one, enclave volume import`,
        'size_mb',
      );
    }
    if (sizeMb === v.size_mb) return this.view(v);
    this.idle(v);
    // Sessions that are stopped do not make it online: none of theirs mounts it now, and a start waits (mountRefusal).
    const users = this.store.usersOf(v.id).filter(active);
    const online = users.length > 0;
    this.assertRoom(sizeMb - v.size_mb, `volume ${v.name} to grow by ${sizeMb - v.size_mb} MiB`); // again with the budget, in the transaction below
    if (online && !canGrowOnline()) {
      throw new ApiError(
        'conflict',
        `volume ${v.name} is mounted by ${sessionsText(users, seen)}, and growing a mounted filesystem needs CAP_SYS_RESOURCE, which this daemon does not have: destroy those sessions, then resize (an unmounted volume grows offline)`,
      );
    }
    this.busy.set(v.id, online ? 'resizing' : 'resizing-offline');
    try {
      const more = sizeMb - v.size_mb;
      try {
        this.store.recordSize(v.id, v.size_mb, sizeMb, v.owner_uid, (used) => {
          admit?.(used);
          this.assertRoom(more, `volume ${v.name} to grow by ${more} MiB`);
        });
      } catch (e) {
        if (e instanceof VolumeBusyError) throw new ApiError('conflict', e.message);
        throw e;
      }
      const before = fsBytes(this.stateDir, v.id, online);
      try {
        await growImage(this.stateDir, v.id, sizeMb, online);
      } catch (e) {
        const after = fsBytes(this.stateDir, v.id, online);
        if (before !== undefined && after === before) this.store.setSize(v.id, v.size_mb);
        const undone = before !== undefined && after === before ? 'it keeps its size' : `its size is recorded as ${sizeMb} MiB: resize it again to finish`;
        this.log.error({ volume: v.id, err: (e as Error).message }, 'volume grow failed');
        throw new ApiError('internal', `${e instanceof VolumeDiskError ? e.message : (e as Error).message} (${undone})`);
      }
      this.log.info({ volume: v.id, name: v.name, from_mb: v.size_mb, size_mb: sizeMb, online }, 'volume grown');
      return this.view(this.store.get(v.id)!);
    } finally {
      this.busy.delete(v.id);
    }
  }

  /**
   * Hold the volume for reading its tree (an export, a snapshot with
   * volumes): no live session may mount it read-write meanwhile, but
   * `frozen`, the session a snapshot freezes. Returns the host mount and the
   * release.
   */
  async holdForReading(v: VolumeRow, seen: (u: VolumeUse) => boolean = () => true, frozen?: string): Promise<{ path: string; release: () => void }> {
    if (v.state !== 'ready') throw new ApiError('conflict', `volume ${v.name} is ${v.state}`);
    this.idle(v);
    const writers = this.store.usersOf(v.id).filter((u) => active(u) && !u.readonly && u.session_id !== frozen);
    if (writers.length > 0) {
      const by = sessionsText(writers, seen);
      const hint = frozen ? 'snapshot it without --with-volumes, or destroy those sessions' : 'destroy it, or take `enclave session snapshot --with-volumes` of it, which freezes its session';
      throw new ApiError('conflict', `volume ${v.name} is mounted read-write by ${by}: reading it needs no other writer (${hint})`);
    }
    this.busy.set(v.id, 'reading');
    try {
      return { path: await this.hostMount(v.id), release: () => this.busy.delete(v.id) };
    } catch (e) {
      this.busy.delete(v.id);
      throw e;
    }
  }

  /** hostMount for a session's plan (a create or a start): refused (409) while work on the volume excludes that mount. */
  async mountFor(id: string, readonly: boolean, session: string, joins?: string): Promise<string> {
    const why = this.mountRefusal(id, this.store.get(id)?.name ?? id, readonly, session, joins);
    if (why) throw new ApiError('conflict', why);
    return this.hostMount(id);
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
