// `enclave events`: the audit trail, one line per event. Sessions by name
// (their id when they have none), callers by user name where this host has
// one, and every control character of a detail escaped, so a multi-line
// command or a hostile one cannot break the table or write to the terminal.
import { readFileSync } from 'node:fs';
import type { AuditEvent } from '../api/eventSchemas.js';
import { ROUTES } from '../api/routes.js';
import { callRoute } from './client.js';
import { json, table } from '../api/render.js';

export interface EventsOptions {
  socket: string;
  session?: string | undefined;
  since?: string | undefined;
  limit?: number | undefined;
  action?: string | undefined;
  uid?: number | undefined;
  reads: boolean;
  json: boolean;
}

/** uid -> user name, from this host's passwd (a uid it does not know stays a number). */
function userNames(): Map<number, string> {
  const names = new Map<number, string>();
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [name, , uid] = line.split(':');
      if (name && uid && /^\d+$/.test(uid) && !names.has(Number(uid))) names.set(Number(uid), name);
    }
  } catch {
    /* no passwd: numbers only */
  }
  return names;
}

/** Control characters as escapes (\n, \t, \x1b...), and the backslash itself, so one event is one line. */
export function oneLine(text: string): string {
  return text.replace(/[\\\x00-\x1f\x7f-\x9f]/g, (c) => {
    if (c === '\\') return '\\\\';
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    if (c === '\r') return '\\r';
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

/** A uid given as a number or a user name of this host. */
export function uidOf(user: string): number | undefined {
  if (/^\d+$/.test(user)) return Number(user);
  for (const [uid, name] of userNames()) if (name === user) return uid;
  return undefined;
}

export async function eventsCommand(o: EventsOptions): Promise<number> {
  const r = await callRoute(o.socket, ROUTES.eventList, {
    query: { session: o.session, since: o.since, limit: o.limit, action: o.action, uid: o.uid, ...(o.reads ? { reads: '1' } : {}) },
  });
  if (o.json) {
    process.stdout.write(json(r));
    return 0;
  }
  const names = userNames();
  const who = (uid: number) => names.get(uid) ?? String(uid);
  const session = (e: AuditEvent) => (e.session_id === null ? '-' : e.session_name ? `${oneLine(e.session_name)} (${e.session_id})` : e.session_id);
  // Fleet mode: which node's trail each event is from.
  const fleet = r.events.some((e) => e.node !== undefined);
  process.stdout.write(
    table(
      ['TIME', ...(fleet ? ['NODE'] : []), 'USER', 'VIA', 'ACTION', 'SESSION', 'DECISION', 'RULE', 'DETAIL'],
      r.events.map((e) => [e.time, ...(fleet ? [e.node ?? '-'] : []), who(e.caller_uid), e.via, e.action, session(e), e.decision, oneLine(e.rule), oneLine(e.detail ?? '')]),
    ),
  );
  if (r.unanswered?.length) process.stderr.write(`enclave: without the events of node${r.unanswered.length > 1 ? 's' : ''} ${r.unanswered.join(', ')} (not answering)\n`);
  return 0;
}
