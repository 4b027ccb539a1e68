// The browser terminal page and its assets, served on the TCP listener only.
// xterm.js comes from node_modules (no CDN); nothing is templated.
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { repoRoot } from '../native/addon.js';
import type { ListenAuth } from './listenAuth.js';

const ASSETS: Record<string, [string, string]> = {
  '/': [join(repoRoot, 'src', 'web', 'index.html'), 'text/html; charset=utf-8'],
  '/app.js': [join(repoRoot, 'src', 'web', 'app.js'), 'text/javascript; charset=utf-8'],
  // The compiled wire constants (src/api/protocol.ts), shared with the daemon and the CLI.
  '/protocol.js': [join(repoRoot, 'dist', 'src', 'api', 'protocol.js'), 'text/javascript; charset=utf-8'],
  '/assets/xterm.js': [join(repoRoot, 'node_modules', '@xterm', 'xterm', 'lib', 'xterm.js'), 'text/javascript; charset=utf-8'],
  '/assets/xterm.css': [join(repoRoot, 'node_modules', '@xterm', 'xterm', 'css', 'xterm.css'), 'text/css; charset=utf-8'],
  '/assets/addon-fit.js': [join(repoRoot, 'node_modules', '@xterm', 'addon-fit', 'lib', 'addon-fit.js'), 'text/javascript; charset=utf-8'],
};

const cache = new Map<string, Buffer>();

/** True when `path` was a page asset and has been answered. */
export function servePage(path: string, res: ServerResponse, auth: ListenAuth, req: IncomingMessage): boolean {
  const asset = ASSETS[path];
  if (!asset) return false;
  auth.checkOrigin(req); // the page too: no DNS-rebound host gets it
  const [file, type] = asset;
  let body = cache.get(file);
  if (!body) {
    if (!existsSync(file)) return false;
    body = readFileSync(file);
    cache.set(file, body);
  }
  res.writeHead(200, {
    'content-type': type,
    'content-length': body.length,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'content-security-policy': "default-src 'self'; connect-src 'self' ws: ; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
  });
  res.end(body);
  return true;
}
