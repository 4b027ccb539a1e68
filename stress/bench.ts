// Benchmark: create, exec and destroy latency (p50/p99) and memory per
// session against a private daemon, with baselines measured in the same run:
// bubblewrap (if installed) and util-linux unshare for a comparable sandbox
// without networking, and a bare spawn of /bin/true for exec.
//   npm run bench [-- --sessions N --execs N]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { K8S_V5_PROTOCOL } from '../src/terminal/channels.js';
import { TestDaemon } from '../test/integration/harness.js';
import { benchAttach } from './attachBench.js';

const { values } = parseArgs({ options: { sessions: { type: 'string', default: '40' }, execs: { type: 'string', default: '100' } } });
const N = Number(values.sessions);
const E = Number(values.execs);

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

function row(name: string, xs: number[]): string {
  return `${name.padEnd(44)} ${pct(xs, 50).toFixed(2).padStart(8)} ${pct(xs, 99).toFixed(2).padStart(8)}   n=${xs.length}`;
}

function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

function timeSpawn(cmd: string, args: string[], n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, args, { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}`);
    out.push(ms(t0));
  }
  return out;
}

function execTrue(d: TestDaemon, session: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${d.socket}:/v1/sessions/${session}/exec?command=true`, [K8S_V5_PROTOCOL]);
    ws.on('close', () => resolve(ms(t0)));
    ws.on('error', reject);
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root');
  if (N > 63) throw new Error('--sessions: at most 63');
  const d = new TestDaemon({ slots: 64 });
  await d.start();
  try {
    const daemonBefore = rssKiB(d.pid);
    // Alternate the modes so drift in the machine hits both equally.
    const createNet: number[] = [];
    const createNone: number[] = [];
    const ids: string[] = [];
    const inits: number[] = [];
    for (let i = 0; i < N; i++) {
      const network = i % 2 === 0 ? 'bridge' : 'none';
      const t0 = process.hrtime.bigint();
      const s = await d.create({ network });
      (network === 'bridge' ? createNet : createNone).push(ms(t0));
      ids.push(s.id);
      inits.push(s.init_pid!);
    }
    const initRss = inits.map(rssKiB);
    const daemonAfter = rssKiB(d.pid);

    const exec: number[] = [];
    for (let i = 0; i < 5; i++) await execTrue(d, ids[0]!); // warm-up
    for (let i = 0; i < E; i++) exec.push(await execTrue(d, ids[i % ids.length]!));

    const destroy: number[] = [];
    for (const id of ids) {
      const t0 = process.hrtime.bigint();
      await d.destroy(id);
      destroy.push(ms(t0));
    }

    const att = await benchAttach(d);
    const base: [string, number[]][] = [];
    base.push(['baseline: node spawn /bin/true', await timeSpawnAsync(E)]);
    const ns = ['--user', '--map-root-user', '--pid', '--fork', '--mount', '--net', '--uts', '--ipc', '--cgroup'];
    base.push(['baseline: unshare (all ns) true', timeSpawn('unshare', [...ns, 'true'], N)]);
    if (existsSync('/usr/bin/bwrap')) {
      const bw = ['--unshare-all', '--ro-bind', '/', '/', '--tmpfs', '/tmp', '--tmpfs', '/home', '--proc', '/proc', '--dev', '/dev', 'true'];
      base.push(['baseline: bwrap (no net, ro /, tmpfs, proc, dev)', timeSpawn('bwrap', bw, N)]);
    }

    const lines = [
      `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, kernel ${release()}, node ${process.version}`,
      `${'operation (ms)'.padEnd(44)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`,
      row('session create (API, --network none)', createNone),
      row('session create (API, bridge: veth + address)', createNet),
      row('exec `true` (WebSocket round trip)', exec),
      row('session destroy (API)', destroy),
      ...base.map(([n, xs]) => row(n, xs)),
      row('keystroke echo through attach (WebSocket)', att.attachEcho),
      row('baseline: keystroke echo on a raw node-pty', att.rawEcho),
      `attach throughput (32 MiB cat): ${att.attachMiBs.toFixed(1)} MiB/s through the WebSocket; raw node-pty ${att.rawMiBs.toFixed(1)} MiB/s`,
      `memory per session: init RSS p50 ${pct(initRss, 50)} KiB; daemon RSS +${((daemonAfter - daemonBefore) / N).toFixed(0)} KiB/session (${daemonBefore} -> ${daemonAfter} KiB for ${N})`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    await d.cleanup();
  }
}

// Spawn cost as the daemon pays it: child_process.spawn from this process.
async function timeSpawnAsync(n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const p = spawn('/bin/true', [], { stdio: 'ignore' });
      p.on('error', reject);
      p.on('close', () => resolve());
    });
    out.push(ms(t0));
  }
  return out;
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
