// The fleet's keys as a call reads them: where each session is placed, each
// member's endpoint and lease, the sessions declared lost. They come from the
// watched copy (watched.ts), as fresh as a read of etcd, and each value is
// parsed once (parsedValues.ts): a forwarded show used to parse every
// placement of the fleet (900 sessions: a few ms a call).
import type { Logger } from 'pino';
import type { Session } from '../api/schemas.js';
import { desiredSchema, key, lostSchema, memberSchema, placementOfKey, prefix, type Desired, type Lost } from './keys.js';
import { ParsedValues } from './parsedValues.js';
import { lostView } from './views.js';
import type { WatchedFleet } from './watched.js';

export type Endpoints = Map<string, { endpoint: string; alive: boolean; registered_at: string }>;

/** What FleetKeys.view() read (one read of the watched copy, or of etcd): each question waits on the part it needs. */
export class FleetReads {
  constructor(
    readonly placements: Promise<Array<{ node: string; d: Desired }>>,
    readonly endpoints: Promise<Endpoints>,
    readonly lost: Promise<Array<{ rec: Lost; view: Session }>>,
  ) {
    // Read at once, maybe never awaited (the call needed only another): not an unhandled rejection.
    for (const p of [placements, endpoints, lost]) p.catch(() => undefined);
  }
}

/** What `f` gave, or how it failed (unwrap() gives it back, or throws it). */
const outcome = <T>(f: () => T): { ok: T } | { err: Error } => {
  try {
    return { ok: f() };
  } catch (e) {
    return { err: e as Error };
  }
};
const unwrap = <T>(r: { ok: T } | { err: Error }): T => {
  if ('err' in r) throw r.err;
  return r.ok;
};

export class FleetKeys {
  /** Each value as parsed last: parsed again only when it changed. */
  private readonly desired = new ParsedValues(desiredSchema);
  private readonly members = new ParsedValues(memberSchema);
  private readonly lostRecords = new ParsedValues(lostSchema);

  constructor(
    private readonly watched: WatchedFleet,
    private readonly log: Logger,
  ) {}

  /**
   * One call's reads of the fleet (from the watched copy, as fresh as etcd),
   * shared by every question the call asks (is it pending, on an
   * unreachable node, lost, where).
   */
  view(): FleetReads {
    // The copy's own maps (not copies of its thousand placements), each part made from them as the read
    // answers, before anything else runs (the watch changes them in place); one that fails fails alone.
    const made = this.watched.read(prefix.desired, prefix.members, prefix.alive, prefix.lost).then(({ maps: [desired, members, alive, lost] }) => ({
      placements: outcome(() => this.placements(desired!)),
      endpoints: outcome(() => this.endpoints(members!, alive!)),
      lost: outcome(() => this.lost(lost!)),
    }));
    return new FleetReads(
      made.then((m) => unwrap(m.placements)),
      made.then((m) => unwrap(m.endpoints)),
      made.then((m) => unwrap(m.lost)),
    );
  }

  /** Every placement: the node, and what it is to run. */
  placements(all: ReadonlyMap<string, string>): Array<{ node: string; d: Desired }> {
    this.desired.keepOnly(all);
    return [...all].map(([k, v]) => ({ node: placementOfKey(k).node, d: this.desired.get(k, v) }));
  }

  /** Every member's endpoint and whether it holds its lease. */
  endpoints(members: ReadonlyMap<string, string>, alive: ReadonlyMap<string, string>): Endpoints {
    this.members.keepOnly(members);
    return new Map([...members].map(([k, v]) => this.members.get(k, v)).map((m) => [m.name, { endpoint: m.endpoint, alive: alive.has(key.alive(m.name)), registered_at: m.registered_at }]));
  }

  /** The sessions the fleet declared lost, as their owners see them until they destroy them. */
  lost(all: ReadonlyMap<string, string>): Array<{ rec: Lost; view: Session }> {
    this.lostRecords.keepOnly(all);
    return [...all].flatMap(([k, v]) => {
      try {
        const rec = this.lostRecords.get(k, v);
        const view = lostView(rec);
        return view ? [{ rec, view }] : [];
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'ignoring a lost-session record that does not parse');
        return [];
      }
    });
  }
}
