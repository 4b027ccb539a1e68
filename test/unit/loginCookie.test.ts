// The browser page's sign-in cookie: good for its key, its uid and its
// lifetime only; forged, expired, signed-out, another state dir's, or made
// under a key the daemon no longer trusts, it is refused.
import { afterAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { LOGIN_TTL_S, LoginCookies } from '../../src/daemon/loginCookie.js';

const log = pino({ level: 'silent' });
const dirs: string[] = [];
const stateDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'enclave-cookie-'));
  dirs.push(d);
  return d;
};

describe('sign-in cookies', () => {
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('keeps its key root-only in the state dir, and the same key across opens (a daemon restart)', () => {
    const dir = stateDir();
    const a = LoginCookies.open(dir, log);
    expect(statSync(join(dir, 'listen-cookie-key')).mode & 0o777).toBe(0o600);
    const { value } = a.issue(0);
    expect(LoginCookies.open(dir, log).check(value, 0)).toMatchObject({ ok: true });
  });

  it('refuses a forged, an expired, and another state dir\'s cookie', () => {
    const dir = stateDir();
    const c = LoginCookies.open(dir, log);
    const now = Date.now();
    const { value, expires } = c.issue(0, now);
    expect(expires.getTime()).toBeGreaterThan(now + (LOGIN_TTL_S - 5) * 1000);
    // Forged: a later expiry, or another uid, under the same MAC; a MAC of one bit changed.
    const parts = value.split('.');
    const later = [parts[0], String(Number(parts[1]) + 86400), ...parts.slice(2)].join('.');
    expect(c.check(later, 0)).toEqual({ ok: false, why: expect.stringContaining("not this daemon's") });
    const otherUid = [parts[0], parts[1], '1000', ...parts.slice(3)].join('.');
    expect(c.check(otherUid, 1000)).toEqual({ ok: false, why: expect.stringContaining("not this daemon's") });
    const mac = parts[4]!;
    const flipped = [...parts.slice(0, 4), (mac[0] === 'A' ? 'B' : 'A') + mac.slice(1)].join('.');
    expect(c.check(flipped, 0).ok).toBe(false);
    expect(c.check('v1.garbage', 0)).toEqual({ ok: false, why: 'the sign-in cookie is malformed' });
    // Expired: checked after its lifetime.
    expect(c.check(value, 0, now + LOGIN_TTL_S * 1000 + 1000)).toEqual({ ok: false, why: 'the sign-in has expired' });
    // Another state dir: another key.
    expect(LoginCookies.open(stateDir(), log).check(value, 0)).toEqual({ ok: false, why: expect.stringContaining("not this daemon's") });
    // The listener now acts as another uid (access.tcp_uid changed).
    expect(c.check(value, 4242)).toEqual({ ok: false, why: expect.stringContaining('now acts as uid 4242') });
    expect(c.check(value, 0, now)).toMatchObject({ ok: true });
  });

  it('refuses a signed-out cookie, after a restart too, and only that one', () => {
    const dir = stateDir();
    const c = LoginCookies.open(dir, log);
    const out = c.issue(0).value;
    const kept = c.issue(0).value;
    c.revoke(out, 0);
    expect(c.check(out, 0)).toEqual({ ok: false, why: 'the sign-in was ended (signed out)' });
    const again = LoginCookies.open(dir, log);
    expect(again.check(out, 0).ok).toBe(false);
    expect(again.check(kept, 0).ok).toBe(true);
    expect(statSync(join(dir, 'listen-cookie-revoked')).mode & 0o777).toBe(0o600);
  });

  it('makes a new key (every cookie void) when the key file is readable by others or the revocation list is not one', () => {
    const dir = stateDir();
    const value = LoginCookies.open(dir, log).issue(0).value;
    chmodSync(join(dir, 'listen-cookie-key'), 0o644);
    expect(LoginCookies.open(dir, log).check(value, 0).ok).toBe(false);
    expect(statSync(join(dir, 'listen-cookie-key')).mode & 0o777).toBe(0o600);

    const second = LoginCookies.open(dir, log).issue(0).value;
    const key = readFileSync(join(dir, 'listen-cookie-key'), 'utf8');
    writeFileSync(join(dir, 'listen-cookie-revoked'), 'not a line\n', { mode: 0o600 });
    expect(LoginCookies.open(dir, log).check(second, 0).ok).toBe(false);
    expect(readFileSync(join(dir, 'listen-cookie-key'), 'utf8')).not.toBe(key);
  });
});
