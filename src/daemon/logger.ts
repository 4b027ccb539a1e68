// The daemon's logger: pino's JSON lines for machines (a file, journald, a
// pipe), pino-pretty's coloured one line per event when a person watches it
// on a terminal. log_format chooses; "auto" looks at stdout. Both write
// synchronously: a crash loses no line, and a line logged before the daemon
// tells systemd it is ready is in the log when systemd hears it (pino's
// default asynchronous stream gives neither, and its flush() does not wait).
// The daemon logs a few lines per session change, so a write each is cheap.
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from '../config/schema.js';

const REDACT = ['*.token', '*.secret', '*.authorization'];

export function daemonLogger(config: Pick<Config, 'log_level' | 'log_format'>): Logger {
  const opts = { level: config.log_level, base: { pid: process.pid }, redact: REDACT };
  const prettyOut = config.log_format === 'pretty' || (config.log_format === 'auto' && process.stdout.isTTY === true);
  if (!prettyOut) return pino(opts, pino.destination({ dest: 1, sync: true }));
  return pino(opts, pretty({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'pid,hostname' }));
}
