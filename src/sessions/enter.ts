// Builds the enclave-enter invocation for one command in a session.
import type { ExecQuery } from '../api/schemas.js';
import { helperPaths } from '../native/addon.js';
import type { SessionRow } from '../store/sessionStore.js';
import { rlimitArgs } from '../isolation/hardening.js';
import type { Rlimit } from '../isolation/spec.js';

export interface EnterConfinement {
  cgroupProcs: string[];
  rlimits: Rlimit[];
  seccomp: string;
}

export const SESSION_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface EnterCommand {
  file: string;
  args: string[];
  /** enclave-enter's own environment: always empty (it runs as host root). */
  env: Record<string, string>;
}

/** Pure: argv for enclave-enter. The command's environment is data in argv,
 * applied inside the session; the helper itself gets no environment at all. */
export function enterCommand(row: SessionRow, confine: EnterConfinement, q: Pick<ExecQuery, 'command' | 'env' | 'cwd' | 'tty'>): EnterCommand {
  if (row.init_pid === null || row.init_start_time === null) throw new Error(`session ${row.id} has no init`);
  const args = ['--pid', String(row.init_pid), '--start', row.init_start_time, '--uid', '0', '--gid', '0', '--cwd', q.cwd];
  for (const p of confine.cgroupProcs) args.push('--cgroup', p);
  args.push(...rlimitArgs(confine.rlimits), '--seccomp', confine.seccomp);
  // A pty of the session's own devpts, relayed to the daemon's (see ttyrelay.c).
  if (q.tty) args.push('--tty');
  // The command sees only this environment, never the daemon's.
  const env: Record<string, string> = {
    PATH: SESSION_PATH,
    HOME: '/home',
    USER: 'root',
    LOGNAME: 'root',
    HOSTNAME: row.hostname,
    LANG: 'C.UTF-8',
    ...(q.tty ? { TERM: 'xterm-256color' } : {}),
  };
  for (const kv of q.env) {
    const i = kv.indexOf('=');
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  for (const [k, v] of Object.entries(env)) args.push('--env', `${k}=${v}`);
  args.push('--', ...q.command);
  return { file: helperPaths.enter, args, env: {} };
}
