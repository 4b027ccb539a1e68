// Idle stop's rule, with the clock and the counters in the test's hands.
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { IdleStop } from '../../src/sessions/idle.js';
import type { SessionRow } from '../../src/store/sessionStore.js';

function rig(timeoutS: number) {
  const state = { cpu: 0, inUse: false, stops: [] as string[] };
  const idle = new IdleStop({
    candidates: () => [{ id: 's-0000000001', idle_timeout_s: timeoutS } as SessionRow],
    inUse: () => state.inUse,
    cpuNs: () => state.cpu,
    stop: async (_id, because) => void state.stops.push(because),
    log: pino({ level: 'silent' }),
  });
  return { idle, state };
}

describe('idle stop', () => {
  it('stops a session idle for its timeout, once, saying why', async () => {
    const { idle, state } = rig(10);
    for (let t = 0; t <= 9_000; t += 1000) idle.look(t);
    expect(state.stops).toEqual([]);
    idle.look(10_000);
    idle.look(11_000);
    await Promise.resolve();
    expect(state.stops).toEqual(['idle for 10s (its idle timeout is 10s): no viewer, no exec, CPU under 1% of one CPU']);
  });

  it('a viewer or an exec, or CPU above 1% of one CPU, starts the count again', () => {
    const { idle, state } = rig(10);
    idle.look(0);
    idle.look(8_000);
    state.inUse = true;
    idle.look(9_000);
    state.inUse = false;
    idle.look(18_000);
    expect(state.stops).toEqual([]);
    // 20 ms of CPU in one second is 2%: working.
    state.cpu += 20e6;
    idle.look(19_000);
    idle.look(28_000);
    expect(state.stops).toEqual([]);
    // 5 ms in a second is idle.
    state.cpu += 5e6;
    idle.look(29_000);
    expect(state.stops).toHaveLength(1);
  });

  it('looks a fifth of the shortest timeout apart, within 250 ms and 10 s', () => {
    expect(rig(2).idle.look(0)).toBe(400);
    expect(rig(1).idle.look(0)).toBe(250);
    expect(rig(3600).idle.look(0)).toBe(10_000);
  });
});
