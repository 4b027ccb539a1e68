// What a session's volumes cost its create: creates with no volume, with one
// and three read-write volumes (moved in as fds), and with one and three
// read-only ones (staged: a tmpfs over the new root before the clone, each
// volume attached there and propagated in, its flags locked; docs/security.md,
// "Read-only volumes stay read-only"), in the default and the system profile.
// One private daemon, every create destroyed at once, all in one seeded
// shuffled order; p50 and p99, each read-only figure as a ratio to the
// read-write one of the same count and profile, measured in the same run.
//   npm run bench:volumes [-- --rounds N --seed S]
import { parseArgs } from 'node:util';
import { TestDaemon } from '../test/integration/harness.js';
import { msSince, rng, runShuffled, Samples } from './schedule.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '30' }, seed: { type: 'string' } } });
const rounds = Number(values.rounds);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const TARGETS = ['/srv/a', '/srv/b', '/srv/c'];

/** The create request of a case: `count` volumes, read-only or not, in `profile` (undefined: the default). */
const CASES: Record<string, { count: number; readonly: boolean; profile?: string }> = {
  'default, no volume': { count: 0, readonly: false },
  'default, 1 rw volume': { count: 1, readonly: false },
  'default, 1 ro volume': { count: 1, readonly: true },
  'default, 3 rw volumes': { count: 3, readonly: false },
  'default, 3 ro volumes': { count: 3, readonly: true },
  'system, 1 rw volume': { count: 1, readonly: false, profile: 'system' },
  'system, 1 ro volume': { count: 1, readonly: true, profile: 'system' },
};

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root');
  const d = new TestDaemon({ slots: 16 });
  await d.start();
  try {
    for (const v of ['a', 'b', 'c']) {
      const r = await d.cli(['volume', 'create', `bench-${v}`, '--size', '16']);
      if (r.code !== 0) throw new Error(`volume create: ${r.stderr}`);
    }
    const body = (c: (typeof CASES)[string]) => ({
      network: 'none',
      ...(c.profile ? { profile: c.profile } : {}),
      volumes: TARGETS.slice(0, c.count).map((target, i) => ({ name: `bench-${'abc'[i]}`, target, readonly: c.readonly })),
    });
    // Each case once before measuring: the first create waits for start-up's scan of /usr.
    for (const c of Object.values(CASES)) await d.destroy((await d.create(body(c))).id);
    const s = new Samples();
    await runShuffled(
      Object.fromEntries(Object.keys(CASES).map((k) => [k, rounds])),
      async (name) => {
        const t0 = process.hrtime.bigint();
        const made = await d.create(body(CASES[name]!));
        s.add(name, msSince(t0));
        await d.destroy(made.id);
        return true;
      },
      rng(seed),
    );
    const out = [`volumes at create, seed ${seed}, ${rounds} rounds, network none, each create destroyed at once`, `${'create (ms)'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`];
    for (const k of Object.keys(CASES)) out.push(s.row(k));
    out.push('', `${'ratio to the read-write one (p50, p99 over its p50)'.padEnd(52)}`);
    out.push(s.ratio('default, 1 ro volume', 'default, 1 rw volume', 'default, 1 ro / 1 rw'));
    out.push(s.ratio('default, 3 ro volumes', 'default, 3 rw volumes', 'default, 3 ro / 3 rw'));
    out.push(s.ratio('system, 1 ro volume', 'system, 1 rw volume', 'system, 1 ro / 1 rw'));
    out.push(s.ratio('default, 1 rw volume', 'default, no volume', 'default, 1 rw / none'));
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    await d.cleanup();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`volumeBench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
