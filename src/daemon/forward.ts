// Fleet mode: a call on a session another node runs, forwarded there over
// the mutual-TLS channel (src/fleet/reach.ts, peerTls.ts) once this node has
// checked and audited it. The path names the session by its id (a name is
// the caller's here; there it would be looked up again); the caller's uid
// and gids go along in headers the owner trusts from a fleet peer only. A
// WebSocket upgrade is piped raw both ways, the owner's 101 included, so
// exec's streams, attach's resize and resume and its acks cross unchanged.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Reach, Located } from '../fleet/reach.js';
import { FORWARDED_HEADER, GIDS_HEADER, UID_HEADER } from '../fleet/peerTls.js';
import { ApiError } from '../vocab/errors.js';
import type { Caller } from '../access/guard.js';
import { sendError } from './http.js';
import type { Upgrade } from './route.js';

/** Thrown by the dispatcher once a call is checked here and is to run on another node. */
export class Forward {
  constructor(
    readonly to: Located,
    /** The parsed body (the request's own was read here). */
    readonly body: unknown,
  ) {}
}

/** /v1/sessions/REF/... with REF replaced by the session's id, and the query as sent. */
function pathFor(f: Forward, url: URL): string {
  const parts = url.pathname.split('/');
  parts[3] = f.to.id;
  return parts.join('/') + url.search;
}

// Never forwarded: hop-by-hop headers, the identity (set here from the checked caller) and the
// caller's credentials for this node (the listener's token, the page's cookie), which are no peer's business.
const HOP = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'authorization', 'cookie', UID_HEADER, GIDS_HEADER, FORWARDED_HEADER]);
/** The owner's reply headers a client may see: no cookie of another node's. */
const replyHeaders = (h: IncomingMessage['headers']) => Object.fromEntries(Object.entries(h).filter(([k]) => k !== 'set-cookie'));
const unreachable = (f: Forward, e: Error) => new ApiError('exhausted', `session ${f.to.id} is on node ${f.to.node}, which did not answer: ${e.message}`);

/** `long`: the route's reply is a stream that may last (see PeerClient.request). */
export function forwardHttp(reach: Reach, f: Forward, req: IncomingMessage, res: ServerResponse, url: URL, caller: Caller, long: boolean): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
  const body = f.body === undefined ? undefined : JSON.stringify(f.body);
  if (body !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
  // A read the owner also serves the fleet itself (a show): recorded there for this caller all the same.
  headers[FORWARDED_HEADER] = '1';
  return new Promise((resolve) => {
    const out = reach.client.request(f.to.node, f.to.endpoint, { method: req.method ?? 'GET', path: pathFor(f, url), headers }, caller, long);
    out.on('response', (r) => {
      res.writeHead(r.statusCode ?? 502, replyHeaders(r.headers));
      // The owner's trailers too: a snapshot's says whether the stream is whole.
      r.pipe(res, { end: false });
      r.on('end', () => {
        if (Object.keys(r.trailers).length) res.addTrailers(r.trailers);
        res.end();
      });
      r.on('error', () => res.destroy());
    });
    out.on('error', (e) => sendError(res, unreachable(f, e)));
    res.on('close', () => {
      out.destroy();
      resolve();
    });
    out.end(body);
  });
}

/** Resolves once the owner's connection is up and piped; rejects (as an ApiError) if it cannot be made. */
export function forwardUpgrade(reach: Reach, f: Forward, req: IncomingMessage, up: Upgrade, url: URL, caller: Caller): Promise<void> {
  const lines = [`${req.method ?? 'GET'} ${pathFor(f, url)} HTTP/1.1`];
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) if (!HOP.has(req.rawHeaders[i]!.toLowerCase()) || /^(connection|host)$/i.test(req.rawHeaders[i]!)) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
  lines.push(`${UID_HEADER}: ${caller.uid}`, `${GIDS_HEADER}: ${caller.gids.join(',')}`);
  return new Promise((resolve, reject) => {
    const tls = reach.client.connect(f.to.node, f.to.endpoint);
    let piped = false;
    tls.setNoDelay(true);
    tls.once('secureConnect', () => {
      piped = true;
      tls.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (up.head.length) tls.write(up.head);
      up.socket.pipe(tls);
      tls.pipe(up.socket);
      resolve();
    });
    tls.on('error', (e) => (piped ? up.socket.destroy() : reject(unreachable(f, e))));
    tls.on('close', () => up.socket.destroy());
    up.socket.on('close', () => tls.destroy());
  });
}
