// What an exec'd command or a console starts with inside its session. The
// environment is data, applied by the session's init right before execve:
// nothing of it reaches a host-side process. A command run as another user
// (`user`) gets HOME, USER, LOGNAME and its default cwd from that user's
// passwd line, which the init's child reads in the session: the daemon
// never reads the session's /etc/passwd.
import { ApiError } from '../vocab/errors.js';
import { ROOT_HOME } from '../isolation/plan.js';
import { switchesUsers, type Profile } from '../isolation/profiles.js';

export const SESSION_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Where a command starts: the cwd asked for, else its HOME: root's (unless
 * the caller's env says another), or, for another user, undefined: that
 * user's, as the session resolves it.
 */
export function commandCwd(q: { env: string[]; cwd?: string | undefined; user?: string | undefined }): string | undefined {
  if (q.cwd !== undefined) return q.cwd;
  if (q.user !== undefined) return undefined;
  const home = [...q.env].reverse().find((kv) => kv.startsWith('HOME='))?.slice(5);
  return home && home.startsWith('/') ? home : ROOT_HOME;
}

/** Root's identity variables; another user's come from its passwd line, in the session. */
const ROOT_IDENTITY: [string, string][] = [
  ['HOME', ROOT_HOME],
  ['USER', 'root'],
  ['LOGNAME', 'root'],
];

export function commandEnv(hostname: string, q: { env: string[]; tty: boolean; user?: string | undefined }): string[] {
  const env = new Map<string, string>([['PATH', SESSION_PATH], ...(q.user === undefined ? ROOT_IDENTITY : []), ['HOSTNAME', hostname], ['LANG', 'C.UTF-8']]);
  if (q.tty) env.set('TERM', 'xterm-256color');
  for (const kv of q.env) {
    const i = kv.indexOf('=');
    env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  return [...env].map(([k, v]) => `${k}=${v}`);
}

/**
 * Whether a session may run a command as `user` (exec's `user`, checked
 * before anything starts): its profile must let its root change IDs, and a
 * numeric uid or gid must be one the session has (ids.size of them, from 0).
 * A name is the session's to resolve.
 */
export function checkCommandUser(profile: Profile, idsSize: number, user: string | undefined): void {
  if (user === undefined) return;
  if (!switchesUsers(profile)) {
    throw new ApiError('invalid_request', `user: the ${profile} profile keeps no CAP_SETUID, CAP_SETGID or setgroups, so its commands run as the session's root only; leave user out or use the workspace profile`, 'user');
  }
  for (const [i, part] of user.split(':').entries()) {
    if (/^\d+$/.test(part) && Number(part) >= idsSize) {
      throw new ApiError('invalid_request', `user: ${i === 0 ? 'uid' : 'gid'} ${part} is outside the session's IDs 0..${idsSize - 1} (ids.size)`, 'user');
    }
  }
}
