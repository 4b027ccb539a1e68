// Authentication for the optional TCP listener (the browser page). The Unix
// socket identifies callers by SO_PEERCRED; TCP has no such thing, so:
//  - a bearer token (random, written 0600 to the state dir for root to read),
//    sent in the Authorization header, never in a URL;
//  - short-lived single-use tickets, bought with the token, for the one place
//    a browser cannot send headers: the WebSocket URL;
//  - the page's sign-in cookie (src/daemon/loginCookie.ts), bought once with
//    the token, HttpOnly and SameSite=Strict, honoured only on same-origin
//    requests: it survives daemon restarts, the token does not;
//  - Host and Origin checked against an allowlist before anything else.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { ApiError } from '../vocab/errors.js';
import type { LoginCookies } from './loginCookie.js';

const TICKET_TTL_MS = 30_000;

export class ListenAuth {
  private readonly tokenHash: Buffer;
  private readonly tickets = new Map<string, number>(); // sha256(ticket) -> expiry
  readonly allowedHosts: Set<string>;
  readonly allowedOrigins: Set<string>;
  /** Per port: browsers keep cookies per host, not per port, and two daemons may listen on one host. */
  readonly cookieName: string;

  constructor(
    token: string,
    readonly host: string,
    readonly port: number,
    readonly cookies: LoginCookies,
    /** The uid TCP callers act as (access.tcp_uid), read at each use. */
    private readonly uid: () => number,
  ) {
    this.cookieName = `enclave-${port}`;
    this.tokenHash = createHash('sha256').update(token).digest();
    const names = new Set([host, host === '127.0.0.1' ? 'localhost' : host]);
    this.allowedHosts = new Set([...names].map((n) => `${n}:${port}`));
    this.allowedOrigins = new Set([...this.allowedHosts].map((h) => `http://${h}`));
  }

  /** A fresh token, written where only root can read it. */
  static createToken(path: string): string {
    const token = randomBytes(32).toString('base64url');
    writeFileSync(path, token + '\n', { mode: 0o600 });
    chmodSync(path, 0o600);
    return token;
  }

  /** 421 for a Host we do not serve (DNS rebinding), 403 for a foreign Origin. */
  checkOrigin(req: IncomingMessage): void {
    const host = req.headers.host ?? '';
    if (!this.allowedHosts.has(host)) throw new ApiError('misdirected', `host '${host.slice(0, 100)}' is not served here`);
    const origin = req.headers.origin;
    if (origin !== undefined && !this.allowedOrigins.has(origin)) throw new ApiError('forbidden', `origin '${origin.slice(0, 100)}' is not allowed`);
  }

  private tokenMatches(candidate: string): boolean {
    const h = createHash('sha256').update(candidate).digest();
    return timingSafeEqual(h, this.tokenHash);
  }

  /** Bearer token from the Authorization header. */
  checkBearer(req: IncomingMessage): void {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    if (!m || !this.tokenMatches(m[1]!)) throw new ApiError('unauthorized', 'a valid bearer token is required (Authorization: Bearer ...), or the page\'s sign-in cookie');
  }

  /** Our cookie's value in the Cookie header, if the request carries it. */
  cookieOf(req: IncomingMessage): string | undefined {
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === this.cookieName) return part.slice(eq + 1).trim();
    }
    return undefined;
  }

  /**
   * The sign-in cookie, on a request from the page itself: the browser says
   * so (Sec-Fetch-Site: same-origin), or sends an Origin, which checkOrigin
   * has allowed. SameSite=Strict still sends it from another port of the
   * same host (a published session port is one): those requests say
   * same-site or carry their own Origin, and are refused.
   */
  checkCookie(req: IncomingMessage, value: string): void {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined ? site !== 'same-origin' : req.headers.origin === undefined) {
      throw new ApiError('unauthorized', 'the sign-in cookie is good for the page\'s own requests only (same origin)');
    }
    const c = this.cookies.check(value, this.uid());
    if (!c.ok) throw new ApiError('unauthorized', `${c.why}: sign in again with the token from state_dir/listen-token`);
  }

  /** Who may call over TCP: Host and Origin first, then a bearer token or ticket if the request has one, else the cookie. */
  admit(req: IncomingMessage, url: URL, upgrade: boolean): void {
    this.checkOrigin(req);
    const explicit = req.headers.authorization !== undefined || (upgrade && url.searchParams.has('ticket'));
    const cookie = explicit ? undefined : this.cookieOf(req);
    if (cookie !== undefined) return this.checkCookie(req, cookie);
    if (upgrade) this.checkUpgrade(req, url);
    else this.checkBearer(req);
  }

  /** POST /v1/login: the token itself (a cookie does not buy a longer one), then a new cookie. */
  login(req: IncomingMessage): { setCookie: string; expires: Date; uid: number } {
    this.checkBearer(req);
    const uid = this.uid();
    const c = this.cookies.issue(uid);
    return { setCookie: `${this.cookieName}=${c.value}; Path=/; Max-Age=${c.maxAgeS}; HttpOnly; SameSite=Strict`, expires: c.expires, uid };
  }

  /** POST /v1/logout: the request's cookie revoked, and cleared in the browser. */
  logout(req: IncomingMessage): string {
    const value = this.cookieOf(req);
    if (value !== undefined) this.cookies.revoke(value, this.uid());
    return `${this.cookieName}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict`;
  }

  /** The page's Content-Security-Policy: its own scripts, and WebSockets to this listener only. */
  get csp(): string {
    const ws = [...this.allowedHosts].map((h) => `ws://${h}`).join(' ');
    return `default-src 'self'; script-src 'self'; connect-src 'self' ${ws}; style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'`;
  }

  issueTicket(): { ticket: string; expires_in_ms: number } {
    const now = Date.now();
    for (const [k, exp] of this.tickets) if (exp < now) this.tickets.delete(k);
    const ticket = randomBytes(24).toString('base64url');
    this.tickets.set(createHash('sha256').update(ticket).digest('hex'), now + TICKET_TTL_MS);
    return { ticket, expires_in_ms: TICKET_TTL_MS };
  }

  /** WebSocket upgrade: a single-use ticket in the URL, or the bearer header. */
  checkUpgrade(req: IncomingMessage, url: URL): void {
    const ticket = url.searchParams.get('ticket');
    if (ticket !== null) {
      const key = createHash('sha256').update(ticket).digest('hex');
      const exp = this.tickets.get(key);
      this.tickets.delete(key); // single use, valid or not
      if (exp !== undefined && exp >= Date.now()) return;
      throw new ApiError('unauthorized', 'the ticket is unknown, used or expired');
    }
    this.checkBearer(req);
  }
}
