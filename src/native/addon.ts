// Typed loader for the native addon and the paths of the helper executables.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
  /** Supplementary groups (filled in by the daemon from SO_PEERGROUPS). */
  groups?: number[];
}

export interface ExitStatus {
  code: number | null;
  signal: number | null;
}

export interface ProcessWatch {
  /** Signal the pinned process via its pidfd; false if it is already gone. */
  kill(signal: number): boolean;
  /** Stop watching without waiting for the exit. */
  close(): void;
}

export interface ControlChannel {
  /** Whole message or an exception (EAGAIN: the session stopped reading). */
  send(fields: (string | Buffer)[], fds: number[]): void;
  close(): void;
}

/** A helper started by spawnHelper: watch its pid, own its pipes' parent ends. */
export interface HelperProcess {
  pid: number;
  startTime: string;
  stdin: number;
  stdout: number;
  stderr: number;
}

export interface OomWatch {
  close(): void;
}

/**
 * The addon's exports, by name, grouped by the native/src/addon/ file whose
 * export table registers them. The Addon type is built from this list (a
 * name without a signature below, or a signature without a name here, does
 * not compile), and test/unit/native.test.ts checks it against what the
 * built addon exports, both ways.
 */
export const addonExports = [
  // credentials.cc
  'peerCred',
  'peerGroups',
  // pidfd.cc
  'ProcessWatch',
  'setChildSubreaper',
  'reapChild',
  'setHostname',
  // oom.cc
  'OomWatch',
  // control.cc
  'ControlChannel',
  // fds.cc
  'pipe',
  'closeFd',
  'isPtyMaster',
  'setWinsize',
  // locks.cc
  'lockFile',
  'unlockFile',
  // notify.cc
  'notify',
  // overlay.cc
  'isOpaqueDir',
  // netlink.cc
  'ensureBridge',
  'deleteLink',
  'link',
  'links',
  // nft.cc
  'nftApply',
  // ports.cc
  'holdPort',
  // spawn.cc
  'spawnHelper',
  // ring.cc
  'ringCreate',
  'ringMap',
] as const;

/** A link as rtnetlink reports it (counters null when the kernel gave none). */
export interface NetLink {
  name: string;
  index: number;
  mtu: number;
  /** ifindex of the bridge it is a port of; 0: none. */
  master: number;
  rxBytes: number | null;
  txBytes: number | null;
}

export type AddonExport = (typeof addonExports)[number];

/** What each export is. */
interface Signatures {
  peerCred(fd: number): PeerCred;
  /** Supplementary groups of the peer at connect time (SO_PEERGROUPS). */
  peerGroups(fd: number): number[];
  ProcessWatch: new (pid: number, startTime: string, onExit: (status: ExitStatus | null) => void) => ProcessWatch;
  setChildSubreaper(): void;
  reapChild(pid: number): boolean;
  /** sethostname in the UTS namespace of the process pinned by pid and start time (its own thread joins it). */
  setHostname(pid: number, startTime: string, name: string): void;
  OomWatch: new (memoryCgroupDir: string, onEvent: () => void) => OomWatch;
  /** The daemon's end of a session init's control socket (native/src/agent.h). */
  ControlChannel: new (path: string, onMessage: (fields: string[], fd: number | null) => void, onClose: (reason: string) => void) => ControlChannel;
  /** [read end, write end], both close-on-exec. */
  pipe(): [number, number];
  closeFd(fd: number): void;
  /** Is this fd a pty master (ptmx with a pty number)? */
  isPtyMaster(fd: number): boolean;
  setWinsize(fd: number, cols: number, rows: number): void;
  /** An exclusive flock on path, with content written into the file: its fd, or -1 if another process holds it. */
  lockFile(path: string, content: string): number;
  /** Unlink a held lock file, then let go of the lock. */
  unlockFile(path: string, fd: number): void;
  /** One datagram to a service manager's notification socket ("@name": abstract). */
  notify(socketPath: string, message: string): void;
  /** An overlay upper directory marked opaque (user.overlay.opaque = y). */
  isOpaqueDir(path: string): boolean;
  /** Create or adopt a bridge with this gateway address; IPv6 off; up. */
  ensureBridge(name: string, gateway: string, prefix: number): void;
  /** Delete a link; false when there was none. */
  deleteLink(name: string): boolean;
  /** A link of the daemon's netns, read through rtnetlink; null when there is none. */
  link(name: string): NetLink | null;
  /** Every link of the daemon's netns. */
  links(): NetLink[];
  /** Apply an nftables script atomically through libnftables, off the event loop; rejects with nft's message. */
  nftApply(script: string): Promise<void>;
  /** A TCP socket bound to ip:port, not listening, close-on-exec: its fd (closeFd lets go). Throws with .errno (EADDRINUSE: taken). */
  holdPort(ip: string, port: number): number;
  /** posix_spawn (on the thread pool) of a helper in a new session, no env, with pipes (parent ends, close-on-exec): watch pid, own the fds. */
  spawnHelper(path: string): Promise<HelperProcess>;
  /** A console's output ring: a memfd (close-on-exec) of RING_HEADER + capacity bytes, mapped shared, header written. */
  ringCreate(capacity: number): { fd: number; buffer: Buffer };
  /** Map a ring a session's init kept (its size and header checked); the fd stays the caller's. */
  ringMap(fd: number): Buffer;
}

// Names and signatures match one for one, or these fail to compile, naming
// the odd one out.
type NoneLeftOut<T extends never> = T;
type ExportsWithoutSignature = NoneLeftOut<Exclude<AddonExport, keyof Signatures>>;
type SignaturesWithoutExport = NoneLeftOut<Exclude<keyof Signatures, AddonExport>>;

/** The loaded addon: exactly the names in addonExports. */
export type Addon = Pick<Signatures, AddonExport & keyof Signatures>;

function findRepoRoot(): string {
  // Works from src/native (vitest) and from dist/src/native (compiled).
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'native', 'binding.gyp'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new Error('cannot locate the Enclave installation (native/binding.gyp not found above ' + import.meta.url + ')');
}

export const repoRoot = findRepoRoot();
export const nativeBuildDir = join(repoRoot, 'native', 'build', 'Release');

export const helperPaths = {
  init: join(nativeBuildDir, 'enclave-init'),
} as const;

let loaded: Addon | undefined;

export function addon(): Addon {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    const path = join(nativeBuildDir, 'enclave_addon.node');
    if (!existsSync(path)) throw new Error(`native addon missing at ${path}: run "npm ci" (it builds native/)`);
    loaded = require(path) as Addon;
  }
  return loaded;
}
