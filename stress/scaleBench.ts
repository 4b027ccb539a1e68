// Figures at scale, each next to a baseline from the same run, against one
// private daemon with a /16 and up to 1024 ID slots:
//   26 up      26 sequential creates (bridge) vs 26 sequential bwrap runs,
//              interleaved in one shuffled schedule;
//   26 down    26 sequential destroys of one such batch, and, in the same
//              schedule, 26 destroyed at once;
//   at L live  (default 500, bridge) list vs show through the API, shuffled;
//              the daemon's RSS idle; restart (SIGTERM, start) to serving,
//              every session adopted and still running.
// Then everything is destroyed and the leak check of the stress suite runs.
//   npm run bench:scale [-- --live L --rounds R --batch B --seed S --json FILE --daemon-log FILE]
import { existsSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { parseArgs } from 'node:util';
import { TestDaemon } from '../test/integration/harness.js';
import { warmUp } from './attachBench.js';
import { baselineState, sessionRows, settledLeaks } from './leaks.js';
import { execTrue, fdCount, rssKiB, timeSpawn } from './probes.js';
import { intOption, msSince, pct, pool, rng, runShuffled, Samples } from './schedule.js';

const { values } = parseArgs({
  options: {
    live: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '5' },
    batch: { type: 'string', default: '26' },
    seed: { type: 'string' },
    json: { type: 'string' },
    'daemon-log': { type: 'string' },
  },
});

const count = (name: 'live' | 'rounds' | 'batch', min: number, max: number) => intOption('bench:scale', name, values[name] as string | undefined, min, max);

const LIVE = count('live', 1, 1000);
const ROUNDS = count('rounds', 1, 10);
const BATCH = count('batch', 1, 26);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
// Every "up" batch may be live at once before its "down" comes in the shuffled order.
const SLOTS = Math.min(1024, Math.max(LIVE, 2 * ROUNDS * BATCH) + 8);
const ID_SPAN = SLOTS * 65536;
const BWRAP = ['--unshare-all', '--ro-bind', '/', '/', '--tmpfs', '/tmp', '--tmpfs', '/home', '--proc', '/proc', '--dev', '/dev', 'true'];

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the scale bench needs root');
  if (!existsSync('/usr/bin/bwrap')) throw new Error('the scale bench needs bubblewrap (/usr/bin/bwrap) as its baseline');
  const random = rng(seed);
  const s = new Samples();
  const report: string[] = [];
  const say = (line: string) => {
    report.push(line);
    process.stdout.write(line + '\n');
  };
  const d = new TestDaemon({ slots: SLOTS, wideIds: true, subnet: '172.30.0.0/16', logLevel: 'info' });
  const started = Date.now();
  say(`machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, kernel ${release()}, node ${process.version}; seed ${seed}`);
  let failures: string[] = [];
  await d.start();
  try {
    await warmUp(d);
    const base = await baselineState(d, ID_SPAN);

    // ---- 26 up, 26 down -----------------------------------------------------------
    const batches: string[][] = [];
    await runShuffled(
      { up: 2 * ROUNDS, bwrap: 2 * ROUNDS, down: ROUNDS, 'down-at-once': ROUNDS },
      async (name) => {
        const t0 = process.hrtime.bigint();
        switch (name) {
          case 'up': {
            const ids: string[] = [];
            for (let i = 0; i < BATCH; i++) ids.push((await d.create({ network: 'bridge' })).id);
            s.add(name, msSince(t0));
            batches.push(ids);
            return true;
          }
          case 'bwrap':
            for (let i = 0; i < BATCH; i++) await timeSpawn('bwrap', BWRAP);
            s.add(name, msSince(t0));
            return true;
          case 'down':
          case 'down-at-once': {
            if (batches.length === 0) return false;
            const ids = batches.splice(Math.floor(random() * batches.length), 1)[0]!;
            const t1 = process.hrtime.bigint();
            if (name === 'down') for (const id of ids) await d.destroy(id);
            else await Promise.all(ids.map((id) => d.destroy(id)));
            s.add(name, msSince(t1));
            return true;
          }
        }
        throw new Error(`unknown step ${name}`);
      },
      random,
    );
    for (const ids of batches) for (const id of ids) await d.destroy(id);

    // ---- L live ---------------------------------------------------------------------
    const live: string[] = [];
    let t = process.hrtime.bigint();
    const rssEmpty = rssKiB(d.pid);
    await pool(Array.from({ length: LIVE }), 8, async () => {
      live.push((await d.create({ network: 'bridge' })).id);
    });
    say(`${LIVE} live sessions up (bridge, 8 at a time): ${(msSince(t) / 1000).toFixed(1)} s`);
    // Idle: what the daemon holds once the creates' garbage is collectable.
    await new Promise((r) => setTimeout(r, 5000));
    const rssIdle = rssKiB(d.pid);
    // list: the API's JSON (every field of every session); list-table: what
    // `enclave session list` asks for, the table's text (?format=text).
    await runShuffled(
      { list: 40, 'list-table': 40, show: 40 },
      async (name) => {
        const t0 = process.hrtime.bigint();
        const path = name === 'list' ? '/v1/sessions' : name === 'list-table' ? '/v1/sessions?format=text' : `/v1/sessions/${live[Math.floor(random() * live.length)]}`;
        const r = await d.api('GET', path);
        if (r.status !== 200) throw new Error(`${name}: HTTP ${r.status}`);
        s.add(name, msSince(t0));
        return true;
      },
      random,
    );
    const listed = (await sessionRows(d)).filter((r) => r.state === 'running').length;
    if (listed !== LIVE) throw new Error(`list shows ${listed} running sessions, ${LIVE} were created`);

    for (let i = 0; i < 3; i++) {
      await d.stop();
      t = process.hrtime.bigint();
      await d.start();
      s.add('restart', msSince(t));
      const rows = await sessionRows(d);
      const running = rows.filter((r) => r.state === 'running').length;
      if (running !== LIVE) throw new Error(`after restart ${i + 1}, ${running} of ${LIVE} sessions are running`);
      await execTrue(d, live[Math.floor(random() * live.length)]!);
    }
    const rssAfterRestart = rssKiB(d.pid);
    say(`daemon RSS: ${(rssEmpty / 1024).toFixed(0)} MiB with no session, ${(rssIdle / 1024).toFixed(0)} MiB with ${LIVE} idle, ${(rssAfterRestart / 1024).toFixed(0)} MiB after a restart adopted them; ${fdCount(d.pid)} fds`);

    t = process.hrtime.bigint();
    await pool(live, 16, async (id) => d.destroy(id));
    say(`${LIVE} destroys (16 at a time): ${(msSince(t) / 1000).toFixed(1)} s`);
    await d.reapAdopted(); // inits the restarts adopted were re-parented to us
    failures = await settledLeaks(d, base, ID_SPAN, say);

    say(`${'operation (ms)'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`);
    say(s.row('up', `${BATCH} up, sequential, bridge`));
    say(s.row('bwrap', `baseline: ${BATCH} bwrap, sequential`));
    say(s.row('down', `${BATCH} down, sequential, bridge`));
    say(s.row('down-at-once', `${BATCH} down at once, bridge`));
    say(s.row('list', `API list, ${LIVE} live (JSON, every field)`));
    say(s.row('list-table', `API list as the CLI table, ${LIVE} live (?format=text)`));
    say(s.row('show', `API show, ${LIVE} live`));
    say(s.row('restart', `daemon restart to serving, ${LIVE} live, /16`));
    say(`${'ratio (p50 and p99 over the baseline p50)'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`);
    say(s.ratio('up', 'bwrap', `${BATCH} up / ${BATCH} bwrap`));
    say(s.ratio('list', 'show', `list / show at ${LIVE} live`));
    say(s.ratio('list-table', 'show', `list table / show at ${LIVE} live`));
    say(`total ${((Date.now() - started) / 1000).toFixed(1)} s; restart p50 ${pct(s.get('restart'), 50).toFixed(0)} ms`);
  } finally {
    if (values.json) writeFileSync(values.json, JSON.stringify({ seed, samples: s.toJSON(), report }, null, 2) + '\n');
    if (values['daemon-log']) writeFileSync(values['daemon-log'], d.log());
    await d.cleanup();
  }
  if (failures.length > 0) process.exit(1);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:scale: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
