// A three-member etcd cluster on this machine (Debian's etcd-server), for the
// fleet's tests and `npm run fleet`: each member's data and log under one
// directory, ports below the ephemeral range with no socket on them, and a
// stop that kills and reaps every member. Fsync is off: these clusters are
// thrown away, and on a loaded test machine fsync latency makes leaders flap.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export interface EtcdCluster {
  endpoints: string[];
  members: EtcdMember[];
  stop(): Promise<void>;
}

export interface EtcdMember {
  name: string;
  pid: number;
  client: string;
  /** Kill this member (SIGKILL): the others keep quorum. */
  kill(): Promise<void>;
  /** Kill it and start it again on its data: its clients' streams break and resume. */
  restart(): Promise<void>;
}

const ETCD = '/usr/bin/etcd';

/**
 * Clients over TLS, each with a certificate of the CA (--client-cert-auth),
 * refused if `crl` revokes it: etcd reads that file at each new connection.
 */
export interface EtcdTls {
  ca: string;
  /** The members' certificate (its names must include the client URLs' host) and key. */
  cert: string;
  key: string;
  crl?: string;
}

function freePorts(n: number, salt: number): number[] {
  const out: number[] = [];
  for (let i = 0; out.length < n && i < 2000; i++) {
    const port = 12000 + ((process.pid * 11 + salt * 101 + i * 7) % 8000);
    if (out.includes(port)) continue;
    const r = spawnSync('ss', ['-Htan', `sport = :${port}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim() === '') out.push(port);
  }
  if (out.length < n) throw new Error('no free TCP ports in 12000-19999 for an etcd cluster');
  return out;
}

const exited = (p: ChildProcess) => new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', () => r())));

async function healthy(client: string, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`${client}/health`);
      if (r.ok && ((await r.json()) as { health?: string }).health === 'true') return;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`etcd at ${client} did not become healthy`);
}

/**
 * Start `size` members under `dir` (its own subdirectory each). `detach`:
 * the members outlive this process (npm run fleet up); else they are our
 * children and die with a stop(). `host`: the address clients use (default
 * 127.0.0.1).
 */
export async function startEtcdCluster(dir: string, o: { size?: number; salt?: number; detach?: boolean; host?: string; tls?: EtcdTls } = {}): Promise<EtcdCluster> {
  if (!existsSync(ETCD)) throw new Error(`${ETCD} is missing: install Debian's etcd-server (.ci/setup does)`);
  const size = o.size ?? 3;
  const ports = freePorts(size * 3, o.salt ?? 0);
  const names = Array.from({ length: size }, (_, i) => `m${i}`);
  const peer = (i: number) => `http://127.0.0.1:${ports[size + i]}`;
  // Clients on `host` (a fleet's bridge address: nodes in their own netns reach it there), members among themselves on loopback.
  const client = (i: number) => `${o.tls ? 'https' : 'http'}://${o.host ?? '127.0.0.1'}:${ports[i]}`;
  // With TLS every client call needs a certificate: health is read where etcd serves it in plain HTTP, on loopback.
  const health = (i: number) => (o.tls ? `http://127.0.0.1:${ports[2 * size + i]}` : client(i));
  const tlsArgs = (i: number) =>
    o.tls
      ? [`--cert-file=${o.tls.cert}`, `--key-file=${o.tls.key}`, '--client-cert-auth', `--trusted-ca-file=${o.tls.ca}`, ...(o.tls.crl ? [`--client-crl-file=${o.tls.crl}`] : []), `--listen-metrics-urls=${health(i)}`]
      : [];
  const initial = names.map((n, i) => `${n}=${peer(i)}`).join(',');
  const token = `enclave-${process.pid}-${Date.now()}`;
  const procs: ChildProcess[] = [];
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const argsOf: string[][] = [];
  const launch = (i: number): ChildProcess => {
    const log = openSync(join(dir, `${names[i]}.log`), 'a');
    const p = spawn(ETCD, argsOf[i]!, { stdio: ['ignore', log, log], detached: o.detach ?? false });
    closeSync(log);
    return p;
  };
  names.forEach((name, i) => {
    argsOf.push([
      `--name=${name}`,
      `--data-dir=${join(dir, name)}`,
      `--listen-client-urls=${client(i)}`,
      `--advertise-client-urls=${client(i)}`,
      `--listen-peer-urls=${peer(i)}`,
      `--initial-advertise-peer-urls=${peer(i)}`,
      `--initial-cluster=${initial}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${token}`,
      '--heartbeat-interval=200',
      '--election-timeout=2000',
      '--unsafe-no-fsync',
      '--logger=zap',
      '--log-level=warn',
      ...tlsArgs(i),
    ]);
    procs.push(launch(i));
  });
  if (o.detach) for (const p of procs) p.unref();
  const kill = async (i: number) => {
    procs[i]!.kill('SIGKILL');
    await exited(procs[i]!);
  };
  const members: EtcdMember[] = procs.map((p, i) => ({
    name: names[i]!,
    pid: p.pid!,
    client: client(i),
    kill: () => kill(i),
    restart: async () => {
      await kill(i);
      procs[i] = launch(i);
      await healthy(health(i), Date.now() + 30_000);
    },
  }));
  const stop = async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await Promise.all(procs.map(exited));
  };
  try {
    const deadline = Date.now() + 30_000;
    await Promise.all(names.map((_, i) => healthy(health(i), deadline)));
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}: ${names.map((n) => `${n}.log: ${readFileSync(join(dir, `${n}.log`), 'utf8').slice(-500)}`).join('\n')}`);
  }
  return { endpoints: names.map((_, i) => client(i)), members, stop };
}

/** PIDs of etcd processes whose data dir is under `dir` (a run's leftovers). */
export function etcdUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (argv[0] === ETCD && argv.some((a) => a.startsWith(`--data-dir=${dir}/`))) pids.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return pids;
}

/**
 * A directory for a test's cluster under `parent`, named for this process
 * (PREFIX-PID-XXXXXX), after sweeping those of processes that are gone: a
 * killed test run leaves no etcd serving and no directory.
 */
/** Whether a process of this pid is still there. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function etcdRunDir(parent: string, prefix: string): string {
  mkdirSync(parent, { recursive: true });
  for (const e of readdirSync(parent)) {
    const m = new RegExp(`^${prefix}-(\\d+)-`).exec(e);
    if (!m || alive(Number(m[1]))) continue;
    for (const pid of etcdUnder(join(parent, e))) process.kill(pid, 'SIGKILL');
    rmSync(join(parent, e), { recursive: true, force: true });
  }
  return mkdtempSync(join(parent, `${prefix}-${process.pid}-`));
}
