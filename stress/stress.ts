// The stress suite: bounded in count and time, every part stops by itself,
// and the end is checked against the kernel, not only the database.
//   churn         N create -> exec -> destroy cycles, networking on and off
//                 (on: the session publishes a port)
//   kill -9       the daemon, in the middle of the churn, with creates in
//                 flight and sessions live; restarted, it must adopt or settle them
//   concurrency   P parallel creates; then L live sessions with execs spread across them
//   consoles      C attached at once, each typing and reading its own marker
// Then every session is destroyed and the leak check runs (stress/leaks.ts).
// Prints per 100 cycles: cycles/s, daemon RSS and fds, create/exec/destroy p50/p99.
//   npm run stress [-- --cycles N --parallel P --live L --consoles C --seed S --deadline-s T --json FILE]
import { writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { parseArgs } from 'node:util';
import { TestDaemon } from '../test/integration/harness.js';
import { attach, waitFor, warmUp } from './attachBench.js';
import { baselineState, kernelState, sessionRows, settledLeaks, totalElements, type KernelState } from './leaks.js';
import { execTrue, fdCount, rssKiB } from './probes.js';
import { intOption, msSince, pct, pool, rng } from './schedule.js';

const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '1000' },
    parallel: { type: 'string', default: '100' },
    live: { type: 'string', default: '200' },
    consoles: { type: 'string', default: '50' },
    seed: { type: 'string' },
    'deadline-s': { type: 'string', default: '1200' },
    json: { type: 'string' },
  },
});

const count = (name: keyof typeof values, min: number, max: number) => intOption('stress', name, values[name] as string | undefined, min, max);

const CYCLES = count('cycles', 2, 100_000);
const PARALLEL = count('parallel', 1, 250);
const LIVE = count('live', 1, 250);
const CONSOLES = count('consoles', 0, 250);
const DEADLINE_MS = count('deadline-s', 10, 86_400) * 1000;
if (CONSOLES > LIVE) {
  process.stderr.write('stress: --consoles cannot exceed --live (one console per live session)\n');
  process.exit(2);
}
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const SLOTS = 256;
const ID_SPAN = SLOTS * 65536;
const started = Date.now();

function checkDeadline(where: string): void {
  if (Date.now() - started > DEADLINE_MS) throw new Error(`stress: past the ${DEADLINE_MS / 1000} s deadline during ${where}`);
}

/** The n-th host port the run publishes: below the ephemeral range, its own per run. */
let portBase = 0;
const published = (n: number) => ({ host_ip: '127.0.0.1', host_port: portBase + n, session_port: 80 });

interface Window {
  first: number;
  last: number;
  ms: number;
  rssKiB: number;
  fds: number;
  create: number[];
  exec: number[];
  destroy: number[];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the stress suite needs root');
  const random = rng(seed);
  // The test daemon's /24 holds 253 addresses: live sessions alternate networking on and off.
  const d = new TestDaemon({ slots: SLOTS, wideIds: true, logLevel: 'info' });
  portBase = 20000 + (parseInt(d.tag, 16) % 1200) * 10;
  const report: string[] = [];
  const windows: Window[] = [];
  const say = (s: string) => {
    report.push(s);
    process.stdout.write(s + '\n');
  };
  say(`machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, kernel ${release()}, node ${process.version}; seed ${seed}`);
  let base: KernelState | undefined;
  let failures: string[] = [];
  await d.start();
  try {
    await warmUp(d);
    base = await baselineState(d, ID_SPAN);
    const fdsAtStart = base.daemonFds;
    say(`baseline: daemon pid ${d.pid}, ${base.daemonFds} fds, RSS ${rssKiB(d.pid)} KiB, ${totalElements(base)} nftables elements`);

    // ---- churn, with a kill -9 in the middle ---------------------------------
    let w: Window | undefined;
    let t0 = Date.now();
    const cycle = async (i: number) => {
      if (!w) w = { first: i, last: i, ms: 0, rssKiB: 0, fds: 0, create: [], exec: [], destroy: [] };
      let t = process.hrtime.bigint();
      const s = await d.create(random() < 0.5 ? { network: 'none' } : { network: 'bridge', publish: [published(0)] });
      w.create.push(msSince(t));
      w.exec.push(await execTrue(d, s.id));
      t = process.hrtime.bigint();
      await d.destroy(s.id);
      w.destroy.push(msSince(t));
      w.last = i;
      if ((i + 1) % 100 === 0 || i === CYCLES - 1) {
        w.ms = Date.now() - t0;
        w.rssKiB = rssKiB(d.pid);
        w.fds = fdCount(d.pid);
        windows.push(w);
        w = undefined;
        t0 = Date.now();
      }
    };
    const half = Math.floor(CYCLES / 2);
    for (let i = 0; i < half; i++) {
      await cycle(i);
      checkDeadline('churn');
    }
    await killInTheMiddle(d, say);
    await warmUp(d);
    base = { ...base, daemonFds: (await kernelState(d, ID_SPAN)).daemonFds };
    say(`after the restart: daemon pid ${d.pid}, ${base.daemonFds} fds (the first daemon had ${fdsAtStart})`);
    t0 = Date.now();
    for (let i = half; i < CYCLES; i++) {
      await cycle(i);
      checkDeadline('churn');
    }

    // ---- concurrency ------------------------------------------------------------
    let t1 = process.hrtime.bigint();
    const burst = await Promise.all(Array.from({ length: PARALLEL }, (_, i) => d.create({ network: i % 2 ? 'none' : 'bridge' })));
    const notRunning = burst.filter((s) => s.state !== 'running');
    if (notRunning.length > 0) throw new Error(`of ${PARALLEL} parallel creates, ${notRunning.map((s) => `${s.id} ${s.state}`).join(', ')} did not come up running`);
    say(`${PARALLEL} parallel creates, all running: ${msSince(t1).toFixed(0)} ms`);
    t1 = process.hrtime.bigint();
    await Promise.all(burst.map((s) => d.destroy(s.id)));
    say(`${PARALLEL} parallel destroys: ${msSince(t1).toFixed(0)} ms`);
    checkDeadline('parallel creates');

    const live: string[] = [];
    t1 = process.hrtime.bigint();
    await pool(Array.from({ length: LIVE }), 8, async (_, i) => {
      live.push((await d.create({ network: i % 2 ? 'none' : 'bridge' })).id);
    });
    say(`${LIVE} live sessions up (8 at a time): ${msSince(t1).toFixed(0)} ms; daemon RSS ${rssKiB(d.pid)} KiB, ${fdCount(d.pid)} fds`);
    const execMs: number[] = [];
    t1 = process.hrtime.bigint();
    await pool(Array.from({ length: LIVE * 2 }), 16, async () => {
      execMs.push(await execTrue(d, live[Math.floor(random() * live.length)]!));
    });
    say(`${LIVE * 2} execs spread over them, 16 at a time: ${msSince(t1).toFixed(0)} ms; exec p50 ${pct(execMs, 50).toFixed(1)} ms, p99 ${pct(execMs, 99).toFixed(1)} ms`);
    checkDeadline('live sessions');

    // ---- consoles ------------------------------------------------------------------
    if (CONSOLES > 0) {
      t1 = process.hrtime.bigint();
      const terms = await Promise.all(live.slice(0, CONSOLES).map((id) => attach(d, id)));
      await Promise.all(
        terms.map((term, i) => {
          const seen = waitFor(term, `M-${i}-ok-M`, 60_000);
          term.type(`printf '\\115-${i}-ok-\\115'\r`);
          return seen;
        }),
      );
      say(`${CONSOLES} consoles attached at once, each typed and saw its marker: ${msSince(t1).toFixed(0)} ms`);
      for (const term of terms) term.close();
    }

    t1 = process.hrtime.bigint();
    await pool(live, 16, async (id) => d.destroy(id));
    say(`${LIVE} destroys (16 at a time): ${msSince(t1).toFixed(0)} ms`);

    // ---- the check --------------------------------------------------------------
    failures = await settledLeaks(d, base, ID_SPAN, say);
  } finally {
    printWindows(windows, say);
    const elapsed = ((Date.now() - started) / 1000).toFixed(1);
    say(`total ${elapsed} s`);
    if (values.json) writeFileSync(values.json, JSON.stringify({ seed, windows, report }, null, 2) + '\n');
    await d.cleanup();
  }
  if (failures.length > 0) process.exit(1);
}

/**
 * Kill -9 the daemon with sessions live and creates in flight, start it again:
 * the live sessions are adopted (exec works), each in-flight create either
 * finished (running) or settles to a final state, and nothing is lost.
 */
async function killInTheMiddle(d: TestDaemon, say: (s: string) => void): Promise<void> {
  const keep = [await d.create({ network: 'bridge', publish: [published(1)] }), await d.create({ network: 'none' })];
  const inFlight = Array.from({ length: 4 }, (_, i) => d.create(i % 2 ? { network: 'none' } : { network: 'bridge', publish: [published(2 + i)] }).catch((e: Error) => e));
  await new Promise((r) => setTimeout(r, 5));
  await d.stop('SIGKILL');
  const outcomes = await Promise.all(inFlight);
  d.reapOrphanHelpers();
  const t0 = process.hrtime.bigint();
  await d.start();
  const restartMs = msSince(t0);
  for (const s of keep) {
    const now = await d.show(s.id);
    if (now.state !== 'running') throw new Error(`session ${s.id} was ${now.state} after the daemon's kill -9 and restart, not running`);
    await execTrue(d, s.id);
  }
  const rows = await sessionRows(d);
  const unsettled = rows.filter((s) => s.state === 'creating' || s.state === 'stopping');
  if (unsettled.length > 0) throw new Error(`after the restart, sessions still ${unsettled.map((s) => `${s.id} ${s.state}`).join(', ')}`);
  for (const s of rows) if (s.state === 'running') await d.destroy(s.id);
  await d.reapAdopted();
  const finished = outcomes.filter((o) => !(o instanceof Error)).length;
  say(`kill -9 mid-churn: ${finished}/4 in-flight creates had answered; restart to serving ${restartMs.toFixed(0)} ms; ${keep.length} live sessions adopted and exec'd`);
}

function printWindows(windows: Window[], say: (s: string) => void): void {
  if (windows.length === 0) return;
  const f = (xs: number[]) => `${pct(xs, 50).toFixed(1).padStart(6)} ${pct(xs, 99).toFixed(1).padStart(6)}`;
  say(`${'cycles'.padEnd(11)} ${'cyc/s'.padStart(6)} ${'RSS MiB'.padStart(8)} ${'fds'.padStart(5)}   create p50/p99   exec p50/p99   destroy p50/p99 (ms)`);
  for (const w of windows) {
    const n = w.last - w.first + 1;
    say(
      `${`${w.first + 1}-${w.last + 1}`.padEnd(11)} ${((n * 1000) / Math.max(1, w.ms)).toFixed(1).padStart(6)} ${(w.rssKiB / 1024).toFixed(1).padStart(8)} ${String(w.fds).padStart(5)}   ${f(w.create)}    ${f(w.exec)}  ${f(w.destroy)}`,
    );
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`stress: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
