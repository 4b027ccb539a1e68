// Who is calling: SO_PEERCRED of the Unix socket connection, via the addon.
import type { Socket } from 'node:net';
import { addon, type PeerCred } from '../native/addon.js';
import { ApiError } from '../vocab/errors.js';

const cache = new WeakMap<Socket, PeerCred>();

function socketFd(socket: Socket): number {
  // libuv keeps the fd on the handle; it is the only way to reach it.
  const handle = (socket as unknown as { _handle?: { fd?: unknown } })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new ApiError('forbidden', 'cannot identify the caller (no socket fd)');
  return fd;
}

export function callerOf(socket: Socket): PeerCred {
  let cred = cache.get(socket);
  if (!cred) {
    const fd = socketFd(socket);
    cred = { ...addon().peerCred(fd), groups: addon().peerGroups(fd) };
    cache.set(socket, cred);
  }
  return cred;
}

/** Root, or a member of the configured socket group. */
export function authorize(cred: PeerCred, socketGid: number): void {
  if (cred.uid === 0) return;
  // Primary or supplementary membership: `usermod -aG` is how people join a group.
  if (socketGid !== 0 && (cred.gid === socketGid || (cred.groups ?? []).includes(socketGid))) return;
  throw new ApiError('forbidden', `uid ${cred.uid} may not use the Enclave API`);
}
