// How big a volume's filesystem is, what it uses, and growing it. Used bytes
// come from statfs(2) of the host mount: one syscall per volume, no spawn,
// exact, and what df inside a session shows (the sessions' mounts are
// idmapped copies of the same superblock). The mounts are found with one read
// of /proc/self/mountinfo per listing. Growing is rare and spawns losetup and
// resize2fs once; it is done on the mounted filesystem (online), so sessions
// that mount the volume see the new size at once.
import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, statfsSync } from 'node:fs';
import { imagePath, mountImage, mountPath, tool, VolumeDiskError } from './volumeDisk.js';

const MIB = 1024 * 1024;

/** Mount point -> mount source, from one read of /proc/self/mountinfo. */
export function hostMounts(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // Field 5 is the mount point; after " - " come the type and the source. Our paths need no unescaping.
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (f[4] && dash > 0) out.set(f[4], f[dash + 2] ?? '');
  }
  return out;
}

/** Bytes in use on a mounted volume (df's "Used"); undefined when it is not mounted. */
export function usedBytes(stateDir: string, id: string, mounts: Map<string, string>): number | undefined {
  const mnt = mountPath(stateDir, id);
  if (!mounts.has(mnt)) return undefined;
  const st = statfsSync(mnt, { bigint: true });
  return Number((st.blocks - st.bfree) * st.bsize);
}

/** Blocks of the mounted filesystem as statfs counts them (grows with a resize). */
function statfsBlocks(mnt: string): bigint {
  const st = statfsSync(mnt, { bigint: true });
  return st.blocks * st.bsize;
}

/**
 * The filesystem's own size, from its ext4 superblock (one pread, no spawn):
 * blocks x block size. Undefined when the image is not an ext4 image.
 */
export function filesystemBytes(image: string): number | undefined {
  const fd = openSync(image, 'r');
  try {
    const sb = Buffer.alloc(1024);
    if (readSync(fd, sb, 0, 1024, 1024) < 1024 || sb.readUInt16LE(0x38) !== 0xef53) return undefined;
    const lo = BigInt(sb.readUInt32LE(0x04));
    const is64 = (sb.readUInt32LE(0x60) & 0x80) !== 0;
    const blocks = is64 ? (BigInt(sb.readUInt32LE(0x150)) << 32n) | lo : lo;
    return Number(blocks << BigInt(10 + sb.readUInt32LE(0x18)));
  } finally {
    closeSync(fd);
  }
}

export function imageBytes(stateDir: string, id: string): number {
  const fd = openSync(imagePath(stateDir, id), 'r');
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether a volume's image or filesystem is smaller than its recorded size: a
 * grow that a crash cut short (the size is recorded before the image grows).
 */
export function needsGrow(stateDir: string, id: string, sizeMb: number): boolean {
  const img = imagePath(stateDir, id);
  const want = sizeMb * MIB;
  if (imageBytes(stateDir, id) < want) return true;
  const fs = filesystemBytes(img);
  // A mounted filesystem's superblock on disk may lag a grow by a journal commit: growing again is a no-op then.
  return fs !== undefined && fs < want;
}

/** Whether this daemon may grow a mounted ext4: the kernel asks CAP_SYS_RESOURCE (root has it, unless its container took it away). */
export function canGrowOnline(): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m !== null && ((BigInt(`0x${m[1]}`) >> 24n) & 1n) === 1n;
}

function extend(image: string, sizeMb: number): void {
  const fd = openSync(image, 'r+');
  try {
    if (fstatSync(fd).size < sizeMb * MIB) ftruncateSync(fd, sizeMb * MIB);
  } finally {
    closeSync(fd);
  }
}

/**
 * Grow a volume to sizeMb. Online (a session mounts it): extend the image,
 * tell its loop device (losetup -c), and resize2fs grows the mounted
 * filesystem, which every session's idmapped copy shows at once. Offline
 * (nothing mounts it but the host): unmount, extend, e2fsck -f -p, resize2fs
 * on the image, mount again. Idempotent: a grow cut short is finished by
 * running it again. A longer image than its filesystem costs nothing (it is
 * sparse), so a grow that fails is never cut back: the next one takes it.
 */
export async function growImage(stateDir: string, id: string, sizeMb: number, online: boolean): Promise<void> {
  const img = imagePath(stateDir, id);
  const mnt = mountPath(stateDir, id);
  if (online) {
    await mountImage(stateDir, id);
    const loop = hostMounts().get(mnt);
    if (!loop || !/^\/dev\/loop\d+$/.test(loop)) throw new VolumeDiskError(`grow volume ${id}: its mount has no loop device (${loop ?? 'not mounted'})`);
    extend(img, sizeMb);
    await tool('losetup', ['-c', loop], `grow volume ${id}`);
    await tool('resize2fs', [loop], `grow volume ${id}`);
    return;
  }
  if (hostMounts().has(mnt)) await tool('umount', [mnt], `grow volume ${id}`);
  try {
    extend(img, sizeMb);
    // resize2fs wants a checked filesystem; -p fixes only what is safe (1: it fixed something, fine).
    await tool('e2fsck', ['-f', '-p', img], `check volume ${id} before growing it`, [0, 1]);
    await tool('resize2fs', [img], `grow volume ${id}`);
  } finally {
    await mountImage(stateDir, id);
  }
}

/** The filesystem's size now: statfs of the mount while it is mounted by sessions (online), else its superblock. */
export function fsBytes(stateDir: string, id: string, online: boolean): number | undefined {
  const mnt = mountPath(stateDir, id);
  if (online) return hostMounts().has(mnt) ? Number(statfsBlocks(mnt)) : undefined;
  return filesystemBytes(imagePath(stateDir, id));
}
