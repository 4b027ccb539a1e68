// The route table: every route says whose object it acts on and what the
// policy decides, its path carries that object, and the compiler refuses a
// route that does not (the @ts-expect-error lines fail `tsc` in `npm test`
// if any of them ever compiles).
import { describe, expect, it } from 'vitest';
import { route, ROUTES, type RouteSpec } from '../../src/api/routes.js';
import { routePath } from '../../src/cli/client.js';
import { parseOwned, sessionRefOf, VOLUME_NAME } from '../../src/vocab/names.js';

describe('route table', () => {
  const entries = Object.entries(ROUTES) as [string, RouteSpec][];

  it('gives every route an owner rule, an action unless public, and the object its rule names in its path', () => {
    for (const [name, r] of entries) {
      const params = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      for (const p of params) expect(['session', 'volume', 'secret', 'port'], `${name}: {${p}}`).toContain(p);
      if (r.owner.kind === 'public') expect(r.action, name).toBeNull();
      else expect(r.action, name).toMatch(/^[a-z]+\.[a-z-]+$/);
      if (r.owner.kind === 'session' || r.owner.kind === 'volume' || r.owner.kind === 'secret') expect(params, name).toContain(r.owner.kind);
      else expect(params.filter((p) => p !== 'port'), name).toEqual([]);
    }
    // Method and path are unique.
    expect(new Set(entries.map(([, r]) => `${r.method} ${r.path} ${r.reply.kind === 'websocket'}`)).size).toBe(entries.length);
  });

  it('builds request lines the daemon parses back: names, qualified names and repeated query keys', () => {
    expect(routePath(ROUTES.sessionShow, { params: { session: '1000:web' } })).toBe('/v1/sessions/1000%3Aweb');
    expect(sessionRefOf(decodeURIComponent('1000%3Aweb'))).toEqual({ kind: 'name', owner: 1000, name: 'web' });
    expect(routePath(ROUTES.exec, { params: { session: 's-0123456789' }, query: { command: ['ls', '-l'], tty: '1' } })).toBe('/v1/sessions/s-0123456789/exec?command=ls&command=-l&tty=1');
    expect(parseOwned('0:data', VOLUME_NAME)).toEqual({ owner: 0, name: 'data' });
    for (const bad of ['-1:data', '01:data', '4294967295:data', ':data', '1:', 'a:b', '1:2:c']) expect(parseOwned(bad, VOLUME_NAME), bad).toBeUndefined();
  });

  it('does not compile a route without an owner rule, with an owner but no action, or without its object in the path', () => {
    const ok = route({ method: 'GET', fleet: 'local', path: '/v1/sessions/{session}/x', owner: { kind: 'session' }, action: 'session.show', reply: { kind: 'empty' } });
    // @ts-expect-error a route must say whose object it acts on
    route({ method: 'GET', fleet: 'local', path: '/v1/x', action: 'session.show', reply: { kind: 'empty' } });
    // @ts-expect-error a route with an owner needs an action
    route({ method: 'GET', fleet: 'local', path: '/v1/x', owner: { kind: 'caller' }, action: null, reply: { kind: 'empty' } });
    // @ts-expect-error a session route must carry {session}
    route({ method: 'GET', fleet: 'local', path: '/v1/things', owner: { kind: 'session' }, action: 'session.show', reply: { kind: 'empty' } });
    // @ts-expect-error a public route has no action
    route({ method: 'GET', fleet: 'local', path: '/v1/y', owner: { kind: 'public', why: 'x' }, action: 'session.list', reply: { kind: 'empty' } });
    // @ts-expect-error a route must say what fleet mode does with it
    route({ method: 'GET', path: '/v1/sessions/{session}/y', owner: { kind: 'session' }, action: 'session.show', reply: { kind: 'empty' } });
    expect(ok.path).toBe('/v1/sessions/{session}/x');
  });

  it('forwards only calls on one session, and aggregates only listings of the caller\'s', () => {
    for (const [name, r] of Object.entries(ROUTES) as [string, RouteSpec][]) {
      if (r.fleet === 'forward') expect(r.owner.kind, name).toBe('session');
      if (r.fleet === 'aggregate') expect(r.owner.kind, name).toBe('caller');
    }
    expect(ROUTES.exec.fleet).toBe('forward');
    expect(ROUTES.sessionList.fleet).toBe('aggregate');
  });
});
