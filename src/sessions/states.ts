// A session's states and the transitions between them: the only table that
// says where a session may go next, and what takes it there. Every state
// change the daemon makes goes through checkTransition (src/sessions/session.ts).
//
//   creating --launched--> running --destroy--> stopping --released--> stopped
//      |                      |                    |
//      +--a step failed--+    +--init exited--+    +--ended with a reason--> failed
//                        v                    v
//                      failed               failed
import type { SessionState } from '../api/schemas.js';

export const TRANSITIONS: Readonly<Record<SessionState, Partial<Record<SessionState, string>>>> = {
  creating: {
    running: 'its init is up and watched',
    failed: 'a create step failed (the steps before it are undone), or the daemon stopped mid-create',
  },
  running: {
    stopping: 'destroy was asked, or the daemon ends it (out of memory, a port it cannot publish)',
    failed: 'its init exited by itself, or cannot be re-adopted',
  },
  stopping: {
    stopped: 'destroyed',
    failed: 'ended by the daemon with a reason',
  },
  // Released again (a destroy of an ended session frees anything a crash left).
  stopped: { stopped: 'released again' },
  failed: { failed: 'released again' },
};

export class TransitionError extends Error {}

/** Throws unless the table has from -> to. */
export function checkTransition(id: string, from: SessionState, to: SessionState): void {
  if (!TRANSITIONS[from][to]) throw new TransitionError(`session ${id}: no transition from ${from} to ${to}`);
}
