// A session made or started with a kept console (--console) whose console
// cannot start: the create or the start is undone, and the caller hears
// what was undone (src/daemon/attach.ts Consoles.keep). The create's path
// runs on a real kernel in failClosed.test.ts; this covers the start's and
// an undo that itself fails.
import { afterEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { Consoles } from '../../src/daemon/attach.js';
import type { Config } from '../../src/config/schema.js';
import type { SessionManager } from '../../src/sessions/manager.js';
import type { SessionRow } from '../../src/store/sessionStore.js';
import type { Budgets } from '../../src/access/budgets.js';
import type { AccessGuard } from '../../src/access/guard.js';
import { ApiError } from '../../src/vocab/errors.js';

const row = { id: 's-00000000c1' } as SessionRow;

function consolesWith(sessions: { destroy?: () => Promise<void>; stopSession?: () => Promise<unknown> }, failure: Error): { consoles: Consoles; undo: { destroy: ReturnType<typeof vi.fn>; stop: ReturnType<typeof vi.fn> } } {
  const destroy = vi.fn(sessions.destroy ?? (() => Promise.resolve()));
  const stop = vi.fn(sessions.stopSession ?? (() => Promise.resolve({})));
  const manager = { destroy, stopSession: stop } as unknown as SessionManager;
  const consoles = new Consoles({} as Config, manager, pino({ level: 'silent' }), {} as Budgets, {} as AccessGuard);
  vi.spyOn(consoles, 'ensure').mockRejectedValue(failure);
  return { consoles, undo: { destroy, stop } };
}

/** What `p` was rejected with, which must be an ApiError. */
async function thrown(p: Promise<unknown>): Promise<ApiError> {
  const e: unknown = await p.then(() => new Error('not thrown'), (x: unknown) => x);
  expect(e).toBeInstanceOf(ApiError);
  return e as ApiError;
}

describe('a kept console that cannot start', () => {
  let made: Consoles | undefined;
  afterEach(() => made?.closeAll());

  it('ends the created session failed, at once, saying why', async () => {
    const { consoles, undo } = consolesWith({}, new ApiError('invalid_request', 'no such command: /bin/sh', 'command'));
    made = consoles;
    const e = await thrown(consoles.keep(row, 'create'));
    expect(undo.destroy).toHaveBeenCalledWith(row.id, 'its console could not start: no such command: /bin/sh', 0);
    expect(undo.stop).not.toHaveBeenCalled();
    // The shell is the session root's fault, not a field of the request.
    expect([e.code, e.field, e.message]).toEqual(['internal', undefined, `session ${row.id}: its console could not start: no such command: /bin/sh; it was ended (failed)`]);
  });

  it('stops the started session again, keeping the code of what failed', async () => {
    const { consoles, undo } = consolesWith({}, new ApiError('exhausted', 'too many processes'));
    made = consoles;
    const e = await thrown(consoles.keep(row, 'start'));
    expect(undo.stop).toHaveBeenCalledWith(row.id, 'its console could not start: too many processes');
    expect(undo.destroy).not.toHaveBeenCalled();
    expect([e.code, e.message]).toEqual(['exhausted', `session ${row.id}: its console could not start: too many processes; it was stopped again`]);
  });

  it('says so when the undo fails too', async () => {
    const { consoles } = consolesWith({ stopSession: () => Promise.reject(new Error('disk full')) }, new Error('pty gone'));
    made = consoles;
    const e = await thrown(consoles.keep(row, 'start'));
    expect(e.message).toBe(`session ${row.id}: its console could not start: pty gone; it could not be stopped (disk full): destroy it`);
  });
});
