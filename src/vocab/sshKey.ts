// An OpenSSH public key line (what ~/.ssh/id_ed25519.pub and
// authorized_keys hold): TYPE BASE64 [COMMENT], and nothing else (no
// options such as command="..." or from="...": those are the session
// root's to add). The blob's first field must name the same type, so a
// truncated or mangled paste is refused here and not at the first login.
// Shared by the CLI (which reads the file) and the API schema. A leaf.
import { z } from 'zod';

export const SSH_KEY_TYPES = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
] as const;

/** Longer than any key OpenSSH makes (an RSA-16384 line is under 3 KiB). */
export const SSH_KEY_MAX = 8192;

const LINE = /^(\S+) ([A-Za-z0-9+/]+={0,2})(?: ([^\0\r\n]*))?$/;

/** Why `line` is not one OpenSSH public key, or undefined if it is. */
export function sshKeyProblem(line: string): string | undefined {
  if (line.length > SSH_KEY_MAX) return `is longer than ${SSH_KEY_MAX} characters: not one public key`;
  const m = LINE.exec(line);
  if (!m) return 'is not an OpenSSH public key line (TYPE BASE64 [COMMENT] on one line, as in ~/.ssh/id_ed25519.pub)';
  const type = m[1]!;
  if (!(SSH_KEY_TYPES as readonly string[]).includes(type)) {
    if (/PRIVATE KEY/.test(line)) return 'is a private key: give the .pub file';
    return `has key type '${type.slice(0, 40)}', not one of ${SSH_KEY_TYPES.join(', ')}`;
  }
  // The blob is length-prefixed fields, the first the type, each whole, nothing after the last.
  const blob = Buffer.from(m[2]!, 'base64');
  const fields: Buffer[] = [];
  for (let at = 0; at < blob.length; ) {
    const n = at + 4 <= blob.length ? blob.readUInt32BE(at) : -1;
    if (n < 0 || at + 4 + n > blob.length) return `has a ${type} key that is cut short (a truncated or mangled copy?)`;
    fields.push(blob.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  if (fields.length < 2 || fields[0]!.toString('latin1') !== type) return `has a key that is not a ${type} key (a truncated or mangled copy?)`;
  return undefined;
}

export const sshPublicKey = z.string().superRefine((s, ctx) => {
  const why = sshKeyProblem(s);
  if (why) ctx.addIssue({ code: 'custom', message: `must be an OpenSSH public key: it ${why}` });
});
