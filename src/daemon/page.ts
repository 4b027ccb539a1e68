// The browser dashboard and its assets, served on the TCP listener only.
// xterm.js comes from node_modules (no CDN); the wire constants and the limit
// table from the daemon's own compiled modules; nothing is templated, and no
// script is inline (the CSP allows scripts of this origin only).
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { repoRoot } from '../native/addon.js';
import type { ListenAuth } from './listenAuth.js';

const JS = 'text/javascript; charset=utf-8';
const web = (file: string) => join(repoRoot, 'src', 'web', file);
const dist = (...p: string[]) => join(repoRoot, 'dist', 'src', ...p);
const xterm = (...p: string[]) => join(repoRoot, 'node_modules', '@xterm', ...p);

/** The page's own modules (src/web/*.js). */
const MODULES = ['app.js', 'api.js', 'sessions.js', 'createForm.js', 'terminals.js', 'live.js', 'activity.js', 'format.js'];

const ASSETS: Record<string, [string, string]> = {
  '/': [web('index.html'), 'text/html; charset=utf-8'],
  '/app.css': [web('app.css'), 'text/css; charset=utf-8'],
  '/favicon.svg': [web('favicon.svg'), 'image/svg+xml'],
  ...Object.fromEntries(MODULES.map((m) => [`/${m}`, [web(m), JS]])),
  // Shared with the daemon and the CLI: the attach protocol's constants, the limit table, the profiles.
  '/protocol.js': [dist('api', 'protocol.js'), JS],
  '/limitTable.js': [dist('vocab', 'limitTable.js'), JS],
  '/profiles.js': [dist('vocab', 'profiles.js'), JS],
  '/assets/xterm.js': [xterm('xterm', 'lib', 'xterm.js'), JS],
  '/assets/xterm.css': [xterm('xterm', 'css', 'xterm.css'), 'text/css; charset=utf-8'],
  '/assets/addon-fit.js': [xterm('addon-fit', 'lib', 'addon-fit.js'), JS],
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
    // Styles may be inline: xterm.js writes its theme into <style> elements it makes.
    'content-security-policy': auth.csp,
  });
  res.end(body);
  return true;
}
