// What an exec'd command or a console starts with inside its session. The
// environment is data, applied by the session's init right before execve:
// nothing of it reaches a host-side process.
export const SESSION_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function commandEnv(hostname: string, q: { env: string[]; tty: boolean }): string[] {
  const env = new Map<string, string>([
    ['PATH', SESSION_PATH],
    ['HOME', '/home'],
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
