// Benchmark against a private daemon, every figure next to a baseline taken
// in the same run, all steps interleaved in one shuffled order (schedule.ts):
//  - session create (bridge and --network none) vs bubblewrap and unshare
//    (a comparable sandbox without a network);
//  - session destroy;
//  - exec `true` through the API vs `nsenter -t INIT -a true` into the same
//    session, and vs a bare spawn of /bin/true from Node;
//  - attach throughput and keystroke echo vs a raw node-pty;
//  - memory per session.
//   npm run bench [-- --sessions N --execs N --seed S --attach-mib M --rounds R --json FILE]
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { K8S_V5_PROTOCOL } from '../src/terminal/channels.js';
import { TestDaemon } from '../test/integration/harness.js';
import { benchAttach } from './attachBench.js';
import { msSince, pct, rng, runShuffled, Samples } from './schedule.js';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '30' },
    execs: { type: 'string', default: '200' },
    seed: { type: 'string' },
    'attach-mib': { type: 'string', default: '32' },
    rounds: { type: 'string', default: '3' },
    keystrokes: { type: 'string', default: '300' },
    json: { type: 'string' },
  },
});
const N = Number(values.sessions);
const E = Number(values.execs);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);

function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

/** Spawned from this process, as the daemon would spawn a helper. */
function timeSpawn(cmd: string, args: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'ignore' });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(msSince(t0)) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}

/** WebSocket connect to exit status. */
function execTrue(d: TestDaemon, session: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${d.socket}:/v1/sessions/${session}/exec?command=true`, [K8S_V5_PROTOCOL]);
    let status = '';
    ws.on('message', (m: Buffer) => m[0] === 3 && (status = m.subarray(1).toString()));
    ws.on('close', () => (status.includes('Success') ? resolve(msSince(t0)) : reject(new Error(`exec true: ${status || 'no status'}`))));
    ws.on('error', reject);
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root');
  if (2 * N + 3 > 64) throw new Error('--sessions: at most 30 (64 ID slots, 2N sessions may be live at once)');
  const random = rng(seed);
  const s = new Samples();
  const d = new TestDaemon({ slots: 64 });
  await d.start();
  try {
    // Exec targets live through the whole run; one with a network, one without.
    const targets = [await d.create({ name: 'bench-a' }), await d.create({ name: 'bench-b', network: 'none' })];
    const daemonBefore = rssKiB(d.pid);
    const live: string[] = [];
    const inits: number[] = [];
    let turn = 0;
    const bwrap = ['--unshare-all', '--ro-bind', '/', '/', '--tmpfs', '/tmp', '--tmpfs', '/home', '--proc', '/proc', '--dev', '/dev', 'true'];
    const unshare = ['--user', '--map-root-user', '--pid', '--fork', '--mount', '--net', '--uts', '--ipc', '--cgroup', 'true'];
    const counts: Record<string, number> = {
      'create-bridge': N,
      'create-none': N,
      destroy: 2 * N,
      exec: E,
      nsenter: E,
      'spawn-true': E,
      unshare: N,
      ...(existsSync('/usr/bin/bwrap') ? { bwrap: N } : {}),
    };
    // Warm up the paths once, unmeasured.
    await execTrue(d, targets[0]!.id);
    await timeSpawn('nsenter', ['-t', String(targets[0]!.init_pid), '-a', 'true']);
    await runShuffled(
      counts,
      async (name) => {
        const t0 = process.hrtime.bigint();
        const target = targets[turn++ % targets.length]!;
        switch (name) {
          case 'create-bridge':
          case 'create-none': {
            const c = await d.create({ network: name === 'create-bridge' ? 'bridge' : 'none' });
            s.add(name, msSince(t0));
            live.push(c.id);
            inits.push(rssKiB(c.init_pid!));
            return true;
          }
          case 'destroy': {
            if (live.length === 0) return false;
            const id = live.splice(Math.floor(random() * live.length), 1)[0]!;
            await d.destroy(id);
            s.add(name, msSince(t0));
            return true;
          }
          case 'exec':
            s.add(name, await execTrue(d, target.id));
            return true;
          case 'nsenter':
            s.add(name, await timeSpawn('nsenter', ['-t', String(target.init_pid), '-a', 'true']));
            return true;
          case 'spawn-true':
            s.add(name, await timeSpawn('/bin/true', []));
            return true;
          case 'unshare':
            s.add(name, await timeSpawn('unshare', unshare));
            return true;
          case 'bwrap':
            s.add(name, await timeSpawn('bwrap', bwrap));
            return true;
        }
        throw new Error(`unknown step ${name}`);
      },
      random,
    );
    const daemonAfter = rssKiB(d.pid);

    await benchAttach(d, s, { mib: Number(values['attach-mib']), rounds: Number(values.rounds), keystrokes: Number(values.keystrokes), random });

    const mibs = (n: string) => s.get(n).map((x) => x.toFixed(1)).join(', ');
    const lines = [
      `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, kernel ${release()}, node ${process.version}; seed ${seed}`,
      `${'operation (ms)'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`,
      s.row('create-none', 'session create, --network none (API)'),
      s.row('create-bridge', 'session create, bridge: veth + address (API)'),
      s.row('destroy', 'session destroy (API)'),
      s.row('exec', 'exec `true` (API: WebSocket connect to status)'),
      s.row('attach-echo', 'keystroke echo through attach (WebSocket)'),
      s.row('nsenter', 'baseline: nsenter -t INIT -a true'),
      s.row('spawn-true', 'baseline: node spawn /bin/true'),
      s.row('unshare', 'baseline: unshare (all ns) true'),
      ...(counts.bwrap ? [s.row('bwrap', 'baseline: bwrap (no net, ro /, tmpfs, proc, dev)')] : []),
      s.row('raw-echo', 'baseline: keystroke echo on a raw node-pty'),
      `${'ratio (p50 and p99 over the baseline p50)'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`,
      s.ratio('exec', 'nsenter', 'exec / nsenter -a'),
      ...(counts.bwrap ? [s.ratio('create-none', 'bwrap', 'create none / bwrap'), s.ratio('create-bridge', 'bwrap', 'create bridge / bwrap')] : []),
      s.ratio('attach-echo', 'raw-echo', 'keystroke echo / raw pty'),
      `attach throughput (${values['attach-mib']} MiB cat, MiB/s): attach ${mibs('attach-MiBs')}; raw node-pty ${mibs('raw-MiBs')}; ratio of medians ${(pct(s.get('attach-MiBs'), 50) / pct(s.get('raw-MiBs'), 50)).toFixed(2)}`,
      `memory per session: init RSS p50 ${pct(inits, 50)} KiB; daemon RSS ${daemonBefore} -> ${daemonAfter} KiB over the run`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    if (values.json) writeFileSync(values.json, JSON.stringify({ seed, kernel: release(), samples: s.toJSON() }, null, 2) + '\n');
  } finally {
    await d.cleanup();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
