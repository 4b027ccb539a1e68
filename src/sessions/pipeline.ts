// The runner of a session's pipelines: named steps, each with its undo.
// Create runs the steps up in order; when one fails, the undo of that step
// (undos tolerate what a step left half-done) and of every earlier one runs
// in reverse, and the failure names the step. Destroy is the undos of every
// step, in reverse. A re-adopted session enters create at "watch": the
// steps before it are done, so a failure there undoes them all.
import type { Logger } from 'pino';

export interface Step<C> {
  name: string;
  up(c: C): Promise<void> | void;
  /** Undo: idempotent, and safe when `up` did only part of its work or none. */
  down(c: C): Promise<void> | void;
}

export class StepFailed extends Error {
  constructor(
    readonly step: string,
    readonly error: unknown,
  ) {
    super(`step ${step}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * Up from `from` (the first step if absent); on a failure, `failed` hears
 * of it first (it may decide how the undo ends the session), then every
 * step down to the first is undone and StepFailed is thrown.
 */
export async function runUp<C>(steps: readonly Step<C>[], c: C, log: Logger, what: string, from?: string, failed?: (step: string, e: unknown) => void): Promise<void> {
  const start = from === undefined ? 0 : steps.findIndex((s) => s.name === from);
  if (start < 0) throw new Error(`${what}: no step ${from}`);
  // Where a create's time goes, per step (debug: the benchmark's breakdown reads it).
  const ms: Record<string, number> = {};
  for (let i = start; i < steps.length; i++) {
    const step = steps[i]!;
    const t0 = process.hrtime.bigint();
    try {
      await step.up(c);
      ms[step.name] = Number(process.hrtime.bigint() - t0) / 1e6;
    } catch (e) {
      log.error({ step: step.name, err: e instanceof Error ? e.message : String(e) }, `${what} step failed; undoing the steps before it`);
      failed?.(step.name, e);
      await runDown(steps.slice(0, i + 1), c, log, `undo of ${what}`);
      throw new StepFailed(step.name, e);
    }
  }
  log.debug({ step_ms: ms }, `${what} steps`);
}

/** Every step's undo, last first. The first undo that fails stops it (what is left is recorded, and the next start finishes it). */
export async function runDown<C>(steps: readonly Step<C>[], c: C, log: Logger, what: string): Promise<void> {
  for (const step of [...steps].reverse()) {
    try {
      await step.down(c);
    } catch (e) {
      log.error({ step: step.name, err: e instanceof Error ? e.message : String(e) }, `${what}: step failed`);
      throw e;
    }
  }
}
