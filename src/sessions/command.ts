// What an exec'd command or a console starts with inside its session. The
// environment is data, applied by the session's init right before execve:
// nothing of it reaches a host-side process.
import { ROOT_HOME } from '../isolation/plan.js';

export const SESSION_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Where a command starts: the cwd asked for, else its HOME (root's, unless the caller's env says another). */
export function commandCwd(q: { env: string[]; cwd?: string | undefined }): string {
  if (q.cwd !== undefined) return q.cwd;
  const home = [...q.env].reverse().find((kv) => kv.startsWith('HOME='))?.slice(5);
  return home && home.startsWith('/') ? home : ROOT_HOME;
}

export function commandEnv(hostname: string, q: { env: string[]; tty: boolean }): string[] {
  const env = new Map<string, string>([
    ['PATH', SESSION_PATH],
    ['HOME', ROOT_HOME],
    ['USER', 'root'],
    ['LOGNAME', 'root'],
    ['HOSTNAME', hostname],
    ['LANG', 'C.UTF-8'],
  ]);
  if (q.tty) env.set('TERM', 'xterm-256color');
  for (const kv of q.env) {
    const i = kv.indexOf('=');
    env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return [...env].map(([k, v]) => `${k}=${v}`);
}
