// Health, metrics and the browser page's tickets: public routes (metrics'
// per-session series: the sessions the caller may see).
import { ApiError } from '../../vocab/errors.js';
import type { Handlers } from '../dispatch.js';
import { renderMetrics } from '../metrics.js';

export const VERSION = '0.1.0';

export const systemHandlers: Pick<Handlers, 'health' | 'metrics' | 'tickets' | 'daemonReload'> = {
  health: (ctx) => ({ status: 'ok', version: VERSION, sessions: ctx.sessions.countActive(), pid: process.pid }),
  metrics: (ctx, { caller }, res) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    // Per-session series only of the sessions the caller may look at: session ids are not for everyone on the socket.
    res.end(renderMetrics(ctx.sessions, (row) => ctx.access.visible(caller, row, 'session.show')));
  },
  daemonReload: (ctx) => ctx.reload(),
  tickets: (ctx) => {
    if (!ctx.auth) throw new ApiError('not_found', 'no such endpoint: POST /v1/tickets');
    return ctx.auth.issueTicket();
  },
};
