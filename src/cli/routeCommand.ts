// A command that is one call of one route (its row in commandTable.ts names
// the route): its arguments fill the route's path parameters in order, its
// flags (but --json and --socket) become the query of a GET or the body of
// anything else, and the reply prints as the API's JSON with --json, else as
// `key: value` lines. A new endpoint with such a command is then its route,
// its handler and one row of the command table; the daemon validates what
// arrives, as for any client.
import { ROUTES, type RouteName, type RouteSpec } from '../api/routes.js';
import { json } from '../api/render.js';
import type { Parsed } from './argv.js';
import { callRoute, socketPath, type CallInput } from './client.js';

/** One line per field; nested values as compact JSON. */
export function fieldLines(reply: unknown): string {
  if (reply === undefined) return '';
  if (typeof reply === 'string') return reply.endsWith('\n') ? reply : `${reply}\n`;
  if (reply === null || typeof reply !== 'object' || Array.isArray(reply)) return `${JSON.stringify(reply)}\n`;
  return Object.entries(reply)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}\n`)
    .join('');
}

/** The request a route command's line makes: exported for the unit test. */
export function routeInput(route: RouteSpec, p: Parsed): CallInput<RouteSpec> {
  const names = [...route.path.matchAll(/\{(\w+)\}/g)].map(([, n]) => n!);
  const params = Object.fromEntries(names.map((n, i) => [n, p.args[i]!]));
  const fields: Record<string, string | true | string[]> = {};
  for (const f of p.command.flags) {
    if (f.long === 'json' || !p.has(f.long)) continue;
    fields[f.long.replace(/-/g, '_')] = f.multiple ? p.list(f.long) : f.value ? p.str(f.long)! : true;
  }
  const some = Object.keys(fields).length > 0;
  return route.method === 'GET' ? { params, ...(some ? { query: fields } : {}) } : { params, ...(some ? { body: fields } : {}) };
}

export async function routeCommand(p: Parsed, name: RouteName): Promise<number> {
  const route: RouteSpec = ROUTES[name];
  const reply = await callRoute(socketPath(p.str('socket')), route, routeInput(route, p));
  const asJson = p.command.flags.some((f) => f.long === 'json') && p.bool('json');
  process.stdout.write(asJson ? json(reply) : fieldLines(reply));
  return 0;
}
