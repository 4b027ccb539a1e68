// A volume on the host: a sparse ext4 image, loop-mounted nosuid,nodev,noexec
// under a root-only directory. Sessions never see this mount: the helper
// takes an idmapped copy of it (native/src/init.c, op volume). The image's
// size is the quota; its root is owned by 0:0, which every session sees as
// its own root. Not a hot path: mkfs and mount are spawned, once per volume.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, openSync, closeSync, ftruncateSync, readFileSync, rmSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const MIB = 1024 * 1024;

export class VolumeDiskError extends Error {}

export function volumesDir(stateDir: string): string {
  return join(stateDir, 'volumes');
}

export const imagePath = (stateDir: string, name: string) => join(volumesDir(stateDir), 'images', `${name}.ext4`);
export const mountPath = (stateDir: string, name: string) => join(volumesDir(stateDir), 'mnt', name);

/** The root-only directories: nothing of a volume is reachable on the host by anyone but root. */
export function prepareVolumesDir(stateDir: string): void {
  for (const d of [volumesDir(stateDir), join(volumesDir(stateDir), 'images'), join(volumesDir(stateDir), 'mnt')]) {
    mkdirSync(d, { recursive: true, mode: 0o700 });
    chmodSync(d, 0o700);
  }
}

/** Run a host tool; `ok`: the exit codes that are success. */
export async function tool(cmd: string, args: string[], what: string, ok: number[] = [0]): Promise<void> {
  try {
    await run(cmd, args, { timeout: 120_000 });
  } catch (e) {
    const err = e as { stderr?: string; code?: string | number; message: string };
    if (typeof err.code === 'number' && ok.includes(err.code)) return;
    const why = err.code === 'ENOENT' ? `${cmd} is not installed` : (err.stderr || err.message).trim().split('\n').slice(-2).join(' ');
    throw new VolumeDiskError(`${what}: ${why}`);
  }
}

/** A new image (exclusive create: never over an existing file), formatted ext4 with no root-reserved blocks. */
export async function createImage(stateDir: string, name: string, sizeMb: number): Promise<void> {
  const img = imagePath(stateDir, name);
  const fd = openSync(img, 'wx', 0o600);
  try {
    ftruncateSync(fd, sizeMb * MIB);
  } finally {
    closeSync(fd);
  }
  // -m 0: the session's root is not the filesystem's root, so reserved blocks would be lost to it.
  await tool('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'root_owner=0:0', '-L', name.slice(0, 16), img], `format volume ${name}`);
}

export function isMounted(path: string): boolean {
  // mountinfo field 5 is the mount point, with spaces etc. octal-escaped; our paths have none.
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === path);
}

/** Loop-mount the image if it is not mounted (after a reboot, or the first use). */
export async function mountImage(stateDir: string, name: string): Promise<void> {
  const mnt = mountPath(stateDir, name);
  if (isMounted(mnt)) return;
  mkdirSync(mnt, { recursive: true, mode: 0o700 });
  await tool('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noexec', imagePath(stateDir, name), mnt], `mount volume ${name}`);
}

/** Unmount (the loop device goes with the last mount: mount -o loop sets autoclear) and delete the image. */
export async function destroyImage(stateDir: string, name: string): Promise<void> {
  const mnt = mountPath(stateDir, name);
  if (isMounted(mnt)) await tool('umount', [mnt], `unmount volume ${name}`);
  rmSync(imagePath(stateDir, name), { force: true });
  try {
    rmdirSync(mnt);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}
