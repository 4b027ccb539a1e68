// GET /v1/sessions/{s}/snapshot: the session's writable layer and /home as a
// stream; the trailer says it is complete.
import { finished } from 'node:stream/promises';
import { ApiError } from '../../vocab/errors.js';
import { hasZstd } from '../../snapshots/snapshot.js';
import type { Handlers } from '../dispatch.js';
import { ResponseStream, SNAPSHOT_TRAILER } from '../responseStream.js';

export const snapshotHandlers: Pick<Handlers, 'snapshot'> = {
  snapshot: async (ctx, { target: row, query }, res) => {
    const compress = (query.compression ?? (hasZstd() ? 'zstd' : 'none')) === 'zstd';
    if (compress && !hasZstd()) throw new ApiError('invalid_request', 'compression zstd: the daemon host has no zstd (apt-get install zstd), ask for compression=none', 'compression');
    const out = new ResponseStream(res, { 'content-type': compress ? 'application/zstd' : 'application/x-tar', trailer: SNAPSHOT_TRAILER });
    try {
      const bytes = await ctx.sessions.snapshot(row.id, out, compress);
      out.end();
      // Settles however out ends (end()'s own callback never comes for a destroyed stream).
      const flushed = await finished(out).then(
        () => out.writableFinished,
        () => false,
      );
      // The client went away while the last bytes went out: nothing to complete.
      if (!flushed || res.destroyed) return;
      res.addTrailers({ [SNAPSHOT_TRAILER]: `complete ${bytes}` });
      res.end();
    } catch (e) {
      // Once bytes went out, a failure can only cut the stream: the client sees no trailer.
      if (out.started) res.destroy();
      else throw e;
    }
  },
};
