// Owned objects, found for a caller. Names are per owner: a bare name is the
// caller's own object, UID:NAME another owner's, and a session may also be
// named by its id. A name that finds nothing says so without naming anyone
// else's objects; whether the caller may act on what it found is the access
// check's (the dispatcher's), and a refused lookup by name reads as this
// same "not found".
import { ApiError } from '../vocab/errors.js';
import type { SessionManager } from '../sessions/manager.js';
import type { SessionRow } from '../store/sessionStore.js';
import type { VolumeRow } from '../store/volumeStore.js';
import type { Volumes } from '../volumes/volumes.js';
import { refText, type Ref } from '../vocab/names.js';
import type { Caller } from '../access/guard.js';

/** A secret a route acts on: whose, which, and how the caller wrote it (it may not exist yet). */
export interface SecretTarget {
  owner: number;
  name: string;
  ref: string;
}

/** The same words whether nothing has that name or the caller may not see what has it. */
export function notFound(kind: 'session' | 'volume' | 'secret', r: Ref): ApiError {
  if (kind === 'volume') return new ApiError('not_found', `no volume named ${refText(r)}`);
  if (kind === 'secret') return new ApiError('not_found', `no secret '${refText(r)}' in the store`);
  return new ApiError('not_found', r.kind === 'id' ? `no session ${r.id}` : `no session '${refText(r)}'`);
}

export class Objects {
  constructor(
    private readonly sessions: SessionManager,
    private readonly volumes: Volumes,
  ) {}

  session(r: Ref, caller: Caller): SessionRow {
    const row = r.kind === 'id' ? this.sessions.find(r.id) : this.sessions.byName(r.owner ?? caller.uid, r.name);
    if (!row) throw notFound('session', r);
    return row;
  }

  volume(r: Ref, caller: Caller): VolumeRow {
    const v = r.kind === 'id' ? this.volumes.get(r.id) : this.volumes.byName(r.owner ?? caller.uid, r.name);
    if (!v || v.state !== 'ready') throw notFound('volume', r);
    return v;
  }

  secret(r: Ref, caller: Caller): SecretTarget {
    if (r.kind !== 'name') throw notFound('secret', r);
    return { owner: r.owner ?? caller.uid, name: r.name, ref: refText(r) };
  }
}
