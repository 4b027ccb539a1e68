// The daemon's logger: pino's JSON lines for machines (a file, journald, a
// pipe), pino-pretty's coloured one line per event when a person watches it
// on a terminal. log_format chooses; "auto" looks at stdout. Pretty printing
// runs in this thread (sync), so a crash loses no line, and its redaction
// is pino's, as for JSON.
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from '../config/schema.js';

const REDACT = ['*.token', '*.secret', '*.authorization'];

export function daemonLogger(config: Pick<Config, 'log_level' | 'log_format'>): Logger {
  const opts = { level: config.log_level, base: { pid: process.pid }, redact: REDACT };
  const prettyOut = config.log_format === 'pretty' || (config.log_format === 'auto' && process.stdout.isTTY === true);
  if (!prettyOut) return pino(opts);
  return pino(opts, pretty({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'pid,hostname' }));
}
