// The browser page's sign-in cookie. The listener's token is new at every
// daemon start, so a page that kept it would have to ask for it again after
// each restart; instead the page trades it once (POST /v1/login) for a cookie
// the daemon can check without remembering it: an expiry, the uid it acts
// as, a random id, and an HMAC of those under a key kept 0600 in the state
// dir, which survives restarts. Another state dir's daemon has another key.
// A sign-out revokes the cookie's id until it would have expired anyway.
// Any doubt about the key or the revocation list makes a new key: every
// cookie is refused and the page asks for the token again (fail closed).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { lstatSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';

/** How long a sign-in lasts: a working week, so a day's restarts never ask again. */
export const LOGIN_TTL_S = 7 * 24 * 3600;
/** Past this many revoked ids (sign-outs within a TTL) the key is replaced: everyone signs in again. */
const MAX_REVOKED = 10_000;
const KEY_FILE = 'listen-cookie-key';
const REVOKED_FILE = 'listen-cookie-revoked';

/** v1.EXPIRY(unix s).UID.ID(16 bytes).MAC(sha256), base64url. */
const VALUE = /^v1\.(\d{10})\.(\d{1,10})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;
const keyText = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be 32 bytes, base64url');
const revokedLine = z.string().regex(/^[A-Za-z0-9_-]{22} \d{10}$/, 'must be ID EXPIRY');

export type CookieCheck = { ok: true; id: string } | { ok: false; why: string };

/** Written whole or not at all, root-only. */
function writePrivate(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

/** The file's text if it is a regular file of ours that no one else may read; else undefined, saying why. */
function readPrivate(path: string, log: Logger): string | undefined {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  if (!st.isFile() || (st.mode & 0o077) !== 0 || st.uid !== process.getuid?.()) {
    log.warn({ file: path }, 'not a regular root-only file of the daemon: not trusted');
    return undefined;
  }
  return readFileSync(path, 'utf8');
}

export class LoginCookies {
  private constructor(
    private key: Buffer,
    /** Revoked id -> its expiry (unix s). */
    private readonly revoked: Map<string, number>,
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** The key and revocation list of this state dir, made if missing or untrusted. */
  static open(stateDir: string, log: Logger): LoginCookies {
    const keyPath = join(stateDir, KEY_FILE);
    const text = readPrivate(keyPath, log)?.trim();
    const key = text !== undefined && keyText.safeParse(text).success ? Buffer.from(text, 'base64url') : undefined;
    const revoked = key ? LoginCookies.readRevoked(join(stateDir, REVOKED_FILE), log) : undefined;
    const c = new LoginCookies(key ?? Buffer.alloc(0), revoked ?? new Map(), stateDir, log);
    if (!key || !revoked) c.newKey(text === undefined ? 'no key yet' : 'the key or the revocation list is unreadable');
    return c;
  }

  /** The revocation list, expired ids dropped; undefined if a line is not one (then no cookie can be trusted). */
  private static readRevoked(path: string, log: Logger): Map<string, number> | undefined {
    const m = new Map<string, number>();
    const text = readPrivate(path, log);
    if (text === undefined) return m;
    const now = Date.now() / 1000;
    for (const line of text.split('\n').filter(Boolean)) {
      if (!revokedLine.safeParse(line).success) return undefined;
      const [id, exp] = line.split(' ') as [string, string];
      if (Number(exp) > now) m.set(id, Number(exp));
    }
    return m;
  }

  private newKey(why: string): void {
    this.key = randomBytes(32);
    this.revoked.clear();
    writePrivate(join(this.dir, KEY_FILE), `${this.key.toString('base64url')}\n`);
    writePrivate(join(this.dir, REVOKED_FILE), '');
    this.log.info({ why }, 'new sign-in cookie key: earlier browser sign-ins are void');
  }

  private mac(exp: string, uid: string, id: string): Buffer {
    return createHmac('sha256', this.key).update(`enclave-login v1.${exp}.${uid}.${id}`).digest();
  }

  /** A cookie value for `uid`, good until `expires`. */
  issue(uid: number, nowMs = Date.now()): { value: string; expires: Date; maxAgeS: number } {
    const exp = String(Math.floor(nowMs / 1000) + LOGIN_TTL_S);
    const id = randomBytes(16).toString('base64url');
    const value = `v1.${exp}.${uid}.${id}.${this.mac(exp, String(uid), id).toString('base64url')}`;
    return { value, expires: new Date(Number(exp) * 1000), maxAgeS: LOGIN_TTL_S };
  }

  /** Whether `value` is a cookie of this key, unexpired, not signed out, for `uid`. */
  check(value: string, uid: number, nowMs = Date.now()): CookieCheck {
    const m = VALUE.exec(value);
    if (!m) return { ok: false, why: 'the sign-in cookie is malformed' };
    const [, exp, forUid, id, mac] = m as unknown as [string, string, string, string, string];
    const given = Buffer.from(mac, 'base64url');
    const want = this.mac(exp, forUid, id);
    if (given.length !== want.length || !timingSafeEqual(given, want)) return { ok: false, why: "the sign-in cookie is not this daemon's (another state dir, or a new key)" };
    if (Number(exp) * 1000 <= nowMs) return { ok: false, why: 'the sign-in has expired' };
    if (this.revoked.has(id)) return { ok: false, why: 'the sign-in was ended (signed out)' };
    if (Number(forUid) !== uid) return { ok: false, why: `the sign-in was for uid ${forUid}, and the listener now acts as uid ${uid} (access.tcp_uid)` };
    return { ok: true, id };
  }

  /** Sign-out: the cookie's id is refused until it expires. A value that does not check is ignored. */
  revoke(value: string, uid: number, nowMs = Date.now()): void {
    const c = this.check(value, uid, nowMs);
    if (!c.ok) return;
    for (const [id, exp] of this.revoked) if (exp * 1000 <= nowMs) this.revoked.delete(id);
    if (this.revoked.size >= MAX_REVOKED) return this.newKey(`more than ${MAX_REVOKED} sign-outs within ${LOGIN_TTL_S / 86400} days`);
    this.revoked.set(c.id, Number(VALUE.exec(value)![1]));
    writePrivate(join(this.dir, REVOKED_FILE), [...this.revoked].map(([id, exp]) => `${id} ${exp}\n`).join(''));
  }
}
