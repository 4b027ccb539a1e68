// Flags of `session create` that read or reshape what the caller gives:
// --ssh-key FILE (read here, as the caller: the daemon never opens a path
// of the caller's).
import { readFileSync } from 'node:fs';
import { sshKeyProblem } from '../vocab/sshKey.js';
import { CliError } from './client.js';

/** The one OpenSSH public key line in FILE (blank lines and # comments aside), or a usage error saying why not. */
export function readSshKey(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`--ssh-key ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`, 2);
  }
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) throw new CliError(`--ssh-key ${file}: is a private key: give the .pub file`, 2);
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length !== 1) throw new CliError(`--ssh-key ${file}: holds ${lines.length} key lines; give a file with exactly one public key (such as ~/.ssh/id_ed25519.pub)`, 2);
  const why = sshKeyProblem(lines[0]!);
  if (why) throw new CliError(`--ssh-key ${file}: ${why}`, 2);
  return lines[0]!;
}

/**
 * --auth and --env-token: REF[:USER,...], REF being NAME or UID:NAME (another
 * owner's shared secret). Two parts are UID:NAME when the first is all
 * digits, else NAME:USERS; a provider whose name is all digits, shared with
 * users, is written UID:NAME:USERS.
 */
export function secretFlags(auth: string[] | undefined, envTokens: string[] | undefined): { auth?: string[]; env_tokens?: string[]; secret_users?: Record<string, string[]> } {
  const users: Record<string, string[]> = {};
  const refs = (flags: string[] | undefined) =>
    flags?.map((f) => {
      const parts = f.split(':');
      const [ref, who] = parts.length === 3 ? [`${parts[0]}:${parts[1]}`, parts[2]] : parts.length === 2 && !/^\d+$/.test(parts[0]!) ? [parts[0]!, parts[1]] : [f, undefined];
      if (who !== undefined) users[ref.slice(ref.indexOf(':') + 1)] = who.split(',');
      return ref;
    });
  const out = { auth: refs(auth), env_tokens: refs(envTokens), secret_users: Object.keys(users).length ? users : undefined };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}
