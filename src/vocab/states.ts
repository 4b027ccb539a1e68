// A session's states and the transitions between them: the only table that
// says which states there are, where a session may go next, and what takes
// it there. The API's and the store's state lists derive from it; every
// state change the daemon makes goes through checkTransition
// (src/sessions/session.ts). A new state is a row here, plus the migration
// that lets the sessions table hold it. A leaf.
//
//   creating --> running --stop--> stopping --> stopped --start--> starting --> running
//      |           |  ^                 |            |                   |
//      |           |  +---not stored----+--init died--> failed              +--a step failed--> stopped
//      |           +--destroy--> destroying <--------+ destroy
//      |           |               +--> destroyed
//      |           |               +--> failed (ended by the daemon with a reason)
//      |           +--init exited--> failed
//      +--a step failed--> failed
const table = {
  creating: {
    running: 'its init is up and watched',
    failed: 'a create step failed (the steps before it are undone), or the daemon stopped mid-create',
  },
  running: {
    stopping: 'stop was asked, or it was idle for its idle timeout',
    destroying: 'destroy was asked, or the daemon ends it (out of memory, a port it cannot publish)',
    failed: 'its init exited by itself, or cannot be re-adopted',
  },
  stopping: {
    stopped: 'its files are stored and its processes ended',
    running: 'its files could not be stored (or the daemon stopped first): it runs on',
    failed: 'its init died while it was being stopped',
  },
  stopped: {
    starting: 'start was asked',
    destroying: 'destroy was asked: its stored files go',
  },
  starting: {
    running: 'its init is up and its files are back',
    stopped: 'a start step failed (the steps before it are undone); its stored files are kept',
  },
  destroying: {
    destroyed: 'destroyed',
    failed: 'ended by the daemon with a reason',
  },
  // Released again (a destroy of an ended session frees anything a crash left).
  destroyed: { destroyed: 'released again' },
  failed: { failed: 'released again' },
} as const;

export type SessionState = keyof typeof table;
export const TRANSITIONS: Readonly<Record<SessionState, Partial<Record<SessionState, string>>>> = table;
/** Every state, in the table's order. */
export const SESSION_STATES = Object.keys(table) as [SessionState, ...SessionState[]];

/** A session that is its owner's: its name is taken, it holds its address, ports, volumes and secrets (a stopped one too). */
export const LIVE_STATES: readonly SessionState[] = ['creating', 'running', 'stopping', 'stopped', 'starting', 'destroying'];
/** A session with processes and kernel objects (cgroups, an ID slot, a link): it counts against the host's caps and the owner's resource budget. */
export const ACTIVE_STATES: readonly SessionState[] = ['creating', 'running', 'stopping', 'starting', 'destroying'];
/** Ended for good: only its history row is left. */
export const ENDED_STATES: readonly SessionState[] = ['destroyed', 'failed'];

const sqlList = (states: readonly SessionState[]) => `(${states.map((s) => `'${s}'`).join(',')})`;
/** The same lists, for SQL: ('creating','running',...). */
export const LIVE_SQL = sqlList(LIVE_STATES);
export const ACTIVE_SQL = sqlList(ACTIVE_STATES);
export const ENDED_SQL = sqlList(ENDED_STATES);

export class TransitionError extends Error {}

/** Throws unless the table has from -> to. */
export function checkTransition(id: string, from: SessionState, to: SessionState): void {
  if (!TRANSITIONS[from][to]) throw new TransitionError(`session ${id}: no transition from ${from} to ${to}`);
}
