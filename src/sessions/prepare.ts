// What a session's root is given inside once its init runs (create, and
// start after its files are back): root's SSH key and a running sshd, and
// the groups of the secrets it shares with users inside. One sh script, run
// by the init as the session's root under its confinement (like a stop's
// restore), built here from data: the key and the names travel as
// arguments, never as shell text. Nothing runs when there is nothing to give.
import { Socket } from 'node:net';
import type { Logger } from 'pino';
import { ApiError } from '../vocab/errors.js';
import type { SharedGroup } from '../secrets/injection.js';
import { addon } from '../native/addon.js';
import { agentError, StartFailure, type SessionAgent } from './agent.js';
import { commandEnv } from './command.js';

/** The port sshd listens on inside; publish it to reach it (--publish 2222:22). */
export const SSHD_PORT = 22;

/** sshd's configuration, written at create when the session has none; the session's root may change it. */
export const SSHD_CONFIG = `# Written by Enclave when the session was created: yours to change
# (then: kill -HUP "$(cat /run/sshd.pid)").
Port ${SSHD_PORT}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
`;

/**
 * $1: "create" or "start"; $2: the key ("" for none); then NAME:GID:USERS
 * per shared group. Groups first (sshd's logins see them), sshd last.
 *
 * A group's line in /etc/group (and /etc/gshadow) is replaced by name,
 * keeping members the session's root added (gpasswd -a); its gid must not
 * be another group's: that is refused, not taken over. Members are names,
 * so a user created later (useradd bob) is a member at its first login.
 *
 * sshd: its host keys are the session's own (ssh-keygen -A makes them in
 * the session's layer, once); /run/sshd is privilege separation's chroot;
 * the key is written at create only (a start finds root's own
 * authorized_keys, edits included, in its restored layer).
 */
export const PREPARE_SCRIPT = `set -eu
umask 022
mode=$1 key=$2
shift 2
for g in "$@"; do
  name=\${g%%:*} rest=\${g#*:}
  gid=\${rest%%:*} users=\${rest#*:}
  other=$(awk -F: -v n="$name" -v g="$gid" '$3 == g && $1 != n { print $1 }' /etc/group)
  [ -z "$other" ] || { echo "gid $gid, for group $name of a shared secret, is group $other's in this session: remove or renumber $other (groupmod -g)" >&2; exit 3; }
  old=$(awk -F: -v n="$name" '$1 == n { print $4 }' /etc/group)
  members=$(printf '%s,%s\\n' "$old" "$users" | tr , '\\n' | awk 'NF && !seen[$0]++' | paste -sd, -)
  for f in group gshadow; do
    [ -f /etc/$f ] || continue
    if [ $f = group ]; then line="$name:x:$gid:$members"; else line="$name:!::$members"; fi
    awk -F: -v n="$name" '$1 != n' /etc/$f > /etc/$f.enclave
    printf '%s\\n' "$line" >> /etc/$f.enclave
    chmod --reference=/etc/$f /etc/$f.enclave
    chown --reference=/etc/$f /etc/$f.enclave
    mv -f /etc/$f.enclave /etc/$f
  done
done
[ -n "$key" ] || exit 0
[ -x /usr/sbin/sshd ] || { echo "this session's root has no /usr/sbin/sshd: install openssh-server on the host (apt-get install openssh-server; .ci/setup does)" >&2; exit 3; }
getent passwd sshd >/dev/null || { echo "this session's /etc/passwd has no sshd user: install openssh-server on the host, then restart the daemon" >&2; exit 3; }
mkdir -p /etc/ssh /run/sshd
chmod 0755 /run/sshd
[ -e /etc/ssh/sshd_config ] || printf '%s' "$SSHD_CONFIG" > /etc/ssh/sshd_config
ssh-keygen -A >/dev/null
if [ "$mode" = create ]; then
  mkdir -p /root/.ssh
  chmod 0700 /root /root/.ssh
  printf '%s\\n' "$key" > /root/.ssh/authorized_keys.enclave
  chmod 0600 /root/.ssh/authorized_keys.enclave
  mv -f /root/.ssh/authorized_keys.enclave /root/.ssh/authorized_keys
fi
/usr/sbin/sshd -t
/usr/sbin/sshd -E /var/log/sshd.log
`;

export interface PrepareInput {
  mode: 'create' | 'start';
  sshKey: string | null;
  groups: readonly SharedGroup[];
}

/** The command that prepares the session, or undefined when there is nothing to do. */
export function prepareArgv(p: PrepareInput): string[] | undefined {
  if (!p.sshKey && p.groups.length === 0) return undefined;
  return ['sh', '-c', PREPARE_SCRIPT, 'prepare', p.mode, p.sshKey ?? '', ...p.groups.map((g) => `${g.name}:${g.gid}:${g.users.join(',')}`)];
}

/** Host keys are made here (RSA takes the longest); a script past this is killed. */
const PREPARE_TIMEOUT_MS = 60_000;

/** The last bytes of the script's stderr: what its failure says. */
const TAIL = 2000;

/** Run it inside the session (its init); throws with the script's last words. */
export async function prepareSession(agent: SessionAgent, hostname: string, p: PrepareInput, log: Logger): Promise<void> {
  const argv = prepareArgv(p);
  if (!argv) return;
  const a = addon();
  const stdout = a.pipe();
  const stderr = a.pipe();
  const theirs = [stdout[1], stderr[1]];
  const env = commandEnv(hostname, { env: [`SSHD_CONFIG=${SSHD_CONFIG}`], tty: false });
  let started;
  try {
    started = await agent.start({ tty: false, argv, env, cwd: '/', cols: 0, rows: 0, fds: theirs, stdin: false });
  } catch (e) {
    a.closeFd(stdout[0]);
    a.closeFd(stderr[0]);
    throw e instanceof StartFailure ? agentError(e, 'prepare it') : e;
  } finally {
    for (const fd of theirs) a.closeFd(fd);
  }
  const said = { err: '' };
  const out = new Socket({ fd: stdout[0], readable: true, writable: false });
  const err = new Socket({ fd: stderr[0], readable: true, writable: false });
  out.resume(); // what it prints is not kept
  err.on('data', (b: Buffer) => (said.err = (said.err + b.toString('utf8')).slice(-TAIL)));
  for (const sock of [out, err]) sock.on('error', () => undefined); // the exit status says what happened
  const timer = setTimeout(() => agent.signal(started.id, 9), PREPARE_TIMEOUT_MS);
  try {
    const exit = await started.exited;
    if (exit === null) throw new ApiError('confinement_failed', 'the session ended while it was being prepared');
    if (exit.code !== 0) {
      // Its last words may still be in the pipe.
      await new Promise((r) => (err.destroyed || err.readableEnded ? r(undefined) : (err.once('close', r), setTimeout(r, 500))));
      const how = exit.code === null ? `was killed by signal ${exit.signal}` : `exited with ${exit.code}`;
      throw new ApiError('confinement_failed', `preparing the session (${p.sshKey ? 'sshd' : 'shared secrets'}) ${how}: ${said.err.trim().split('\n').slice(-3).join(' ')}`);
    }
    log.info({ sshd: p.sshKey !== null, groups: p.groups.map((g) => g.name) }, 'session prepared');
  } finally {
    clearTimeout(timer);
    out.destroy();
    err.destroy();
  }
}
