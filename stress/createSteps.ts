// Where a cold create's time goes: N sequential creates (bridge, the default
// profile) on a private daemon, each step's time from the daemon's debug log
// (src/sessions/pipeline.ts), p50 and p99 per step, beside the API's whole.
//   node dist/stress/createSteps.js [--creates N]
import { parseArgs } from 'node:util';
import { TestDaemon } from '../test/integration/harness.js';
import { msSince, pct } from './schedule.js';

const { values } = parseArgs({ options: { creates: { type: 'string', default: '30' } } });

async function main(): Promise<void> {
  const d = new TestDaemon({ slots: 64 });
  await d.start();
  try {
    await d.destroy((await d.create({})).id); // the first waits for start-up's scan of /usr
    const whole: number[] = [];
    for (let i = 0; i < Number(values.creates); i++) {
      const t0 = process.hrtime.bigint();
      const s = await d.create({});
      whole.push(msSince(t0));
      await d.destroy(s.id);
    }
    const steps = new Map<string, number[]>();
    for (const line of d.log().split('\n')) {
      if (!line.includes('"msg":"create steps"')) continue;
      for (const [k, v] of Object.entries((JSON.parse(line) as { step_ms: Record<string, number> }).step_ms)) steps.set(k, [...(steps.get(k) ?? []), v]);
    }
    const row = (label: string, xs: number[]) => `${label.padEnd(24)} ${pct(xs, 50).toFixed(2).padStart(8)} ${pct(xs, 99).toFixed(2).padStart(8)}`;
    const out = [`${'create step (ms)'.padEnd(24)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}`, ...[...steps].map(([k, xs]) => row(k, xs.slice(1))), row('API create, whole', whole)];
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    await d.cleanup();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`createSteps: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
