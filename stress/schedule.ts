// Interleaved, shuffled measurement. On a noisy 2-core machine a fixed order
// biases results (one step's deferred kernel cleanup lands on the next), so
// every operation and its baseline share one schedule in a seeded random order,
// and figures are reported as p50/p99 and as ratios against a baseline taken
// in the same run.

/** mulberry32: small, fast, and reproducible from the printed seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffle<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

export const msSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

/** Samples per operation name. */
export class Samples {
  private readonly by = new Map<string, number[]>();

  add(name: string, value: number): void {
    let xs = this.by.get(name);
    if (!xs) this.by.set(name, (xs = []));
    xs.push(value);
  }

  get(name: string): number[] {
    return this.by.get(name) ?? [];
  }

  names(): string[] {
    return [...this.by.keys()];
  }

  row(name: string, label = name): string {
    const xs = this.get(name);
    return `${label.padEnd(52)} ${pct(xs, 50).toFixed(2).padStart(8)} ${pct(xs, 99).toFixed(2).padStart(8)}   n=${xs.length}`;
  }

  /** p50 and p99 of `name` over the p50 of `base`. */
  ratio(name: string, base: string, label: string): string {
    const b = pct(this.get(base), 50);
    const r50 = pct(this.get(name), 50) / b;
    const r99 = pct(this.get(name), 99) / b;
    return `${label.padEnd(52)} ${r50.toFixed(2).padStart(7)}x ${r99.toFixed(2).padStart(7)}x`;
  }

  toJSON(): Record<string, { p50: number; p99: number; n: number }> {
    return Object.fromEntries(this.names().map((n) => [n, { p50: pct(this.get(n), 50), p99: pct(this.get(n), 99), n: this.get(n).length }]));
  }
}

/**
 * Run `counts[name]` repetitions of each step in one shuffled order. A step
 * that cannot run yet (a destroy with nothing to destroy) returns false and is
 * moved to the end of the queue; it is never skipped.
 */
export async function runShuffled(counts: Record<string, number>, step: (name: string) => Promise<boolean>, random: () => number): Promise<void> {
  const queue = shuffle(Object.entries(counts).flatMap(([name, n]) => Array.from({ length: n }, () => name)), random);
  let deferred = 0;
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (await step(name)) {
      deferred = 0;
      continue;
    }
    queue.push(name);
    if (++deferred > queue.length) throw new Error(`schedule stuck: ${queue.join(', ')} cannot run`);
  }
}

/** Run `f` over `items`, at most `width` at a time. */
export async function pool<T>(items: T[], width: number, f: (x: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await f(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

/** An integer command-line option within [min, max]; otherwise a one-line message and exit 2. */
export function intOption(tool: string, name: string, raw: string | undefined, min: number, max: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`${tool}: --${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(raw)})\n`);
    process.exit(2);
  }
  return n;
}
