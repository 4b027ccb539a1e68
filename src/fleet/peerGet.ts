// A GET of another node over the mutual-TLS channel (peerTls.ts), as root
// (the caller's node filters by its own policy): a list, a lookup.
import type { IncomingHttpHeaders } from 'node:http';
import type { PeerClient } from './peerClient.js';

/** The most a node's answer to a list or a lookup may hold: 500 sessions are ~1 MiB. */
const MAX_PEER_REPLY = 32 * 1024 * 1024;

export interface PeerAnswer {
  status: number | undefined;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * GET `path` from a node: its status, headers and body. A deadline on the
 * whole answer, not an idle timeout: a request queued behind busy
 * connections to that node, or a peer that trickles bytes, must not hold
 * the caller; and a bound on its size.
 */
export function peerGet(client: PeerClient, node: string, endpoint: string, path: string, headers: Record<string, string>, ms: number): Promise<PeerAnswer> {
  return new Promise((resolve, reject) => {
    const req = client.request(node, endpoint, { method: 'GET', path, headers }, { uid: 0, gids: [] });
    const timer = setTimeout(() => req.destroy(new Error(`no whole answer within ${ms} ms`)), ms);
    timer.unref();
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_PEER_REPLY) return req.destroy(new Error(`node ${node} answered more than ${MAX_PEER_REPLY} bytes`));
        chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.end();
  });
}

/** `f()`, or an error that names the node and the path when its answer does not parse or check. */
export function parsed<T>(node: string, path: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new Error(`node ${node}'s answer to ${path.split('?')[0]} does not parse: ${(e as Error).message.slice(0, 200)}`);
  }
}
