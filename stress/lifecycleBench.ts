// Stop and start against what a user would do without them, through the
// CLI as a user types it (every figure pays the same CLI start-up):
//  - stop vs snapshot -o FILE and destroy (files kept by hand);
//  - start vs create --from FILE (brought back by hand) and vs a bare create.
// Both sessions carry the same 32 MiB of incompressible data in their layer
// and /home; each round runs the three kinds in a shuffled order.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TestDaemon } from '../test/integration/harness.js';
import { msSince, type Samples } from './schedule.js';

const FILL = 'head -c 25165824 /dev/urandom > /usr/local/blob && head -c 8388608 /dev/urandom > /home/blob && echo ok';

async function cli(d: TestDaemon, args: string[]): Promise<{ ms: number; out: string }> {
  const t0 = process.hrtime.bigint();
  const r = await d.cli(args);
  if (r.code !== 0) throw new Error(`enclave ${args.join(' ')}: ${r.stderr.trim()}`);
  return { ms: msSince(t0), out: r.stdout.trim() };
}

export async function benchLifecycle(d: TestDaemon, s: Samples, rounds: number, random: () => number): Promise<void> {
  const kept = await d.create({ name: 'bench-stop', root_mb: 128 });
  let byHand = (await d.create({ name: 'bench-byhand', root_mb: 128 })).id;
  for (const name of ['bench-stop', 'bench-byhand']) {
    const fill = await d.sh(name, FILL);
    if (fill.stdout !== 'ok\n') throw new Error(`cannot fill ${name}: ${fill.stderr}`);
  }
  const file = join(d.dir, 'bench-byhand.snap');
  try {
    for (let r = 0; r < rounds; r++) {
      for (const kind of ['stop-start', 'by-hand', 'create'].sort(() => random() - 0.5)) {
        if (kind === 'stop-start') {
          s.add('stop', (await cli(d, ['session', 'stop', kept.id])).ms);
          s.add('start', (await cli(d, ['session', 'start', kept.id])).ms);
        } else if (kind === 'by-hand') {
          const snap = await cli(d, ['session', 'snapshot', byHand, '-o', file]);
          const gone = await cli(d, ['session', 'destroy', byHand]);
          s.add('snapshot-destroy', snap.ms + gone.ms);
          const made = await cli(d, ['session', 'create', '--name', 'bench-byhand', '--root-size', '128', '--from', file]);
          s.add('create-from', made.ms);
          byHand = made.out;
          rmSync(file, { force: true });
        } else {
          const made = await cli(d, ['session', 'create', '--root-size', '128']);
          s.add('create-cli', made.ms);
          await d.destroy(made.out);
        }
      }
    }
  } finally {
    rmSync(file, { force: true });
    await d.destroy(kept.id).catch(() => undefined);
    await d.destroy(byHand).catch(() => undefined);
  }
}

/** Its rows of bench.ts's table. */
export function lifecycleRows(s: Samples): string[] {
  return [
    s.row('stop', 'session stop, 32 MiB in layer + /home (CLI)'),
    s.row('snapshot-destroy', 'by hand: snapshot -o FILE, then destroy (CLI)'),
    s.row('start', 'session start of the same (CLI)'),
    s.row('create-from', 'by hand: create --from FILE (CLI)'),
    s.row('create-cli', 'session create, empty (CLI)'),
  ];
}

/** Its ratios. */
export function lifecycleRatios(s: Samples): string[] {
  return [
    s.ratio('stop', 'snapshot-destroy', 'stop / snapshot + destroy'),
    s.ratio('start', 'create-from', 'start / create --from'),
    s.ratio('start', 'create-cli', 'start / create (empty)'),
  ];
}
