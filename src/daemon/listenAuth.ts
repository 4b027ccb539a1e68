// Authentication for the optional TCP listener (the browser page). The Unix
// socket identifies callers by SO_PEERCRED; TCP has no such thing, so:
//  - a bearer token (random, written 0600 to the state dir for root to read),
//    sent in the Authorization header, never in a URL;
//  - short-lived single-use tickets, bought with the token, for the one place
//    a browser cannot send headers: the WebSocket URL;
//  - Host and Origin checked against an allowlist before anything else.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { ApiError } from '../vocab/errors.js';

const TICKET_TTL_MS = 30_000;

export class ListenAuth {
  private readonly tokenHash: Buffer;
  private readonly tickets = new Map<string, number>(); // sha256(ticket) -> expiry
  readonly allowedHosts: Set<string>;
  readonly allowedOrigins: Set<string>;

  constructor(
    token: string,
    readonly host: string,
    readonly port: number,
  ) {
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
    if (!m || !this.tokenMatches(m[1]!)) throw new ApiError('unauthorized', 'a valid bearer token is required (Authorization: Bearer ...)');
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
