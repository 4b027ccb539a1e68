// Health, metrics and the browser page's tickets, sign-in and sign-out:
// public routes (metrics' per-session series: the sessions the caller may see).
import { ApiError } from '../../vocab/errors.js';
import { Replied, type Handlers } from '../dispatch.js';
import { renderMetrics } from '../metrics.js';

export const VERSION = '0.1.0';

export const systemHandlers: Pick<Handlers, 'health' | 'whoami' | 'metrics' | 'tickets' | 'login' | 'logout' | 'daemonReload'> = {
  whoami: (_ctx, { caller }) => ({ uid: caller.uid, gids: [...caller.gids], via: caller.via }),
  health: (ctx) => ({ status: 'ok', version: VERSION, sessions: ctx.sessions.countActive(), pid: process.pid }),
  metrics: (ctx, { caller }, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    // Per-session series only of the sessions the caller may look at: session ids are not for everyone on the socket.
    res.end(renderMetrics(ctx.sessions, (row) => ctx.access.visible(caller, row, 'session.show'), ctx.fleet?.reach && { ...ctx.fleet.reach.answers.counts, etcd: ctx.fleet.reach.published.counts.lists }, ctx.fleet?.lists.counts, ctx.fleet?.aheadCounts));
  },
  daemonReload: (ctx) => ctx.reload(),
  tickets: (ctx) => {
    if (!ctx.auth) throw new ApiError('not_found', 'no such endpoint: POST /v1/tickets');
    return ctx.auth.issueTicket();
  },
  login: (ctx, { req }) => {
    if (!ctx.auth) throw new ApiError('not_found', 'no such endpoint: POST /v1/login');
    const { setCookie, expires, uid } = ctx.auth.login(req);
    ctx.log.info({ uid, expires: expires.toISOString() }, 'browser signed in');
    return new Replied(200, { uid, expires_at: expires.toISOString() }, { 'set-cookie': setCookie });
  },
  logout: (ctx, { req }) => {
    if (!ctx.auth) throw new ApiError('not_found', 'no such endpoint: POST /v1/logout');
    ctx.log.info('browser signed out');
    return new Replied(200, { signed_out: true as const }, { 'set-cookie': ctx.auth.logout(req) });
  },
};
