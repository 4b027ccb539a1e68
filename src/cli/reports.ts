// `enclave session stats [S] [--watch] [--json]`: what sessions use, from
// the kernel (without S, every running session the caller may see); --watch
// redraws every second until Ctrl-C. `enclave session logs S [--follow]`:
// the console's output as text; --follow streams it until Ctrl-C.
import { request } from 'node:http';
import { ROUTES } from '../api/routes.js';
import type { SessionStats } from '../api/schemas.js';
import { callRoute, CliError, routePath, streamError } from './client.js';
import { json, statsTable } from '../api/render.js';

/** One reading: of S, or of every running session the caller may list and see (one that ends meanwhile is left out). */
async function sample(socket: string, id: string | undefined): Promise<SessionStats[]> {
  if (id !== undefined) return [await callRoute(socket, ROUTES.sessionStats, { params: { session: id } })];
  const { sessions } = await callRoute(socket, ROUTES.sessionList, { query: {} });
  const read = await Promise.all(
    sessions.filter((s) => s.state === 'running').map((s) => callRoute(socket, ROUTES.sessionStats, { params: { session: s.id } }).catch(() => undefined)),
  );
  return read.filter((s): s is SessionStats => s !== undefined);
}

export async function statsCommand(socket: string, id: string | undefined, o: { watch: boolean; json: boolean }): Promise<number> {
  const render = (st: SessionStats[]) => (o.json ? (o.watch ? JSON.stringify(id !== undefined ? st[0] : st) + '\n' : json(id !== undefined ? st[0] : st)) : statsTable(st));
  if (!o.watch) {
    process.stdout.write(render(await sample(socket, id)));
    return 0;
  }
  // Ctrl-C ends the watch: exit 0, whatever is being read.
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  let done = false;
  process.once('SIGINT', () => {
    done = true;
    stop();
  });
  const tty = process.stdout.isTTY === true;
  while (!done) {
    const t0 = Date.now();
    const st = await Promise.race([sample(socket, id), stopped.then(() => undefined)]);
    if (done || !st) break;
    // On a terminal the table is redrawn in place; elsewhere each reading follows the last (JSON: one line each).
    process.stdout.write(`${tty && !o.json ? '\x1b[H\x1b[2J' : ''}${render(st)}${!tty && !o.json ? '\n' : ''}`);
    await Promise.race([new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - t0)))), stopped]);
  }
  return 0;
}

export function logsCommand(socket: string, id: string, follow: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const path = routePath(ROUTES.sessionLogs, { params: { session: id }, query: follow ? { follow: '1' } : {} });
    const req = request({ socketPath: socket, method: 'GET', path }, (res) => {
      if (res.statusCode !== 200) return streamError(res, reject);
      res.on('data', (c: Buffer) => {
        if (!process.stdout.write(c)) {
          res.pause();
          process.stdout.once('drain', () => res.resume());
        }
      });
      res.on('end', () => resolve(0));
      res.on('aborted', () => reject(new CliError('the log stream was cut: the daemon log says why')));
    });
    req.on('error', (e: NodeJS.ErrnoException) =>
      reject(new CliError(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? `the daemon is not running at ${socket}` : `cannot reach the daemon at ${socket}: ${e.message}`)),
    );
    req.end();
    // Following ends with Ctrl-C, as asked: exit 0.
    if (follow)
      process.once('SIGINT', () => {
        resolve(0);
        req.destroy();
      });
  });
}
