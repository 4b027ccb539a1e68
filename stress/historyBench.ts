// History does not slow the daemon down (issue 13, defect 6): health,
// /metrics and list against a daemon holding 50,000 ended sessions, next to
// the same calls against a daemon with none, in one shuffled schedule; and
// health while a /metrics scrape is in flight.
//   npm run bench:history [-- --rows N --calls N --seed S]
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TestDaemon } from '../test/integration/harness.js';
import { msSince, rng, runShuffled, Samples } from './schedule.js';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '50000' }, calls: { type: 'string', default: '200' }, seed: { type: 'string' } } });
const ROWS = Number(values.rows);
const CALLS = Number(values.calls);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);

/** ROWS ended sessions, as a long-lived daemon would have them, written while it is stopped. */
function seedHistory(stateDir: string, rows: number): void {
  const db = new Database(join(stateDir, 'enclave.db'));
  const insert = db.prepare(
    `INSERT INTO sessions (id, name, state, hostname, limits, created_at, updated_at, network, keep_console, owner_uid, exit_code)
     VALUES (?, ?, ?, ?, ?, ?, ?, 'bridge', 0, 0, 143)`,
  );
  const limits = JSON.stringify({ memory_mb: 1024, pids: 1024, cpu_percent: 100, tmp_mb: 512, home_mb: 512 });
  db.transaction(() => {
    for (let i = 0; i < rows; i++) {
      const t = new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString();
      insert.run(`s-${i.toString(16).padStart(10, '0')}`, `old-${i}`, i % 10 ? 'destroyed' : 'failed', `old-${i}`, limits, t, t);
    }
  })();
  db.close();
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root');
  const random = rng(seed);
  const s = new Samples();
  const full = new TestDaemon({ extraConfig: `keep_history = ${ROWS + 1000}\n` });
  const empty = new TestDaemon();
  try {
    await full.start();
    await full.stop();
    seedHistory(full.stateDir, ROWS);
    await full.start();
    await empty.start();
    for (const d of [full, empty]) await d.create({ name: 'live' });
    const time = async (name: string, f: () => Promise<unknown>) => {
      const t0 = process.hrtime.bigint();
      await f();
      s.add(name, msSince(t0));
    };
    const counts: Record<string, number> = {};
    for (const op of ['health', 'metrics', 'list', 'health-during-metrics']) for (const who of ['history', 'empty']) counts[`${op}-${who}`] = CALLS;
    await runShuffled(
      counts,
      async (step) => {
        const d = step.endsWith('-history') ? full : empty;
        const op = step.slice(0, step.lastIndexOf('-'));
        if (op === 'health') await time(step, () => d.api('GET', '/v1/health'));
        else if (op === 'metrics') await time(step, () => d.api('GET', '/metrics'));
        else if (op === 'list') await time(step, () => d.api('GET', '/v1/sessions'));
        else {
          const scrape = d.api('GET', '/metrics');
          await time(step, () => d.api('GET', '/v1/health'));
          await scrape;
        }
        return true;
      },
      random,
    );
    const lines = [
      `history: ${ROWS} ended sessions kept (keep_history ${ROWS + 1000}) vs none; ${CALLS} calls each, shuffled; seed ${seed}`,
      `${'operation (ms)'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`,
      ...['health', 'metrics', 'list', 'health-during-metrics'].flatMap((op) => [s.row(`${op}-history`, `${op}, ${ROWS} history rows`), s.row(`${op}-empty`, `${op}, no history (baseline)`)]),
      `${'ratio (p50 and p99 over the baseline p50)'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`,
      ...['health', 'metrics', 'list', 'health-during-metrics'].map((op) => s.ratio(`${op}-history`, `${op}-empty`, `${op}: history / none`)),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    await full.cleanup();
    await empty.cleanup();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exit(1);
});
