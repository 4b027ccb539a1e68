// exec and attach: WebSocket upgrades into a running session. Both hold a
// stream slot of the caller's (its budget, or api.max_exec_streams_per_caller);
// attach also holds a viewer slot, reserved before the console starts, so
// concurrent upgrades cannot race past a cap.
import type { Duplex } from 'node:stream';
import type { Caller } from '../../access/guard.js';
import { ApiError } from '../../vocab/errors.js';
import { ATTACH_PROTOCOL } from '../../api/protocol.js';
import { oomReason, runExec, startPipedExec } from '../exec.js';
import { CapReached } from '../streams.js';
import { checkCommandUser } from '../../sessions/command.js';
import type { Handlers } from '../dispatch.js';
import type { Context } from '../route.js';

/** Whose exec and attach streams these are, for the per-caller cap: the user, however it came (socket or TCP). */
const streamKey = (c: Caller) => `uid ${c.uid}`;

/** A stream slot of the caller's, or a 429 recorded in the audit trail with the cap that refused it. */
export function holdStream(ctx: Context, action: 'session.exec' | 'session.attach' | 'session.cp', row: { id: string; owner_uid: number | null }, perSession: boolean, caller: Caller, socket: Duplex): void {
  try {
    ctx.streams.hold(perSession ? row.id : null, streamKey(caller), socket, ctx.budgets.streams(caller));
  } catch (e) {
    if (e instanceof CapReached) ctx.access.refuse(caller, action, { kind: 'session', id: row.id, owner_uid: row.owner_uid }, e.rule, e);
    throw e;
  }
}

function running(state: string, id: string): void {
  if (state !== 'running') throw new ApiError('conflict', `session ${id} is ${state}, not running`);
}

export const terminalHandlers: Pick<Handlers, 'exec' | 'attach'> = {
  attach: {
    detail: ({ query }) => `role ${query.role}`,
    run: async (ctx, { caller, target: row, query, req, log }, up) => {
      running(row.state, row.id);
      ctx.consoles.admit(row.id, row.owner_uid, caller, up.socket);
      holdStream(ctx, 'session.attach', row, false, caller, up.socket);
      const { role, resume, cols, rows } = query;
      const size = cols && rows ? { cols, rows } : undefined;
      const console = await ctx.consoles.ensure(row, size);
      // A console outlives its viewers: nothing to end if this one went away.
      ctx.accept(req, up, () => undefined, (ws) => {
        log.info({ role, protocol: ws.protocol }, 'attach');
        console.attach(ws, role, ws.protocol === ATTACH_PROTOCOL, resume, size);
      });
    },
  },
  exec: {
    detail: ({ query }) => `${query.tty ? 'tty ' : ''}${query.user !== undefined ? `as ${query.user} ` : ''}${query.command.join(' ')}`,
    run: async (ctx, { caller, target: row, query: q, req, log }, up) => {
      checkCommandUser(row.profile, ctx.config.ids.size, q.user);
      const agent = ctx.sessions.agentFor(row);
      holdStream(ctx, 'session.exec', row, true, caller, up.socket);
      if (q.tty) {
        const size = q.cols && q.rows ? { cols: q.cols, rows: q.rows } : undefined;
        const one = await ctx.consoles.startOneOff(row, q, size);
        return ctx.accept(req, up, () => one.kill(), (ws) => {
          log.info({ argv0: q.command[0], user: q.user }, 'exec --tty');
          one.attach(ws, 'rw', ws.protocol === ATTACH_PROTOCOL, undefined, size);
        });
      }
      // The session's OOM kills so far: more by the time the command fails, and it says so.
      const oomBase = ctx.sessions.reports.oomKillsNow(row.id);
      const exec = await startPipedExec(agent, row.hostname, q);
      const reason = (exit: { code: number | null; signal: number | null }) => (exit.code === 0 ? undefined : oomReason(ctx.sessions.reports.oomSince(row.id, oomBase), exit));
      ctx.accept(req, up, () => exec.ok && exec.agent.signal(exec.id, 9), (ws) => {
        log.info({ argv0: q.command[0], user: q.user }, 'exec');
        runExec({ ws, exec, stdout: q.stdout, stderr: q.stderr, log, reason });
      });
    },
  },
};
