// Filling new volumes from an archive (`volume import`, and the volumes of
// `session create --from` a snapshot that holds them). The archive is
// hostile input, so nothing of it is unpacked on the host: a helper session
// of the caller's (no network, small limits, under its budget like any
// other) mounts the new volumes, and tar unpacks the stream the CLI sends in
// there, as the session's root and under its confinement. Owners land in the
// volumes' own ID space through the idmapped mounts, as every session's
// writes do; tar refuses names with "..", and whatever a crafted archive
// reaches besides the volumes is the helper's own, gone with it. Each volume
// is bounded by its size (ENOSPC), the helper by its limits. The helper is
// destroyed however the fill ends.
import { createReadStream, statSync } from 'node:fs';
import { Transform } from 'node:stream';
import { volumeDir } from '../api/manifest.js';
import { ROUTES } from '../api/routes.js';
import { callRoute, CliError } from './client.js';
import { progress } from './download.js';
import { runExecClient } from './execClient.js';

/** Where the helper mounts volume i. */
const FILL_AT = '/mnt/fill';

/** Small: tar and zstd need little; the caller's budget must hold it beside its sessions. */
const HELPER = { network: 'none', profile: 'workspace', memory_mb: 256, pids: 64, cpu_percent: 50, tmp_mb: 16, home_mb: 16, root_mb: 16 } as const;

/**
 * $1 zstd|none, $2 export|snapshot. An export is one volume's tree (./...);
 * a snapshot holds volume i under .enclave/volumes/i, which lands in
 * FILL_AT/i. A failed zstd is reported even though tar reads on.
 */
const FILL = `set -eu
{ if [ "$1" = zstd ]; then zstd -dcq || touch /tmp/.unzstd-failed; else cat; fi; } |
if [ "$2" = snapshot ]; then
  tar -x -f - -p --numeric-owner --same-owner -C ${FILL_AT} --strip-components=2 --anchored --wildcards '${volumeDir(0).replace(/0$/, '')}*'
else
  tar -x -f - -p --numeric-owner --same-owner -C ${FILL_AT}/0
fi
test ! -e /tmp/.unzstd-failed || { echo "the archive is not valid zstd" >&2; exit 4; }`;

export interface FillTarget {
  /** The new volume (the caller's own). */
  name: string;
  /** Its archive index (a snapshot's volumes); 0 for an export. */
  index: number;
}

/** Unpack `file` (an export of one volume, or a snapshot's volumes) into the given new volumes. */
export async function fillVolumes(socket: string, file: string, kind: 'zstd' | 'none', source: 'export' | 'snapshot', targets: FillTarget[]): Promise<void> {
  const volumes = targets.map((t) => ({ name: t.name, target: `${FILL_AT}/${t.index}` }));
  let helper: string;
  try {
    helper = (await callRoute(socket, ROUTES.sessionCreate, { body: { ...HELPER, volumes } })).id;
  } catch (e) {
    throw new CliError(`cannot start the helper session that unpacks ${file} into ${targets.map((t) => t.name).join(', ')}: ${(e as Error).message}`);
  }
  try {
    const p = progress(`unpack into ${targets.map((t) => t.name).join(', ')}`, statSync(file).size);
    const counted = createReadStream(file).pipe(
      new Transform({
        transform(chunk: Buffer, _enc, done) {
          p.add(chunk.length);
          done(null, chunk);
        },
      }),
    );
    const code = await runExecClient({ socket, session: helper, command: ['sh', '-c', FILL, 'fill', kind, source], env: [], stdin: counted });
    p.done();
    if (code !== 0) throw new CliError(`unpacking ${file} into ${targets.map((t) => t.name).join(', ')} failed (exit ${code}; "No space left on device" means it needs a larger volume: --size)`);
  } finally {
    await callRoute(socket, ROUTES.sessionDestroy, { params: { session: helper } }).catch(() => undefined);
  }
}
