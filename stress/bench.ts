// Benchmark against a private daemon, every figure next to a baseline taken
// in the same run, all steps interleaved in one shuffled order (schedule.ts):
//  - session create (bridge and --network none) vs bubblewrap and unshare
//    (a comparable sandbox without a network); and the same bridge create
//    on a third daemon with a pool of sessions made ahead ([pool]
//    workspace_bridge = --pool), whose creates are hand-outs;
//  - session destroy;
//  - exec `true` through the API vs `nsenter -t INIT -a true` into the same
//    session, and vs a bare spawn of /bin/true from Node; the client
//    library's run(['true']) (one kept-alive client) vs the raw API's exec;
//  - attach throughput and keystroke echo vs a raw node-pty;
//  - memory per session;
//  - create of today's default (workspace profile, minimal root with a
//    writable layer) vs the confinement of before (strict, the host's "/"
//    read-only), on a second daemon in the same shuffled order;
//  - snapshot and restore of a 100 MiB layer (MiB/s), vs plain tar of the
//    same bytes on the host;
//  - stop and start vs snapshot + destroy and create --from of the same data,
//    and vs a bare create (lifecycleBench.ts);
//  - with --docker N: `docker run --rm IMAGE true` inside a system session vs
//    the same on a dockerd of the host's, started and removed by the
//    benchmark (containerBench.ts).
//   npm run bench [-- --sessions N --execs N --seed S --attach-mib M --rounds R --lifecycle-rounds L --pool P --docker N --only create --json FILE]
//   (--only create: the creates, destroys and their baselines alone, for several seeds in little time)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, release } from 'node:os';
import { parseArgs } from 'node:util';
import { CLI, FRONT, TestDaemon } from '../test/integration/harness.js';
import { benchAttach } from './attachBench.js';
import { benchLifecycle, lifecycleRatios, lifecycleRows } from './lifecycleBench.js';
import { benchContainers } from './containerBench.js';
import { clientRunTrue, execTrue, rssKiB, timeSpawn } from './probes.js';
import { Enclave } from '../src/client/index.js';
import { msSince, pct, rng, runShuffled, Samples } from './schedule.js';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '30' },
    execs: { type: 'string', default: '200' },
    seed: { type: 'string' },
    'attach-mib': { type: 'string', default: '32' },
    rounds: { type: 'string', default: '3' },
    'lifecycle-rounds': { type: 'string', default: '8' },
    keystrokes: { type: 'string', default: '300' },
    pool: { type: 'string', default: '2' },
    only: { type: 'string' },
    docker: { type: 'string', default: '0' },
    json: { type: 'string' },
  },
});
if (values.only !== undefined && values.only !== 'create') throw new Error('--only: "create" is the one subset');
const createsOnly = values.only === 'create';
const N = Number(values.sessions);
const E = Number(values.execs);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root');
  if (2 * N + 3 > 64) throw new Error('--sessions: at most 30 (64 ID slots, 2N sessions may be live at once)');
  const random = rng(seed);
  const s = new Samples();
  const d = new TestDaemon({ slots: 64 });
  const before = new TestDaemon({ slots: 64, extraConfig: 'rootfs = "/"\nprofile = "strict"\n' });
  const pooled = new TestDaemon({ slots: 64, extraConfig: `[pool]\nworkspace_bridge = ${Number(values.pool)}\n` });
  await d.start();
  await before.start();
  await pooled.start();
  try {
    // Exec targets live through the whole run; one with a network, one without.
    const targets = [await d.create({ name: 'bench-a' }), await d.create({ name: 'bench-b', network: 'none' })];
    const daemonBefore = rssKiB(d.pid);
    const live: [TestDaemon, string][] = [];
    const inits: number[] = [];
    let turn = 0;
    const bwrap = ['--unshare-all', '--ro-bind', '/', '/', '--tmpfs', '/tmp', '--tmpfs', '/home', '--proc', '/proc', '--dev', '/dev', 'true'];
    const unshare = ['--user', '--map-root-user', '--pid', '--fork', '--mount', '--net', '--uts', '--ipc', '--cgroup', 'true'];
    // Destroys through the CLI (the front end, the Node CLI) take some of the 3N creates.
    const cliDestroys = Math.max(1, Math.floor(N / 3));
    const all: Record<string, number> = {
      'create-bridge': N,
      'create-none': N,
      'create-strict-hostroot': N,
      'create-pooled': N,
      destroy: 4 * N - 2 * cliDestroys,
      'front-destroy': cliDestroys,
      'cli-destroy': cliDestroys,
      exec: E,
      'client-run': E,
      nsenter: E,
      'spawn-true': E,
      unshare: N,
      'cli-help': 40,
      'cli-show': 40,
      'cli-exec': 40,
      'cli-list': 40,
      'front-show': 40,
      'front-exec': 40,
      'front-list': 40,
      'api-show': 40,
      'api-list': 40,
      'node-e0': 40,
      ...(existsSync('/usr/bin/bwrap') ? { bwrap: N } : {}),
    };
    const CREATES = ['create-bridge', 'create-none', 'create-strict-hostroot', 'create-pooled', 'destroy', 'front-destroy', 'cli-destroy', 'unshare', 'bwrap'];
    const counts = createsOnly ? Object.fromEntries(Object.entries(all).filter(([k]) => CREATES.includes(k))) : all;
    // The pooled daemon's first members wait for its start-up's scan of /usr, as any first create does: filled before the schedule.
    for (const deadline = Date.now() + 120_000; (pooled.log().match(/"msg":"pool member ready"/g) ?? []).length < Number(values.pool); ) {
      if (Date.now() > deadline) throw new Error('the pool did not fill in 120 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    const client = new Enclave({ socket: d.socket });
    // Warm up the paths once, unmeasured.
    await execTrue(d, targets[0]!.id);
    await clientRunTrue(client, targets[0]!.id);
    await timeSpawn('nsenter', ['-t', String(targets[0]!.init_pid), '-a', 'true']);
    await runShuffled(
      counts,
      async (name) => {
        const t0 = process.hrtime.bigint();
        const target = targets[turn++ % targets.length]!;
        switch (name) {
          case 'create-bridge':
          case 'create-none':
          case 'create-pooled':
          case 'create-strict-hostroot': {
            const on = name === 'create-strict-hostroot' ? before : name === 'create-pooled' ? pooled : d;
            const c = await on.create({ network: name === 'create-none' ? 'none' : 'bridge' });
            s.add(name, msSince(t0));
            live.push([on, c.id]);
            inits.push(rssKiB(c.init_pid!));
            return true;
          }
          case 'destroy':
          case 'front-destroy':
          case 'cli-destroy': {
            if (live.length === 0) return false;
            const [on, id] = live.splice(Math.floor(random() * live.length), 1)[0]!;
            const t1 = process.hrtime.bigint();
            if (name === 'destroy') await on.destroy(id);
            else if (name === 'front-destroy') await timeSpawn(FRONT, ['--socket', on.socket, 'session', 'destroy', id]);
            else await timeSpawn(process.execPath, [CLI, '--socket', on.socket, 'session', 'destroy', id]);
            s.add(name, msSince(t1));
            return true;
          }
          case 'exec':
            s.add(name, await execTrue(d, target.id));
            return true;
          case 'client-run':
            s.add(name, await clientRunTrue(client, target.id));
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
          case 'cli-help':
            s.add(name, await timeSpawn(process.execPath, [CLI, '--help']));
            return true;
          case 'cli-show':
            s.add(name, await timeSpawn(process.execPath, [CLI, '--socket', d.socket, 'session', 'show', target.id]));
            return true;
          case 'cli-exec':
            s.add(name, await timeSpawn(process.execPath, [CLI, '--socket', d.socket, 'session', 'exec', target.id, 'true']));
            return true;
          case 'cli-list':
            s.add(name, await timeSpawn(process.execPath, [CLI, '--socket', d.socket, 'session', 'list']));
            return true;
          case 'front-show':
            s.add(name, await timeSpawn(FRONT, ['--socket', d.socket, 'session', 'show', target.id]));
            return true;
          case 'front-exec':
            s.add(name, await timeSpawn(FRONT, ['--socket', d.socket, 'session', 'exec', target.id, 'true']));
            return true;
          case 'front-list':
            s.add(name, await timeSpawn(FRONT, ['--socket', d.socket, 'session', 'list']));
            return true;
          case 'api-show':
          case 'api-list': {
            const r = await d.api('GET', name === 'api-show' ? `/v1/sessions/${target.id}` : '/v1/sessions');
            if (r.status !== 200) throw new Error(`${name}: HTTP ${r.status}`);
            s.add(name, msSince(t0));
            return true;
          }
          case 'node-e0':
            s.add(name, await timeSpawn(process.execPath, ['-e', '0']));
            return true;
          case 'bwrap':
            s.add(name, await timeSpawn('bwrap', bwrap));
            return true;
        }
        throw new Error(`unknown step ${name}`);
      },
      random,
    );
    client.close();
    const daemonAfter = rssKiB(d.pid);

    if (!createsOnly) {
      await benchSnapshots(d, s, Number(values.rounds), random);
      await benchLifecycle(d, s, Number(values['lifecycle-rounds']), random);
      await benchAttach(d, s, { mib: Number(values['attach-mib']), rounds: Number(values.rounds), keystrokes: Number(values.keystrokes), random });
    }
    const docker = Number(values.docker);
    if (docker > 0 && !createsOnly) await benchContainers(d, s, docker, random);

    const mibs = (n: string) => s.get(n).map((x) => x.toFixed(1)).join(', ');
    const lines = [
      `machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, kernel ${release()}, node ${process.version}; seed ${seed}`,
      `${'operation (ms)'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`,
      s.row('create-none', 'session create, --network none (API)'),
      s.row('create-bridge', 'session create, bridge: veth + address (API)'),
      s.row('create-strict-hostroot', 'create, bridge, strict + host "/" (before profiles)'),
      s.row('create-pooled', `create, bridge, from a pool of ${values.pool} (API)`),
      s.row('destroy', 'session destroy (API)'),
      s.row('exec', 'exec `true` (API: WebSocket connect to status)'),
      s.row('client-run', "client library run(['true']) (to its result)"),
      s.row('attach-echo', 'keystroke echo through attach (WebSocket)'),
      s.row('nsenter', 'baseline: nsenter -t INIT -a true'),
      s.row('spawn-true', 'baseline: node spawn /bin/true'),
      s.row('unshare', 'baseline: unshare (all ns) true'),
      ...(counts.bwrap ? [s.row('bwrap', 'baseline: bwrap (no net, ro /, tmpfs, proc, dev)')] : []),
      s.row('raw-echo', 'baseline: keystroke echo on a raw node-pty'),
      s.row('cli-help', 'enclave --help (whole CLI process)'),
      s.row('cli-show', 'enclave session show (whole CLI process)'),
      s.row('front-show', 'front end: session show (whole process)'),
      s.row('api-show', 'API show (one request)'),
      s.row('cli-list', `enclave session list (Node CLI; ~${N + 2} live)`),
      s.row('front-list', `front end: session list (~${N + 2} live)`),
      s.row('api-list', `API list, JSON (~${N + 2} live)`),
      s.row('cli-exec', 'enclave session exec ID true (Node CLI)'),
      s.row('front-exec', 'front end: session exec ID true'),
      s.row('cli-destroy', 'enclave session destroy (Node CLI)'),
      s.row('front-destroy', 'front end: session destroy'),
      s.row('node-e0', 'baseline: node -e 0'),
      ...lifecycleRows(s),
      ...(docker > 0 ? [s.row('docker-session', 'docker run --rm bb true, in a system session'), s.row('docker-host', 'baseline: docker run --rm bb true, host dockerd')] : []),
      `${'ratio (p50 and p99 over the baseline p50)'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`,
      s.ratio('exec', 'nsenter', 'exec / nsenter -a'),
      s.ratio('client-run', 'exec', 'client run / raw exec'),
      ...(counts.bwrap ? [s.ratio('create-none', 'bwrap', 'create none / bwrap'), s.ratio('create-bridge', 'bwrap', 'create bridge / bwrap'), s.ratio('create-pooled', 'bwrap', 'create bridge from the pool / bwrap')] : []),
      s.ratio('create-bridge', 'create-strict-hostroot', 'create workspace+layer / strict host root'),
      s.ratio('attach-echo', 'raw-echo', 'keystroke echo / raw pty'),
      s.ratio('cli-help', 'node-e0', 'enclave --help / node -e 0'),
      s.ratio('cli-show', 'node-e0', 'enclave session show / node -e 0'),
      s.ratio('front-show', 'node-e0', 'front show / node -e 0'),
      s.ratio('front-list', 'node-e0', 'front list / node -e 0'),
      s.ratio('cli-list', 'node-e0', 'Node CLI list / node -e 0'),
      s.ratio('front-exec', 'node-e0', 'front exec / node -e 0'),
      s.ratio('front-show', 'api-show', 'front show / API show'),
      s.ratio('front-list', 'api-list', 'front list / API list'),
      s.ratio('front-exec', 'exec', 'front exec / API exec'),
      s.ratio('front-destroy', 'destroy', 'front destroy / API destroy'),
      s.ratio('front-show', 'spawn-true', 'front show / spawn /bin/true'),
      s.ratio('front-exec', 'nsenter', 'front exec / nsenter -a'),
      s.ratio('cli-exec', 'nsenter', 'Node CLI exec / nsenter -a'),
      ...lifecycleRatios(s),
      ...(docker > 0 ? [s.ratio('docker-session', 'docker-host', 'docker run in a session / on the host')] : []),
    ].filter((l) => !/ n=0$|NaNx/.test(l));
    if (!createsOnly) lines.push(
      `snapshot of a 100 MiB layer (MiB/s, p50 of ${values.rounds}): zstd ${mibs('snap-zstd-MiBs')}; plain ${mibs('snap-none-MiBs')}; restore zstd ${mibs('restore-zstd-MiBs')}; restore plain ${mibs('restore-none-MiBs')}; host tar of the same bytes ${mibs('tar-MiBs')}`,
      `attach throughput (${values['attach-mib']} MiB cat, MiB/s): attach ${mibs('attach-MiBs')}; raw node-pty ${mibs('raw-MiBs')}; ratio of medians ${(pct(s.get('attach-MiBs'), 50) / pct(s.get('raw-MiBs'), 50)).toFixed(2)}`,
      `memory per session: init RSS p50 ${pct(inits, 50)} KiB; daemon RSS ${daemonBefore} -> ${daemonAfter} KiB over the run`,
    );
    process.stdout.write(lines.join('\n') + '\n');
    if (values.json) writeFileSync(values.json, JSON.stringify({ seed, kernel: release(), samples: s.toJSON() }, null, 2) + '\n');
  } finally {
    await d.cleanup();
    await before.cleanup();
    await pooled.cleanup();
  }
}

/** Rounds of: snapshot (zstd, plain) and restore of a session with 100 MiB in its layer, in shuffled order, and host tar of the same bytes. */
async function benchSnapshots(d: TestDaemon, s: Samples, rounds: number, random: () => number): Promise<void> {
  const src = await d.create({ name: 'bench-snap', root_mb: 256, memory_mb: 1024 });
  const fill = await d.sh('bench-snap', 'head -c 104857600 /dev/urandom > /usr/local/blob && echo ok');
  if (fill.stdout !== 'ok\n') throw new Error(`cannot fill the layer: ${fill.stderr}`);
  const host = join(d.dir, 'tar-baseline');
  mkdirSync(host);
  execFileSync('head', ['-c', '104857600', '/dev/urandom'], { stdio: ['ignore', openSync(join(host, 'blob'), 'w'), 'inherit'] });
  const MIB = 100;
  const steps = ['zstd', 'none', 'tar'];
  for (let r = 0; r < rounds; r++) {
    for (const kind of [...steps].sort(() => random() - 0.5)) {
      const file = join(d.dir, `bench.${kind}`);
      let t0 = process.hrtime.bigint();
      if (kind === 'tar') {
        execFileSync('tar', ['-c', '-f', file, '-C', host, 'blob']);
        s.add('tar-MiBs', MIB / (msSince(t0) / 1000));
      } else {
        const snap = await d.cli(['session', 'snapshot', src.id, '-o', file, '--compression', kind]);
        if (snap.code !== 0) throw new Error(`snapshot: ${snap.stderr}`);
        s.add(`snap-${kind}-MiBs`, MIB / (msSince(t0) / 1000));
        t0 = process.hrtime.bigint();
        const made = await d.cli(['session', 'create', '--from', file, '--root-size', '256']);
        if (made.code !== 0) throw new Error(`restore: ${made.stderr}`);
        s.add(`restore-${kind}-MiBs`, MIB / (msSince(t0) / 1000));
        await d.destroy(made.stdout.trim());
      }
      rmSync(file, { force: true });
    }
  }
  await d.destroy(src.id);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
