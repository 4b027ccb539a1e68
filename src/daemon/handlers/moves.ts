// A drain's move, the receiving end (fleet mode; nodes only, see the route):
// the drained node placed the session here, where the worker made it by its
// id, running and empty; the drained node now sends its stored files (the
// stop's snapshot). They are restored into it as a start restores its own,
// and it is stopped here: it ends as it was, stopped, with its files, on
// this node.
import { closeSync, constants, createWriteStream, mkdirSync, openSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { restoreFiles } from '../../sessions/stored.js';
import { ApiError } from '../../vocab/errors.js';
import type { Handlers } from '../dispatch.js';

export const moveHandlers: Pick<Handlers, 'sessionMovedIn'> = {
  sessionMovedIn: async (ctx, { target: row, query, req, log }) => {
    if (row.state !== 'running') throw new ApiError('conflict', `session ${row.id} is ${row.state} here: only a session made for the move takes its files`);
    const dir = join(ctx.config.state_dir, 'tmp');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `moved-in-${row.id}.${randomBytes(8).toString('hex')}`);
    const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    let open = true;
    try {
      await pipeline(req, createWriteStream('', { fd, autoClose: false }));
      closeSync(fd);
      open = false;
      await restoreFiles(ctx.sessions.agentFor(row), row.hostname, { path, zstd: query.zstd === '1' }, ctx.config.sessions.snapshot_timeout_ms);
      const s = await ctx.sessions.stopSession(row.id, `moved here from node ${query.from} (a drain)`);
      log.info({ from: query.from }, 'session moved here: its files restored, stopped');
      return ctx.fleet ? { ...s, node: ctx.fleet.node } : s;
    } finally {
      if (open) closeSync(fd);
      rmSync(path, { force: true });
    }
  },
};
