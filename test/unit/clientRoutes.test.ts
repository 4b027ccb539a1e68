// The client library covers the route table: every route has a method
// (src/client/methods.ts) or says why not, and each method sends exactly its
// route's method and path (a fake daemon on a Unix socket records what
// arrives and answers 404, which every method must raise as NotFoundError).
// A new route without a client method fails here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { ROUTES, type RouteName, type RouteSpec } from '../../src/api/routes.js';
import { CLIENT_METHODS, Enclave, NotFoundError } from '../../src/client/index.js';

/** One call of each method, with arguments of the right shape. */
const CALLS: Record<string, (c: Enclave) => Promise<unknown>> = {
  ticket: (c) => c.ticket(),
  reload: (c) => c.reload(),
  health: (c) => c.health(),
  metrics: (c) => c.metrics(),
  list: (c) => c.list({ all: true }),
  create: (c) => c.create({ name: 'web', memory_mb: 256 }),
  show: (c) => c.show('web'),
  destroy: (c) => c.destroy('web', { force: true }),
  stats: (c) => c.stats('web'),
  logs: (c) => c.logs('web', { follow: true }),
  stop: (c) => c.stop('web'),
  start: (c) => c.start('web'),
  publish: (c) => c.publish('web', { host_ip: '127.0.0.1', host_port: 8080, session_port: 80 }),
  unpublish: (c) => c.unpublish('web', '127.0.0.1', 8080),
  snapshot: (c) => c.snapshot('web', { compression: 'none' }),
  refreshAuth: (c) => c.refreshAuth('web'),
  exec: (c) => c.exec('web', ['true']).exit,
  cp: (c) => c.cp('web', { direction: 'out', path: '/home' }).exit,
  attach: (c) => c.attach('web', { role: 'ro' }),
  'secrets.list': (c) => c.secrets.list(),
  'secrets.set': (c) => c.secrets.set('github', 'tok'),
  'secrets.remove': (c) => c.secrets.remove('github'),
  events: (c) => c.events({ limit: 5 }),
  eventStream: (c) => c.eventStream({ after: 7, reads: '1' }),
  'volumes.list': (c) => c.volumes.list(),
  'volumes.create': (c) => c.volumes.create({ name: 'code', size_mb: 64 }),
  'volumes.show': (c) => c.volumes.show('code'),
  'volumes.remove': (c) => c.volumes.remove('code'),
  'volumes.resize': (c) => c.volumes.resize('code', 128),
  'volumes.export': (c) => c.volumes.export('code', { compression: 'none' }),
  'nodes.list': (c) => c.nodes.list(),
  'nodes.cordon': (c) => c.nodes.cordon('node-b'),
  'nodes.uncordon': (c) => c.nodes.uncordon('node-b'),
  'nodes.drain': (c) => c.nodes.drain('node-b'),
  'nodes.remove': (c) => c.nodes.remove('node-b'),
};

/** Routes Enclave.call reaches: those that answer once. */
const callable = (r: RouteSpec) => r.reply.kind !== 'stream' && r.reply.kind !== 'websocket';

const NOT_FOUND = JSON.stringify({ error: { code: 'not_found', message: "no session 'web'" } });

/** The routes a request line matches: method, path pattern, and whether it asked for an upgrade. */
function routesOf(method: string, path: string, upgrade: boolean): string[] {
  return (Object.entries(ROUTES) as [RouteName, RouteSpec][])
    .filter(([, r]) => r.method === method && (r.reply.kind === 'websocket') === upgrade && new RegExp(`^${r.path.replace(/\{\w+\}/g, '[^/]+')}$`).test(path))
    .map(([name]) => name);
}

describe('client library and the route table', () => {
  const dir = mkdtempSync(join(tmpdir(), 'enclave-client-'));
  const socket = join(dir, 'sock');
  const seen: { method: string; path: string; upgrade: boolean }[] = [];
  let server: Server;
  let client: Enclave;

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ method: req.method ?? '', path: new URL(req.url ?? '/', 'http://x').pathname, upgrade: false });
      req.resume();
      res.writeHead(404, { 'content-type': 'application/json' }).end(NOT_FOUND);
    });
    server.on('upgrade', (req, sock: Duplex) => {
      seen.push({ method: req.method ?? '', path: new URL(req.url ?? '/', 'http://x').pathname, upgrade: true });
      sock.end(`HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(NOT_FOUND)}\r\nconnection: close\r\n\r\n${NOT_FOUND}`);
    });
    await new Promise<void>((r) => server.listen(socket, r));
    client = new Enclave({ socket });
  });
  afterAll(async () => {
    client.close();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('has a method for every stream or WebSocket route of src/api/routes.ts, or says why it has none', () => {
    const missing = (Object.entries(ROUTES) as [RouteName, RouteSpec][]).filter(([name, r]) => !callable(r) && CLIENT_METHODS[name] === undefined).map(([name]) => name);
    expect(missing, 'stream routes without a client method: add one to src/client/enclave.ts and src/client/methods.ts').toEqual([]);
    for (const [name, m] of Object.entries(CLIENT_METHODS)) {
      if (typeof m !== 'string') expect(m.omitted.length, `${name}: say why it is left out`).toBeGreaterThan(20);
    }
    expect(Object.keys(CLIENT_METHODS).filter((n) => !(n in ROUTES))).toEqual([]);
  });

  it('names methods that exist', () => {
    for (const m of Object.values(CLIENT_METHODS)) {
      if (typeof m !== 'string') continue;
      const [a, b] = m.split('.') as [string, string | undefined];
      const owner: unknown = b === undefined ? client : (client as unknown as Record<string, unknown>)[a];
      expect(typeof (owner as Record<string, unknown>)[b ?? a], m).toBe('function');
      expect(CALLS[m], `${m}: no call in this test`).toBeTypeOf('function');
    }
  });

  it.each(Object.entries(CLIENT_METHODS).filter((e): e is [RouteName, string] => typeof e[1] === 'string'))(
    '%s: %s sends its route and raises the 404 as NotFoundError',
    async (route, method) => {
      seen.length = 0;
      const err: unknown = await CALLS[method]!(client).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NotFoundError);
      expect((err as NotFoundError).status).toBe(404);
      expect((err as NotFoundError).code).toBe('not_found');
      expect((err as NotFoundError).message).toBe("no session 'web'");
      expect(seen).toHaveLength(1);
      expect(routesOf(seen[0]!.method, seen[0]!.path, seen[0]!.upgrade)).toEqual([route]);
    },
  );

  it.each((Object.entries(ROUTES) as [RouteName, RouteSpec][]).filter(([, r]) => callable(r)).map(([name]) => name))(
    'call(%s) sends its route and raises the 404 as NotFoundError',
    async (route) => {
      seen.length = 0;
      const params = Object.fromEntries([...ROUTES[route].path.matchAll(/\{(\w+)\}/g)].map(([, p]) => [p!, p === 'port' ? '127.0.0.1:8080' : 'web']));
      const err: unknown = await client.call(route as Parameters<Enclave['call']>[0], { params }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NotFoundError);
      expect(seen).toHaveLength(1);
      expect(routesOf(seen[0]!.method, seen[0]!.path, seen[0]!.upgrade)).toEqual([route]);
    },
  );
});
