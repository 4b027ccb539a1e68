// The daemon's lxcfs: Debian's lxcfs (what LXD and Incus use), a FUSE
// filesystem whose proc/meminfo, proc/cpuinfo, proc/stat, proc/uptime, ...
// answer each reader with the numbers of its own cgroups and PID namespace.
// Sessions get those files bound over their /proc's (plan.ts, LXCFS_FILES).
//
// One instance per daemon, on a private mount point under the state dir
// (0700), started with its own session and process group so that it never
// dies with the daemon: running sessions read through it, so it must
// outlive a daemon restart, and the next daemon adopts it (its pid file,
// command line and mount). If it dies anyway, the daemon starts another for
// new sessions; sessions made before read ENOTCONN from those files until
// they are stopped and started (or re-created): their binds hold the dead
// FUSE connection, and a new lxcfs cannot take it over. `enclave
// daemon --cleanup` stops it once no session is live.
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { addon, type ProcessWatch } from '../native/addon.js';
import { LXCFS_FILES } from './plan.js';

export const LXCFS_BINARY = '/usr/bin/lxcfs';
/** Foreground (its pid is the one we start), load averages and a CPU view from the CFS quota, pidfds for the readers' processes. */
const LXCFS_FLAGS = ['--foreground', '--enable-loadavg', '--enable-cfs', '--enable-pidfd'];
const START_MS = 5000;
/** Never restarted more often than this. */
const RESTART_MS = 1000;

export interface LxcfsPaths {
  dir: string;
  mount: string;
  pidFile: string;
  log: string;
}

export function lxcfsPaths(stateDir: string): LxcfsPaths {
  const dir = join(stateDir, 'lxcfs');
  return { dir, mount: join(dir, 'mnt'), pidFile: join(dir, 'lxcfs.pid'), log: join(dir, 'lxcfs.log') };
}

/** Field 22 of /proc/PID/stat (after the command's closing parenthesis): what pins a PID to one process. */
export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** The lxcfs the pid file names, if it is alive and serves this mount point (a reused PID is not). */
export function findLxcfs(paths: LxcfsPaths): { pid: number; startTime: string } | undefined {
  let pid: number;
  let argv: string[];
  try {
    pid = Number(readFileSync(paths.pidFile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
  const startTime = startTimeOf(pid);
  if (basename(argv[0] ?? '') !== 'lxcfs' || argv[argv.length - 1] !== paths.mount || !startTime) return undefined;
  return { pid, startTime };
}

/** Is an lxcfs mounted there (alive or not)? mountinfo octal-escapes spaces and such. */
export function lxcfsMounted(mount: string): boolean {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => {
      const [left, right] = l.split(' - ');
      return unescape(left?.split(' ')[4] ?? '') === mount && right?.split(' ')[0] === 'fuse.lxcfs';
    });
}

/** Why this mount does not serve sessions, or undefined when every file they get answers. */
export function notServing(mount: string): string | undefined {
  if (!lxcfsMounted(mount)) return `no lxcfs is mounted on ${mount}`;
  for (const f of LXCFS_FILES) {
    try {
      statSync(join(mount, f));
    } catch (e) {
      return `${join(mount, f)}: ${(e as Error).message}`;
    }
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const run = promisify(execFile);

/** Lazily unmount a mount whose lxcfs is gone (reads there fail ENOTCONN until it is). */
export async function unmountStale(mount: string): Promise<void> {
  if (lxcfsMounted(mount)) await run('umount', ['-l', mount], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });
}

type State = { kind: 'idle' } | { kind: 'starting'; done: Promise<void> } | { kind: 'serving'; pid: number; watch: ProcessWatch } | { kind: 'down'; why: string };

/** The daemon's side: adopt or start lxcfs, watch it, start it again if it dies; creates ask ready(). */
export class Lxcfs {
  private state: State = { kind: 'idle' };
  private closed = false;
  private lastStart = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly paths: LxcfsPaths,
    private readonly log: Logger,
    private readonly binary = LXCFS_BINARY,
  ) {}

  /** Adopt the instance a previous daemon started, or start one. Never throws: ready() says why not. */
  start(): Promise<void> {
    if (this.state.kind === 'starting') return this.state.done;
    if (this.state.kind === 'serving' || this.closed) return Promise.resolve();
    const done = this.bringUp().then(
      (s) => void (this.state = s),
      (e: Error) => {
        this.state = { kind: 'down', why: e.message };
        this.log.error({ err: e.message }, 'lxcfs is not serving: sessions made meanwhile read the kernel\'s /proc files (sessions.lxcfs = "required": they are refused); each create and start tries again');
      },
    );
    this.state = { kind: 'starting', done };
    return done;
  }

  /** The mount point once lxcfs serves it (starting it if it is not running); throws with the reason otherwise. */
  async ready(): Promise<string> {
    if (this.state.kind !== 'serving') await this.start();
    const s = this.state as State;
    if (s.kind === 'serving') return this.paths.mount;
    throw new Error(s.kind === 'down' ? s.why : 'lxcfs is not running');
  }

  /** Stop watching (daemon shutdown): lxcfs keeps serving the sessions. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.state.kind === 'serving') this.state.watch.close();
  }

  private async bringUp(): Promise<State> {
    const found = findLxcfs(this.paths);
    if (found && !notServing(this.paths.mount)) {
      this.log.info({ pid: found.pid, mount: this.paths.mount }, 'adopted the running lxcfs');
      return this.watch(found.pid, found.startTime);
    }
    if (found) await stopProcess(found.pid); // alive, but not serving its mount
    await unmountStale(this.paths.mount);
    mkdirSync(this.paths.mount, { recursive: true, mode: 0o700 });
    this.lastStart = Date.now();
    const log = openSync(this.paths.log, 'w');
    // Its own session: terminal signals and the daemon's end never reach it.
    const child = spawn(this.binary, [...LXCFS_FLAGS, '--pidfile', this.paths.pidFile, this.paths.mount], { detached: true, stdio: ['ignore', log, log], env: {} });
    closeSync(log);
    child.unref();
    let failed: string | undefined;
    child.once('error', (e) => (failed = `cannot run ${this.binary}: ${e.message} (install the Debian package lxcfs, or set sessions.lxcfs = "off")`));
    child.once('exit', (code, signal) => (failed ??= `lxcfs exited (${signal ?? `code ${code}`}) while starting: ${this.logTail()}`));
    const deadline = Date.now() + START_MS;
    let why: string | undefined;
    while ((why = notServing(this.paths.mount)) !== undefined && !failed && Date.now() < deadline) await sleep(10);
    const startTime = child.pid === undefined ? undefined : startTimeOf(child.pid);
    if (failed || why !== undefined || !startTime) {
      if (child.pid !== undefined && !failed) await stopProcess(child.pid);
      await unmountStale(this.paths.mount).catch(() => undefined);
      throw new Error(failed ?? why ?? 'lxcfs went away as it started');
    }
    try {
      // As Debian's unit does: the OOM killer takes anything before it, since every session reads through it.
      writeFileSync(`/proc/${child.pid}/oom_score_adj`, '-1000');
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'cannot exempt lxcfs from the OOM killer');
    }
    this.log.info({ pid: child.pid, mount: this.paths.mount, ms: Date.now() - this.lastStart }, 'started lxcfs');
    return this.watch(child.pid!, startTime);
  }

  private watch(pid: number, startTime: string): State {
    const watch = new (addon().ProcessWatch)(pid, startTime, (status) => {
      if (this.closed) return;
      const why = `lxcfs (pid ${pid}) exited${status ? ` (${status.signal ? `signal ${status.signal}` : `code ${status.code}`})` : ''}`;
      this.log.error({ pid, status }, `${why}: sessions created since it started read ENOTCONN from their /proc views until stopped and started; starting another for new sessions`);
      this.state = { kind: 'down', why };
      this.timer = setTimeout(() => void this.start(), Math.max(0, this.lastStart + RESTART_MS - Date.now()));
    });
    return { kind: 'serving', pid, watch };
  }

  private logTail(): string {
    try {
      return readFileSync(this.paths.log, 'utf8').trim().split('\n').slice(-3).join(' | ');
    } catch {
      return '(no log)';
    }
  }
}

/** SIGTERM (lxcfs unmounts itself), then SIGKILL after 2 s. */
async function stopProcess(pid: number): Promise<void> {
  const alive = () => {
    try {
      return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); // a zombie is gone
    } catch {
      return false;
    }
  };
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(pid, s);
    } catch {
      /* gone */
    }
  };
  signal('SIGTERM');
  for (let i = 0; i < 200 && alive(); i++) await sleep(10);
  if (alive()) signal('SIGKILL');
}

/** `daemon --cleanup` (no session is live): stop the daemon's lxcfs and remove its mount point. What was done, for the log. */
export async function removeLxcfs(paths: LxcfsPaths): Promise<string[]> {
  const done: string[] = [];
  const found = findLxcfs(paths);
  if (found) {
    await stopProcess(found.pid);
    done.push(`stopped lxcfs (pid ${found.pid})`);
  }
  if (lxcfsMounted(paths.mount)) {
    await unmountStale(paths.mount);
    done.push(`unmounted ${paths.mount}`);
  }
  if (existsSync(paths.dir)) {
    rmSync(paths.dir, { recursive: true, force: true });
    done.push(`removed ${paths.dir}`);
  }
  return done;
}
