// `enclave volume import NAME FILE [--size MB]`: a new volume of the
// caller's, filled from an archive (an `enclave volume export`, or any tar
// or tar.zst) inside a helper session (volumeFill.ts). The volume is
// created first, under the caller's budget; if the fill fails it is removed.
import { createVolumeRequest, type Volume } from '../api/schemas.js';
import { ROUTES } from '../api/routes.js';
import { formatZodError } from '../vocab/errors.js';
import { callRoute, CliError } from './client.js';
import { snapshotKind } from './snapshot.js';
import { fillVolumes } from './volumeFill.js';

export async function importVolume(socket: string, name: string, file: string, sizeMb: number | undefined): Promise<Volume> {
  const body = createVolumeRequest.safeParse({ name, ...(sizeMb === undefined ? {} : { size_mb: sizeMb }) });
  if (!body.success) throw new CliError(`volume import: ${formatZodError(body.error).replace(/'size_mb'/g, '--size')}`, 2);
  const kind = snapshotKind(file, 'import', 'an archive');
  await callRoute(socket, ROUTES.volumeCreate, { body: body.data });
  try {
    await fillVolumes(socket, file, kind, 'export', [{ name, index: 0 }]);
  } catch (e) {
    await callRoute(socket, ROUTES.volumeRemove, { params: { volume: name } }).catch(() => undefined);
    throw e;
  }
  return callRoute(socket, ROUTES.volumeShow, { params: { volume: name } });
}
