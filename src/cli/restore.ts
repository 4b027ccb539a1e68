// `enclave session create --from FILE`: a new session with the snapshot's
// settings (flags win, restoreSettings.ts), its volumes' contents restored as
// new volumes of the caller's (volumeFill.ts), and its files replayed inside
// it (snapshot.ts). Everything is checked before anything is made (the file,
// its manifest, the merged body); what was made is undone when a later step
// fails: the session destroyed, then the new volumes removed.
import type { Session } from '../api/schemas.js';
import { ROUTES } from '../api/routes.js';
import { callRoute, CliError } from './client.js';
import { restorePlan } from './restoreSettings.js';
import { restoreSnapshot, snapshotKind } from './snapshot.js';
import { readManifest } from './snapshotHead.js';
import { fillVolumes } from './volumeFill.js';

export async function createFrom(socket: string, file: string, flags: Record<string, unknown>, useSettings: boolean): Promise<Session> {
  const kind = snapshotKind(file);
  const plan = restorePlan(flags, readManifest(file, kind), useSettings);
  for (const n of plan.notes) process.stderr.write(`enclave: note: ${n}\n`);
  const made: string[] = [];
  let session: Session | undefined;
  try {
    for (const v of plan.volumes) {
      try {
        await callRoute(socket, ROUTES.volumeCreate, { body: { name: v.name, size_mb: v.size_mb } });
      } catch (e) {
        const clash = /already have a volume named/.test((e as Error).message);
        throw new CliError(
          clash
            ? `volume ${v.name} already exists: this snapshot was restored before (remove that volume, or give --volume to mount volumes of your own)`
            : `cannot create volume ${v.name} for the snapshot's volume: ${(e as Error).message}`,
        );
      }
      made.push(v.name);
    }
    if (plan.volumes.length > 0) await fillVolumes(socket, file, kind, 'snapshot', plan.volumes);
    try {
      session = await callRoute(socket, ROUTES.sessionCreate, { body: plan.body });
    } catch (e) {
      throw useSettings ? new CliError(`${(e as Error).message} (the snapshot's settings are in the request: give the flag to replace one, or --no-settings)`) : e;
    }
    await restoreSnapshot(socket, session.id, file, kind);
    return session;
  } catch (e) {
    // A half-restored session is not what was asked for: it ends failed, saying why (session show); its new volumes go after it.
    const why = session ? (e instanceof Error ? e.message : String(e)).replace(/[\x00-\x1f\x7f]+/g, ' ').trim() : '';
    if (session) await callRoute(socket, ROUTES.sessionDestroy, { params: { session: session.id }, query: { failure: why.slice(0, 1024) } }).catch(() => undefined);
    for (const name of made) await callRoute(socket, ROUTES.volumeRemove, { params: { volume: name } }).catch(() => undefined);
    throw session ? new CliError(`${why}; session ${session.id} is failed (enclave session show ${session.id})`) : e;
  }
}
