// GET /v1/sessions/{s}/snapshot: the session's writable layer and /home (and
// with volumes=1 its volumes' contents) as a stream; the trailer says it is
// complete.
import { ApiError } from '../../vocab/errors.js';
import { hasZstd } from '../../snapshots/snapshot.js';
import type { Handlers } from '../dispatch.js';
import { SNAPSHOT_TRAILER, streamWithTrailer } from '../responseStream.js';

export const snapshotHandlers: Pick<Handlers, 'snapshot'> = {
  snapshot: async (ctx, { target: row, query }, res) => {
    const compress = (query.compression ?? (hasZstd() ? 'zstd' : 'none')) === 'zstd';
    if (compress && !hasZstd()) throw new ApiError('invalid_request', 'compression zstd: the daemon host has no zstd (apt-get install zstd), ask for compression=none', 'compression');
    await streamWithTrailer(res, compress ? 'application/zstd' : 'application/x-tar', SNAPSHOT_TRAILER, (out) => ctx.sessions.snapshot(row.id, out, compress, { volumes: query.volumes ?? false }));
  },
};
