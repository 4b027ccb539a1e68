// A session's states and the transitions between them: the only table that
// says which states there are, where a session may go next, and what takes
// it there. The API's and the store's state lists derive from it; every
// state change the daemon makes goes through checkTransition
// (src/sessions/session.ts). A new state is a row here, plus the migration
// that lets the sessions table hold it. A leaf.
//
//   creating --launched--> running --destroy--> stopping --released--> stopped
//      |                      |                    |
//      +--a step failed--+    +--init exited--+    +--ended with a reason--> failed
//                        v                    v
//                      failed               failed
const table = {
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
} as const;

export type SessionState = keyof typeof table;
export const TRANSITIONS: Readonly<Record<SessionState, Partial<Record<SessionState, string>>>> = table;
/** Every state, in the table's order. */
export const SESSION_STATES = Object.keys(table) as [SessionState, ...SessionState[]];

/** The states of a session that holds kernel objects: it counts against every cap, and its name is taken. */
export const LIVE_STATES: readonly SessionState[] = ['creating', 'running', 'stopping'];
/** The same, as an SQL list: ('creating','running','stopping'). */
export const LIVE_SQL = `(${LIVE_STATES.map((s) => `'${s}'`).join(',')})`;

export class TransitionError extends Error {}

/** Throws unless the table has from -> to. */
export function checkTransition(id: string, from: SessionState, to: SessionState): void {
  if (!TRANSITIONS[from][to]) throw new TransitionError(`session ${id}: no transition from ${from} to ${to}`);
}
