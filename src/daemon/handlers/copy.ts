// `enclave session cp`: a tar streamed between the CLI and a command the
// session's init runs (src/sessions/copyCommand.ts). The daemon opens no
// host path for it and reads nothing of the tar: it relays bytes, at most
// api.max_copy_mb either way, on an exec stream slot of the caller's. The
// CLI, running as the caller, reads and writes the host side.
import { copyArgv } from '../../sessions/copyCommand.js';
import { ApiError } from '../../vocab/errors.js';
import { runExec, startPipedExec } from '../exec.js';
import type { Handlers } from '../dispatch.js';
import { holdStream } from './terminal.js';

export const copyHandlers: Pick<Handlers, 'cp'> = {
  cp: {
    detail: ({ query: q }) => `${q.direction} ${q.path}${q.archive ? ' (archive)' : ''}`,
    run: async (ctx, { caller, target: row, query: q, req, log }, up) => {
      // A stopped session's files are stored away: nothing to run a tar in.
      if (row.state === 'stopped') throw new ApiError('conflict', `session ${row.name ?? row.id} is stopped; start it first (enclave session start ${row.id})`);
      const agent = ctx.sessions.agentFor(row);
      holdStream(ctx, 'session.cp', row, true, caller, up.socket);
      const command = copyArgv(q);
      const exec = await startPipedExec(agent, row.hostname, { command, stdin: q.direction === 'in', stdout: true, stderr: true, tty: false, env: [], cwd: '/' });
      const cap = { bytes: ctx.config.api.max_copy_mb * 1024 * 1024, key: 'api.max_copy_mb' };
      ctx.accept(req, up, () => exec.ok && exec.agent.signal(exec.id, 9), (ws) => {
        log.info({ direction: q.direction, archive: q.archive }, 'cp');
        runExec({ ws, exec, stdout: true, stderr: true, log, cap });
      });
    },
  },
};
