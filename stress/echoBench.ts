// Keystroke echo and attach throughput, every path in one shuffled schedule
// with its baselines (issue 27, goals 3 and 5):
//  - raw: a host shell on a node-pty (one pty hop: the floor);
//  - attach-ws / tty-ws: the daemon's share, a WebSocket client in this
//    process on the console (attach) and on `exec --tty`;
//  - cli-attach / cli-exec: what a user types, `enclave session attach` and
//    `enclave session exec -it` on a pty of their own (the CLI's share too):
//    the native front end answers both;
//  - node-attach / node-exec: the same through the Node CLI (ENCLAVE_FRONT=node,
//    what the bin ran before the front end took attach and exec -t);
//  - podman: `podman exec -it` into a busybox container, when podman and runc
//    are installed (a private store in the run's directory, removed after);
//  - with --baseline DIR (another checkout, built): the same WebSocket and CLI
//    paths against a second daemon running that build (`NAME@base`), in the
//    same schedule: a change's before and after as same-run ratios.
// Each terminal sits in `cat > /dev/null`, so the session's tty echoes each
// key in the kernel: what is measured is the path, not a program.
//   npm run bench:attach [-- --seed S --keystrokes N --attach-mib M --rounds R --baseline DIR --no-podman --json FILE]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { cpus, loadavg, release } from 'node:os';
import { parseArgs } from 'node:util';
import { FRONT, TestDaemon } from '../test/integration/harness.js';
import { attach, catMode, echoOnce, onPty, rawPty, throughput, wsTerminal, type Terminalish } from './attachBench.js';
import { msSince, pct, rng, runShuffled, Samples } from './schedule.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    keystrokes: { type: 'string', default: '300' },
    'attach-mib': { type: 'string', default: '32' },
    rounds: { type: 'string', default: '5' },
    'no-podman': { type: 'boolean', default: false },
    baseline: { type: 'string' },
    json: { type: 'string' },
  },
});
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);

/** A private podman store with one busybox container, or undefined when podman cannot run one here. */
function podmanPeer(dir: string): { argv: string[]; cleanup: () => void } | undefined {
  if (values['no-podman'] || !existsSync('/usr/bin/podman') || !existsSync('/usr/sbin/runc') || !existsSync('/bin/busybox')) return undefined;
  const base = ['--root', join(dir, 'pm-root'), '--runroot', join(dir, 'pm-run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file', '--runtime', 'runc'];
  const rootfs = join(dir, 'pm-rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const c of ['sh', 'cat', 'sleep', 'printf', 'head', 'base64']) symlinkSync('busybox', join(rootfs, 'bin', c));
  const name = `echo-bench-${process.pid}`;
  const cleanup = () => {
    spawnSync('podman', [...base, 'rm', '-f', '-t', '0', name], { stdio: 'ignore' });
    spawnSync('podman', [...base, 'rmi', '-a', '-f'], { stdio: 'ignore' });
  };
  try {
    execFileSync('tar', ['-C', rootfs, '-cf', join(dir, 'pm-rootfs.tar'), '.']);
    execFileSync('podman', [...base, 'import', join(dir, 'pm-rootfs.tar'), `${name}-img`], { stdio: 'ignore' });
    // The host's hard limits are lower than podman's defaults.
    execFileSync('podman', [...base, 'run', '-d', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--network', 'none', '--name', name, `${name}-img`, '/bin/sleep', '1000000'], { stdio: 'ignore' });
  } catch (e) {
    process.stderr.write(`bench: no podman peer (${(e as Error).message.split('\n')[0]})\n`);
    cleanup();
    return undefined;
  }
  return { argv: ['podman', ...base, 'exec', '-it', name, '/bin/sh'], cleanup };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root');
  const random = rng(seed);
  const s = new Samples();
  const d = new TestDaemon({ slots: 16 });
  await d.start();
  const baseBundle = values.baseline === undefined ? undefined : join(values.baseline, 'dist', 'bundle', 'main.js');
  if (baseBundle && !existsSync(baseBundle)) throw new Error(`--baseline: no ${baseBundle} (build that checkout first)`);
  const base = baseBundle ? new TestDaemon({ slots: 16, bundle: baseBundle }) : undefined;
  await base?.start();
  const open: Terminalish[] = [];
  let podman: ReturnType<typeof podmanPeer>;
  const load0 = loadavg()[0]!;
  try {
    const mib = Number(values['attach-mib']);
    const bytes = mib * 1024 * 1024;
    // One session per terminal: a second viewer on one console would double its work per key.
    const names = ['bench-ws', 'bench-tty', 'bench-cli', 'bench-cli-exec', 'bench-node', 'bench-node-exec'];
    for (const on of base ? [d, base] : [d]) {
      for (const name of names) await on.create({ name, tmp_mb: mib * 2, network: 'none' });
      for (const name of ['bench-ws', 'bench-tty', 'bench-cli', 'bench-node', 'bench-cli-exec', 'bench-node-exec']) await on.sh(name, `head -c ${(bytes * 3) / 4} /dev/urandom | base64 -w0 > /tmp/big`);
    }
    const hostFile = join(d.dir, 'big');
    writeFileSync(hostFile, randomBytes((bytes * 3) / 4).toString('base64'));
    podman = podmanPeer(d.dir);

    const paths = async (on: TestDaemon, suffix: string): Promise<Record<string, Terminalish>> => {
      const cli = (args: string[]) => onPty(FRONT, ['--socket', on.socket, ...args]);
      const node = (args: string[]) => onPty(FRONT, ['--socket', on.socket, ...args], { ENCLAVE_FRONT: 'node' });
      return {
        [`attach-ws${suffix}`]: await attach(on, 'bench-ws'),
        [`tty-ws${suffix}`]: await wsTerminal(`ws+unix://${on.socket}:/v1/sessions/bench-tty/exec?command=/bin/sh&tty=1&stdin=1&cols=120&rows=40`),
        [`cli-attach${suffix}`]: cli(['session', 'attach', 'bench-cli']),
        [`cli-exec${suffix}`]: cli(['session', 'exec', '-it', 'bench-cli-exec', '/bin/sh']),
        ...(suffix ? {} : { 'node-attach': node(['session', 'attach', 'bench-node']), 'node-exec': node(['session', 'exec', '-it', 'bench-node-exec', '/bin/sh']) }),
      };
    };
    const terms: Record<string, Terminalish> = {
      raw: rawPty('/bin/sh', []),
      ...(await paths(d, '')),
      ...(base ? await paths(base, '@base') : {}),
      ...(podman ? { podman: onPty(podman.argv[0]!, podman.argv.slice(1)) } : {}),
    };
    open.push(...Object.values(terms));
    for (const [name, t] of Object.entries(terms)) await catMode(t, `cat${name.replace(/[^a-z]/g, '')}`, 60_000);
    const K = Number(values.keystrokes);
    await runShuffled(
      Object.fromEntries(Object.keys(terms).map((n) => [`${n}-echo`, K])),
      async (name) => {
        s.add(name, await echoOnce(terms[name.slice(0, -'-echo'.length)]!));
        return true;
      },
      random,
    );
    // Throughput: out of cat (ctrl-c), then a big cat through each.
    const thru: Record<string, [Terminalish, string]> = {
      raw: [terms.raw!, hostFile],
      'attach-ws': [terms['attach-ws']!, '/tmp/big'],
      'tty-ws': [terms['tty-ws']!, '/tmp/big'],
      'cli-attach': [terms['cli-attach']!, '/tmp/big'],
      'node-attach': [terms['node-attach']!, '/tmp/big'],
      // exec -it has no screen mirror: what the client's own share costs when the daemon's is small.
      'cli-exec': [terms['cli-exec']!, '/tmp/big'],
      'node-exec': [terms['node-exec']!, '/tmp/big'],
      ...(base ? { 'attach-ws@base': [terms['attach-ws@base']!, '/tmp/big'] as [Terminalish, string], 'cli-attach@base': [terms['cli-attach@base']!, '/tmp/big'] as [Terminalish, string] } : {}),
    };
    for (const [t] of Object.values(thru)) t.type('\x03');
    await new Promise((r) => setTimeout(r, 200));
    const R = Number(values.rounds);
    await runShuffled(
      Object.fromEntries(Object.keys(thru).map((n) => [`${n}-MiBs`, R])),
      async (name) => {
        const [t, file] = thru[name.slice(0, -'-MiBs'.length)]!;
        s.add(name, await throughput(t, file, bytes));
        return true;
      },
      random,
    );

    const rows = Object.keys(terms).map((n) => s.row(`${n}-echo`, `keystroke echo: ${n} (ms)`));
    const tr = (n: string) => (pct(s.get(`${n}-MiBs`), 50) / pct(s.get('raw-MiBs'), 50)).toFixed(2);
    const mibs = (n: string) => `${pct(s.get(n), 50).toFixed(1)} (${s.get(n).map((x) => x.toFixed(1)).join(', ')})`;
    const lines = [
      `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, kernel ${release()}, node ${process.version}; seed ${seed}; load ${load0.toFixed(1)} -> ${loadavg()[0]!.toFixed(1)}`,
      `${'operation'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`,
      ...rows,
      `${'ratio (p50 and p99 over the baseline p50)'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`,
      ...Object.keys(terms)
        .filter((n) => n !== 'raw')
        .map((n) => s.ratio(`${n}-echo`, 'raw-echo', `echo ${n} / raw pty`)),
      ...['cli-attach', 'cli-exec'].map((n) => s.ratio(`${n}-echo`, `node-${n.slice(4)}-echo`, `echo ${n} / the Node CLI's (node-${n.slice(4)})`)),
      ...(podman ? ['cli-attach', 'cli-exec', 'node-attach', 'node-exec'].map((n) => s.ratio(`${n}-echo`, 'podman-echo', `echo ${n} / podman exec -it`)) : []),
      ...(base ? ['attach-ws', 'tty-ws', 'cli-attach', 'cli-exec'].map((n) => s.ratio(`${n}-echo`, `${n}@base-echo`, `echo ${n} / the baseline build's`)) : []),
      ...(base && podman ? ['cli-attach@base', 'cli-exec@base'].map((n) => s.ratio(`${n}-echo`, 'podman-echo', `echo ${n} / podman exec -it`)) : []),
      `throughput (${mib} MiB cat, MiB/s, median (rounds)): raw node-pty ${mibs('raw-MiBs')}; attach WebSocket ${mibs('attach-ws-MiBs')}; exec --tty WebSocket (no mirror) ${mibs('tty-ws-MiBs')}; enclave session attach (front end) ${mibs('cli-attach-MiBs')}; through the Node CLI ${mibs('node-attach-MiBs')}; enclave session exec -it (front end) ${mibs('cli-exec-MiBs')}; through the Node CLI ${mibs('node-exec-MiBs')}`,
      `throughput / raw node-pty (ratio of medians): attach WebSocket ${tr('attach-ws')}; exec --tty WebSocket ${tr('tty-ws')}; enclave session attach (front end) ${tr('cli-attach')}; through the Node CLI ${tr('node-attach')}; enclave session exec -it (front end) ${tr('cli-exec')}; through the Node CLI ${tr('node-exec')}`,
      ...(base ? [`baseline build, throughput (MiB/s): attach WebSocket ${mibs('attach-ws@base-MiBs')}, ratio ${tr('attach-ws@base')}; enclave session attach ${mibs('cli-attach@base-MiBs')}, ratio ${tr('cli-attach@base')}`] : []),
    ];
    process.stdout.write(lines.join('\n') + '\n');
    if (values.json) writeFileSync(values.json, JSON.stringify({ seed, kernel: release(), samples: s.toJSON() }, null, 2) + '\n');
  } finally {
    for (const t of open) t.close();
    podman?.cleanup();
    await base?.cleanup();
    await d.cleanup();
    rmSync(join(d.dir, 'big'), { force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
