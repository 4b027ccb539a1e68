// Root integration harness: a real daemon on a private state dir, socket,
// cgroup parent and host ID range per run, so runs never collide, and a sweep
// of whatever an earlier (killed) run left behind.
import { execFileSync, spawn, spawnSync, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { spawn as spawnPty, type IPty } from 'node-pty';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { call, type Reply } from '../../src/cli/client.js';
import { addon, repoRoot } from '../../src/native/addon.js';
import { detectCgroupLayout, killCgroup, removeCgroup, versionOf } from '../../src/isolation/cgroups.js';
import { sessionSchema, type Session } from '../../src/api/schemas.js';
import { lockHeld } from '../../src/daemon/locks.js';
import { inNetns } from '../../stress/nodeNet.js';

export const isRoot = process.getuid?.() === 0;
import { RUNS_DIR } from './runsDir.js';
import { BASE_CACHE, baseCache, keepBaseLayers, seedBaseLayers } from './baseSeed.js';

export { RUNS_DIR };
/** Shared by every test daemon, so overlapping ones see each other's locks. */
export const LOCKS_DIR = join(RUNS_DIR, 'locks');
/** The shipped CLI: the bundle (npm run bundle), what `enclave` runs. */
export const CLI = join(repoRoot, 'dist', 'bundle', 'main.js');
/** The native front end (native/src/front.c), which the `enclave` bin is: it answers the hot commands and hands the rest to CLI. */
export const FRONT = join(repoRoot, 'native', 'build', 'Release', 'enclave-front');
/** ENCLAVE_TEST_CLI=front: the tests run `enclave` through the front end (the integration-front project does), else the Node CLI. */
export const VIA_FRONT = process.env.ENCLAVE_TEST_CLI === 'front';
/** The program and argv that run `enclave ARGS...` for the tests. */
export function enclaveCommand(args: readonly string[]): [string, string[]] {
  return VIA_FRONT ? [FRONT, [...args]] : [process.execPath, [CLI, ...args]];
}
/**
 * What TestDaemon.sh runs: the front end, as the installed `enclave` does,
 * unless ENCLAVE_TEST_CLI=node. sh is how the files run commands in their
 * sessions (hundreds of times a run): the front answers a plain exec itself,
 * in about 0.1 s against a Node start's 0.5-2 s on a busy 2-core machine.
 * The Node CLI's exec is tested where it is the subject, through cli():
 * exec.test.ts and cliHabits.test.ts in the integration project.
 */
export const SH_VIA_NODE = process.env.ENCLAVE_TEST_CLI === 'node';
const CGROUP_ROOT = '/sys/fs/cgroup';

if (!isRoot) {
  // CI must prove the isolation claims: there, not being root is a failure.
  if (process.env.CI) throw new Error('CI runs the root integration suite: run it as root');
  // Elsewhere loud, not silent.
  console.warn('\n*** NOT ROOT: the root integration suite is SKIPPED. Run it as root (CI does). ***\n');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function cgroupHierarchies(): string[] {
  if (!existsSync(CGROUP_ROOT)) return [];
  return readdirSync(CGROUP_ROOT, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => join(CGROUP_ROOT, d.name));
}

const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Kill every process under a cgroup directory and remove it, depth first. */
function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroupTree(join(dir, e.name));
  const version = versionOf(detectCgroupLayout(CGROUP_ROOT), dir);
  for (let i = 0; i < 500; i++) {
    killCgroup(dir, version);
    if (removeCgroup(dir)) return;
    pause(10);
  }
  throw new Error(`cannot remove cgroup ${dir}`);
}

function nft(script: string): void {
  spawnSync('nft', ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'ignore'] });
}

/** lxcfs processes serving a mount point at or below dir (a daemon's, under its state dir). */
export function lxcfsUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const mount = argv[argv.length - 1] ?? '';
      if (/(^|\/)lxcfs$/.test(argv[0] ?? '') && mount.startsWith(`${dir}/`)) pids.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return pids;
}

/** SIGKILL the lxcfs processes under dir and reap those re-parented to us; their mounts are left to the umount sweep. */
export function killLxcfsUnder(dir: string): void {
  for (const pid of lxcfsUnder(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    for (let i = 0; i < 100 && existsSync(`/proc/${pid}`) && !addon().reapChild(pid); i++) pause(5);
  }
}

/**
 * A TCP port on 127.0.0.1 for a test's listener: below the kernel's ephemeral
 * range (32768+, where any outgoing connection may hold it: a fresh-clone run
 * lost the listener test to EADDRINUSE there), per process and salt, and with
 * no socket on it now.
 */
export function listenPort(salt: number): number {
  return listenPorts(salt, 1);
}

/** `n` consecutive TCP ports as listenPort() gives one (each with no socket on it now): the first. */
export function listenPorts(salt: number, n: number): number {
  for (let i = 0; i < 200; i++) {
    const first = 22000 + ((process.pid * 7 + salt + i * 13) % (10000 - n));
    const r = spawnSync('ss', ['-Htan', `( sport >= :${first} and sport <= :${first + n - 1} )`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim() === '') return first;
  }
  throw new Error(`no ${n} free TCP ports in a row in 22000-31999 for a test's listeners`);
}

/** Remove leftovers of earlier runs whose test process is gone. */
export function sweepEarlierRuns(): void {
  const runOwner = (runId: string) => Number(runId.split('x')[0]);
  // Network objects carry the run's tag (the hex part of the run id).
  const liveTags = new Set(
    (existsSync(RUNS_DIR) ? readdirSync(RUNS_DIR) : []).filter((e) => /^\d+x[0-9a-f]+$/.test(e) && alive(runOwner(e))).map((e) => e.split('x')[1]!),
  );
  for (const link of existsSync('/sys/class/net') ? readdirSync('/sys/class/net') : []) {
    const m = /^(?:et|eoh|eqp?)([0-9a-f]{6})$/.exec(link);
    if (m && !liveTags.has(m[1]!)) spawnSync('ip', ['link', 'del', link], { stdio: 'ignore' });
  }
  const tables = spawnSync('nft', ['list', 'tables'], { encoding: 'utf8' }).stdout ?? '';
  for (const m of tables.matchAll(/^table inet (enclave_t_([0-9a-f]{6}))$/gm)) if (!liveTags.has(m[2]!)) nft(`delete table inet ${m[1]}\n`);
  const netns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const m of netns.matchAll(/^(eo-([0-9a-f]{6}))\b/gm)) if (!liveTags.has(m[2]!)) spawnSync('ip', ['netns', 'del', m[1]!], { stdio: 'ignore' });
  for (const h of cgroupHierarchies()) {
    for (const e of readdirSync(h, { withFileTypes: true })) {
      const m = /^enclave-test-(\d+x[0-9a-f]+)$/.exec(e.name);
      if (m && e.isDirectory() && !alive(runOwner(m[1]!))) removeCgroupTree(join(h, e.name));
    }
  }
  if (!existsSync(RUNS_DIR)) return;
  sweepStaleLocks();
  for (const e of readdirSync(RUNS_DIR)) {
    // A killed vitest run's cache of base layers (baseSeed.ts).
    const cache = BASE_CACHE.exec(e);
    if (cache && !alive(Number(cache[1]))) rmSync(join(RUNS_DIR, e), { recursive: true, force: true });
    if (!/^\d+x[0-9a-f]+$/.test(e) || alive(runOwner(e))) continue;
    // Its daemon first, and gone: a live one restarts the lxcfs killed below and mounts it again.
    const pidFile = join(RUNS_DIR, e, 'daemon.pid');
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8'));
      if (pid > 0 && alive(pid)) process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 200 && pid > 0 && alive(pid); i++) spawnSync('sleep', ['0.01']);
    }
    // The daemon's lxcfs outlives its daemon by design: a killed run leaves it serving its state dir.
    killLxcfsUnder(join(RUNS_DIR, e));
    // A test that mounted something in its run dir (a small tmpfs as a full disk, lxcfs) and was killed.
    for (const m of mountsUnder(join(RUNS_DIR, e)).reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    rmSync(join(RUNS_DIR, e), { recursive: true, force: true });
  }
}

/** Mount points at or below dir, outermost first. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** Lock files nobody holds (their daemon was killed): removed, and the directory if it is empty. */
function sweepStaleLocks(): void {
  if (!existsSync(LOCKS_DIR)) return;
  for (const f of readdirSync(LOCKS_DIR)) lockHeld(join(LOCKS_DIR, f));
  try {
    rmdirSync(LOCKS_DIR);
  } catch {
    /* a live daemon still holds some */
  }
}

/** A daemon process, however it was started. */
interface DaemonProcess {
  pid: number;
  /** undefined while it runs; its exit code (null: killed by a signal) after. */
  exitCode: number | null | undefined;
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
}

/** Output to a log file, no terminal; in the network namespace at `netns` if given (nsenter execs: the PID is the daemon's). */
function detached(args: string[], logPath: string, netns?: string): DaemonProcess {
  const log = openSync(logPath, 'a');
  const p: ChildProcess = spawn(...(netns ? inNetns(netns, [process.execPath, ...args]) : ([process.execPath, args] as const)), { stdio: ['ignore', log, log] });
  closeSync(log); // the daemon holds its own copy
  const d: DaemonProcess = {
    pid: p.pid ?? -1,
    exitCode: undefined,
    exited: new Promise((r) => p.once('exit', (code) => r((d.exitCode = code)))),
    kill: (sig) => p.kill(sig),
  };
  return d;
}

/** As an administrator starts it by hand: a session leader with a terminal. */
function onTerminal(args: string[], logPath: string): DaemonProcess {
  const pty: IPty = spawnPty(process.execPath, args, { cols: 80, rows: 24, env: process.env as Record<string, string> });
  pty.onData((s) => appendFileSync(logPath, s));
  const d: DaemonProcess = {
    pid: pty.pid,
    exitCode: undefined,
    exited: new Promise((r) => pty.onExit(({ exitCode, signal }) => r((d.exitCode = signal ? null : exitCode)))),
    kill: (sig) => process.kill(pty.pid, sig),
  };
  return d;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

let daemonsMade = 0;
/** The base of test ID slot `n` (of 700, 64 session ranges each, from 1e9). */
const idSlot = (n: number): number => 1_000_000_000 + (n % 700) * 64 * 65536;

/** Where sessions find the probe (a tmpfs of theirs that allows exec). */
export const SESSION_PROBE = '/run/probe';

/**
 * ENCLAVE_TEST_POOL ("workspace_bridge = 2,workspace_none = 1"): every test
 * daemon makes sessions ahead, so that the same files prove a pooled
 * session is a cold one (the integration-pool project in vitest.config.ts).
 */
export const TEST_POOL = process.env.ENCLAVE_TEST_POOL;
function poolConfig(): string {
  if (!TEST_POOL) return '';
  if (!/^(?:(?:workspace|strict)_(?:bridge|none) = \d+,?)+$/.test(TEST_POOL)) throw new Error(`ENCLAVE_TEST_POOL: "${TEST_POOL}" is not like "workspace_bridge = 2,workspace_none = 1"`);
  return `\n[pool]\n${TEST_POOL.split(',').filter(Boolean).join('\n')}\n`;
}

export class TestDaemon {
  readonly tag = randomBytes(3).toString('hex');
  readonly runId = `${process.pid}x${this.tag}`;
  /** Per-run network: bridge, /24 subnet and nftables table. */
  readonly bridge = `et${this.tag}`;
  readonly subnetPrefix = `172.31.${parseInt(this.tag.slice(0, 2), 16)}`;
  readonly nftTable = `enclave_t_${this.tag}`;
  readonly dir = join(RUNS_DIR, this.runId);
  readonly stateDir = join(this.dir, 'state');
  readonly socket = join(this.dir, 'sock', 'enclave.sock');
  readonly configPath = join(this.dir, 'config.toml');
  readonly cgroupParent = `enclave-test-${this.runId}`;
  /**
   * A high range of up to 64 slots, its own per daemon of this run, far from a
   * production daemon's; or, for the stress suite and the scale bench
   * (`wideIds`), up to 1024 slots above every test daemon's range (4.1e9 on;
   * test ranges end below 4.07e9).
   */
  get idBase(): number {
    return this.base;
  }
  private base: number;
  readonly logPath = join(this.dir, 'daemon.log');
  private proc: DaemonProcess | undefined;
  private started = false;
  /** Init PIDs of every session seen, to reap those re-parented to us. */
  private readonly inits = new Set<number>();

  /**
   * `subnet`: a CIDR instead of the run's own /24 (the scale bench's /16); `bundle`: another build's dist/bundle/main.js (a benchmark's baseline);
   * `netns`: the path of a network namespace the daemon runs in (a fleet node's, stress/nodeNet.ts), its mount namespace the host's.
   */
  constructor(private opts: { slots?: number; wideIds?: boolean; subnet?: string; extraConfig?: string; topConfig?: string; terminal?: boolean; logLevel?: string; bundle?: string; netns?: string } = {}) {
    if ((opts.slots ?? 16) > (opts.wideIds ? 1024 : 64)) throw new RangeError(`at most ${opts.wideIds ? 1024 : 64} ID slots per test daemon`);
    if (opts.terminal && opts.netns) throw new RangeError('a daemon on a terminal runs in the host network namespace');
    this.base = opts.wideIds ? 4_100_000_000 : idSlot(process.pid * 7 + daemonsMade++);
  }

  /**
   * Start the daemon. Its first start takes the next slot while the daemon
   * refuses its ID range as another live daemon's: two test processes'
   * slots (by PID) can meet, and the daemon's lock is what says so (seen in CI).
   */
  async start(): Promise<void> {
    const fresh = !existsSync(this.configPath);
    for (let tries = 1; ; tries++) {
      try {
        return await this.startOnce();
      } catch (e) {
        if (!fresh || this.opts.wideIds || tries >= 20 || !/overlap IDs .* in use by/.test((e as Error).message)) throw e;
        this.base = idSlot((this.base - 1_000_000_000) / (64 * 65536) + 1);
        rmSync(this.configPath, { force: true });
        rmSync(this.logPath, { force: true });
      }
    }
  }

  private async startOnce(): Promise<void> {
    if (!existsSync(this.configPath)) {
      if (!this.started) sweepEarlierRuns();
      this.started = true;
      // Sessions that outlive a daemon re-parent to us: we reap them.
      addon().setChildSubreaper();
      mkdirSync(this.dir, { recursive: true, mode: 0o755 });
      const cache = baseCache(RUNS_DIR);
      if (cache) seedBaseLayers(cache, join(this.stateDir, 'rootfs'));
      writeFileSync(
        this.configPath,
        `state_dir = "${this.stateDir}"\nsocket = "${this.socket}"\nlocks_dir = "${LOCKS_DIR}"\nlog_level = "${this.opts.logLevel ?? 'debug'}"\n${this.opts.topConfig ?? ''}` +
          `[ids]\nbase = ${this.idBase}\nslots = ${this.opts.slots ?? 16}\n[cgroups]\nparent = "${this.cgroupParent}"\n` +
          `[network]\nbridge = "${this.bridge}"\nsubnet = "${this.opts.subnet ?? `${this.subnetPrefix}.0/24`}"\ntable = "${this.nftTable}"\n` +
          `[sessions]\n${/^stop_grace_ms\s*=/m.test(this.opts.extraConfig ?? '') ? '' : 'stop_grace_ms = 1000\n'}${this.opts.extraConfig ?? ''}` +
          poolConfig(),
      );
    }
    const args = [this.opts.bundle ?? CLI, 'daemon', '--config', this.configPath];
    this.proc = this.opts.terminal ? onTerminal(args, this.logPath) : detached(args, this.logPath, this.opts.netns);
    writeFileSync(join(this.dir, 'daemon.pid'), String(this.pid));
    // Generous: on a 2-core machine at load 10-12 a daemon took 9.5 s to listen; a hang still fails well inside the 60 s hook.
    const deadline = Date.now() + 40_000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== undefined) throw new Error(`daemon exited ${this.proc.exitCode}: ${this.log().slice(-2000)}`);
      try {
        const r = await this.api('GET', '/v1/health');
        if (r.status === 200) {
          const cache = baseCache(RUNS_DIR);
          if (cache) keepBaseLayers(cache, join(this.stateDir, 'rootfs'));
          return;
        }
      } catch {
        /* not up yet */
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`daemon did not come up: ${this.log().slice(-2000)}`);
  }

  /** The host path of the probe, once built: every session created after is given a copy. */
  private probeBuilt: string | undefined;

  /**
   * test/integration/probe.c, compiled into this run's directory (after
   * start()). Returns its host path; sessions created from now on get a copy
   * at SESSION_PROBE (the default root shows nothing of the host's /var/tmp).
   */
  buildProbe(): string {
    const probe = join(this.dir, 'probe');
    execFileSync('gcc', ['-O2', '-o', probe, join(__dirname, 'probe.c')]);
    this.probeBuilt = probe;
    return probe;
  }

  /** Copy a host file into a session (through exec's stdin), executable. */
  async copyIn(session: string, hostPath: string, inside: string): Promise<void> {
    const r = await this.sh(session, `cat > ${inside} && chmod 755 ${inside}`, readFileSync(hostPath));
    if (r.code !== 0) throw new Error(`copy of ${hostPath} into ${session}:${inside} failed: ${r.stderr}`);
  }

  /** New config for the next start(): the file is written again from these. */
  reconfigure(opts: { extraConfig?: string; topConfig?: string }): void {
    this.opts = { ...this.opts, ...opts };
    rmSync(this.configPath, { force: true });
  }

  /** Extra TOML for the [sessions] table, set before start(). */
  set sessionsConfig(extra: string) {
    this.opts = { ...this.opts, extraConfig: extra };
  }

  get pid(): number {
    return this.proc?.pid ?? -1;
  }

  log(): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '';
  }

  /** SIGTERM (or another signal) and wait for the daemon to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const p = this.proc;
    if (!p || p.exitCode !== undefined) return p?.exitCode ?? null;
    p.kill(signal);
    return p.exited;
  }

  api(method: string, path: string, body?: unknown): Promise<Reply> {
    return call(this.socket, method, path, body);
  }

  async rawRequest(method: string, path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
    const { request } = await import('node:http');
    return new Promise((resolve, reject) => {
      const req = request({ socketPath: this.socket, method, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* keep text */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  cli(args: string[], input?: string | Buffer): Promise<CliResult> {
    return this.cliEnv(args, {}, input);
  }

  /** The CLI with variables added to its environment. */
  cliEnv(args: string[], env: Record<string, string>, input?: string | Buffer): Promise<CliResult> {
    return this.run(enclaveCommand(args), env, input);
  }

  private run([file, argv]: [string, string[]], env: Record<string, string>, input?: string | Buffer): Promise<CliResult> {
    return collected(spawn(file, argv, { env: { ...process.env, ...env, ENCLAVE_SOCKET: this.socket } }), input, argv);
  }

  /** `enclave session exec [-i] S -- sh -c SCRIPT` (through the front end, see SH_VIA_NODE), asserting nothing. */
  sh(session: string, script: string, input?: string | Buffer): Promise<CliResult> {
    // -i only with input: like docker exec, stdin is not sent without it.
    const args = ['session', 'exec', ...(input === undefined ? [] : ['-i']), session, '--', 'sh', '-c', script];
    return this.run(SH_VIA_NODE ? enclaveCommand(args) : [FRONT, args], {}, input);
  }

  /** The lines as one `sh -c` script in a session: its stdout. Anything on its stderr fails (thrown, with the exit code). */
  async script(session: string, lines: readonly string[]): Promise<string> {
    const r = await this.sh(session, lines.join('\n'));
    if (r.stderr !== '') throw new Error(`script in ${session} wrote to stderr (exit ${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  async create(body: Record<string, unknown> = {}): Promise<Session> {
    const r = await this.api('POST', '/v1/sessions', body);
    if (r.status !== 201) throw new Error(`create failed: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    const s = sessionSchema.parse(r.body);
    if (s.init_pid) this.inits.add(s.init_pid);
    if (this.probeBuilt && s.state === 'running') await this.copyIn(s.id, this.probeBuilt, SESSION_PROBE);
    return s;
  }

  async show(ref: string): Promise<Session> {
    const r = await this.api('GET', `/v1/sessions/${ref}`);
    if (r.status !== 200) throw new Error(`show failed: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    return sessionSchema.parse(r.body);
  }

  async destroy(ref: string): Promise<void> {
    const r = await this.api('DELETE', `/v1/sessions/${ref}`);
    if (r.status !== 204) throw new Error(`destroy failed: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  }

  cgroupDirs(sessionId?: string): string[] {
    return cgroupHierarchies()
      .map((h) => join(h, this.cgroupParent, ...(sessionId ? [sessionId] : [])))
      .filter((d) => existsSync(d));
  }

  /** Reap inits that re-parented to this process (their daemon was gone). */
  async reapAdopted(): Promise<void> {
    for (const pid of this.inits) {
      for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) {
        if (addon().reapChild(pid)) break;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  /** Reap helper processes re-parented to us (a daemon killed mid-create). */
  reapOrphanHelpers(): void {
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
        const m = /^\d+ \((enclave-[a-z]+)\) (\S) (\d+)/.exec(stat);
        if (m && m[2] === 'Z' && Number(m[3]) === process.pid) addon().reapChild(Number(e));
      } catch {
        /* gone */
      }
    }
  }

  /** Destroy every session, stop the daemon, remove everything of this run. */
  async cleanup(): Promise<void> {
    if (TEST_POOL && existsSync(this.logPath)) {
      // What the pool served, so that a run with it on shows it was used.
      const log = this.log();
      const count = (msg: string) => log.split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).length;
      process.stderr.write(`[pool] ${this.runId}: ${count('session handed out from the pool')} creates handed out from the pool, ${count('session running') - count('pool member ready')} made cold\n`);
    }
    try {
      if (this.proc && this.proc.exitCode === undefined) {
        const r = await this.api('GET', '/v1/sessions');
        const list = (r.body as { sessions?: { id: string; state: string }[] }).sessions ?? [];
        // Live ones only: an ended session has nothing left to destroy.
        for (const s of list) if (['creating', 'running', 'stopping', 'stopped', 'starting', 'destroying'].includes(s.state)) await this.api('DELETE', `/v1/sessions/${s.id}`);
      }
    } catch {
      /* the daemon may be dead; the cgroup sweep below still kills everything */
    }
    await this.stop('SIGTERM');
    for (const h of cgroupHierarchies()) removeCgroupTree(join(h, this.cgroupParent));
    await this.reapAdopted();
    this.reapOrphanHelpers();
    // No `daemon --cleanup` here (a Node start, 2-3 s a file on a busy machine, and its
    // result was never checked): what it removes is removed below by force, and its own
    // tests are pool.test.ts and stateTrust.test.ts. The daemon's lxcfs outlives the
    // daemon, for its sessions; it re-parented to us: killed and reaped here.
    killLxcfsUnder(this.dir);
    spawnSync('ip', ['link', 'del', this.bridge], { stdio: 'ignore' });
    nft(`table inet ${this.nftTable}\ndelete table inet ${this.nftTable}\n`);
    for (const m of mountsUnder(this.dir).reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    rmSync(this.dir, { recursive: true, force: true });
    sweepStaleLocks();
    try {
      rmdirSync(RUNS_DIR);
    } catch {
      /* other runs still there */
    }
  }
}

export interface RawRequest {
  method: string;
  path: string;
  body?: unknown;
  /** Send WebSocket upgrade headers (k8s subprotocol). */
  upgrade?: boolean;
}

/**
 * `n` WebSocket upgrades of `path` as another user, all sent before any
 * answer is read and all held open until every status is in (so none gives
 * its slot back early): the HTTP status of each, in order.
 */
export function concurrentUpgradesAs(socket: string, who: { uid: number; groups: number[] }, path: string, n: number, protocol = 'v1.attach.enclave.dev'): number[] {
  const py = `import socket,sys,json
n=int(sys.argv[3]); ss=[]
for i in range(n):
    s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); ss.append(s)
for s in ss:
    s.sendall(("GET %s HTTP/1.1\\r\\nHost: enclave\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\nSec-WebSocket-Version: 13\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Protocol: %s\\r\\n\\r\\n" % (sys.argv[2], sys.argv[4])).encode())
out=[]
for s in ss:
    data=b""
    while b"\\r\\n" not in data:
        c=s.recv(4096)
        if not c: break
        data+=c
    out.append(int(data.split(b" ")[1]) if data else 0)
print(json.dumps(out))
for s in ss: s.close()`;
  const groups = who.groups.length ? [`--groups=${who.groups.join(',')}`] : ['--clear-groups'];
  const r = spawnSync('setpriv', [`--reuid=${who.uid}`, `--regid=${who.uid}`, ...groups, '/usr/bin/python3', '-c', py, socket, path, String(n), protocol], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`upgrades as uid ${who.uid} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as number[];
}

/** The enclave CLI as another user (setpriv), with the socket group. */
export function cliAs(socket: string, who: { uid: number; groups: number[] }, args: string[], input?: string | Buffer): Promise<CliResult> {
  const groups = who.groups.length ? [`--groups=${who.groups.join(',')}`] : ['--clear-groups'];
  const [file, argv] = enclaveCommand(['--socket', socket, ...args]);
  return collected(spawn('setpriv', [`--reuid=${who.uid}`, `--regid=${who.uid}`, ...groups, file, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] }), input, args);
}

/**
 * A CLI that has not finished after this long is killed, and its result says
 * so with its arguments: a hung command fails its test by name, not as a
 * test timeout that names no step.
 */
const CLI_HANG_MS = 50_000;

/** A spawned CLI given its input (and EOF): its exit code and output. */
function collected(p: ChildProcessWithoutNullStreams, input: string | Buffer | undefined, args: readonly string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let hung = false;
    const timer = setTimeout(() => {
      hung = true;
      p.kill('SIGKILL');
    }, CLI_HANG_MS);
    timer.unref();
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => err.push(c));
    p.stdin.on('error', () => undefined);
    p.stdin.end(input ?? '');
    p.on('close', (code) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      const stderr = Buffer.concat(err).toString() + (hung ? `[test harness: \`enclave ${args.join(' ')}\` did not finish within ${CLI_HANG_MS / 1000} s; killed]\n` : '');
      resolve({ code, stdout: stdoutBytes.toString(), stderr, stdoutBytes });
    });
  });
}

/**
 * Raw requests on the daemon's socket as another user, one connection each,
 * from one process: [status, body] per request; status 0 when the kernel
 * refused the connect (the socket is 0660 root:socket_gid). A Python client,
 * so that nothing of this process's identity comes along.
 */
export function requestsAs(socket: string, who: { uid: number; groups: number[] }, reqs: RawRequest[]): [number, string][] {
  const py = `import socket,sys,json
out=[]
for r in json.loads(sys.stdin.read()):
    s=socket.socket(socket.AF_UNIX)
    try:
        s.connect(sys.argv[1])
    except PermissionError:
        out.append([0, "EACCES"]); continue
    b=(json.dumps(r["body"]) if "body" in r else "").encode()
    h="%s %s HTTP/1.1\\r\\nHost: enclave\\r\\nConnection: %s\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n" % (r["method"], r["path"], "Upgrade" if r.get("upgrade") else "close", len(b))
    if r.get("upgrade"): h+="Upgrade: websocket\\r\\nSec-WebSocket-Version: 13\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Protocol: v5.channel.k8s.io\\r\\n"
    s.sendall((h+"\\r\\n").encode()+b)
    data=b""
    while b"\\r\\n\\r\\n" not in data:
        c=s.recv(65536)
        if not c: break
        data+=c
    head,_,body=data.partition(b"\\r\\n\\r\\n")
    s.settimeout(0.5)
    try:
        while True:
            c=s.recv(65536)
            if not c: break
            body+=c
    except Exception: pass
    out.append([int(head.split(b" ")[1]), body.decode(errors="replace")])
    s.close()
print(json.dumps(out))`;
  const groups = who.groups.length ? [`--groups=${who.groups.join(',')}`] : ['--clear-groups'];
  // /usr/bin/python3: the python3 on root's PATH may be a shim other users cannot run.
  const r = spawnSync('setpriv', [`--reuid=${who.uid}`, `--regid=${who.uid}`, ...groups, '/usr/bin/python3', '-c', py, socket], { input: JSON.stringify(reqs), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`requests as uid ${who.uid} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as [number, string][];
}
