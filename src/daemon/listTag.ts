// A node's answer to another node's list, tagged. The tag names what the
// answer is made of: the version of the tables a list reads (a counter their
// triggers move: src/store/listVersion.ts; a write no list reads, such as
// the audit trail's record of every call or a secret set, leaves it), and
// the gateway (SessionManager.listVersion); each running console's
// viewers (a full list); the route and `all`; and this daemon's start (a
// restart begins its counts again). Equal tags, equal answers: a node that sends the tag it
// holds (If-None-Match, src/fleet/lastAnswers.ts) is answered 304, and the
// list is not made, sent, parsed or checked again. The tag is read before
// the list is made, so a write in between leaves the list newer than its
// tag, never older: the next ask fetches it again.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Serialized, Unchanged } from './dispatch.js';
import type { Context } from './route.js';

const START = randomBytes(6).toString('base64url');

export function listTag(ctx: Context, kind: 'list' | 'rows', all: boolean): string {
  const made = kind === 'list' ? listState(ctx.sessions, ctx.consoles) : ctx.sessions.listVersion();
  return `"${START}.${kind}${all ? '-all' : ''}.${made}"`;
}

/** What a full list is made of: the tables' version and the consoles' viewers (the fleet's list in etcd moves with it too). */
export function listState(sessions: Pick<Context['sessions'], 'listVersion'>, consoles: Pick<Context['consoles'], 'viewersDigest'>): string {
  return `${sessions.listVersion()}.${consoles.viewersDigest()}`;
}

/**
 * Another node's ask for this node's `kind` list: 304 when it holds the list
 * now made, the rows that changed since the one it holds, or the whole list
 * (madeLists.ts).
 */
export function tagged(ctx: Context, req: IncomingMessage, kind: 'list' | 'rows', all: boolean, make: () => ReadonlyArray<{ id: string }>): Serialized | Unchanged {
  return ctx.madeLists.answer(req, `${kind}${all ? '-all' : ''}`, listTag(ctx, kind, all), make);
}
