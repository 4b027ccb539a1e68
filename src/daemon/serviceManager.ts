// Readiness for a service manager (systemd's Type=notify): READY=1 once the
// database is checked, sessions are re-adopted and the socket listens;
// STOPPING=1 when a stop begins. NOTIFY_SOCKET comes from the environment,
// so it is validated; it is then removed, so nothing the daemon starts gets it.
import type { Logger } from 'pino';
import { z } from 'zod';
import { addon } from '../native/addon.js';

const notifySocket = z.string().regex(/^[@/][^\0]{1,106}$/, 'must be an absolute path or an @abstract name of at most 107 bytes');

export class ServiceManager {
  private readonly socket: string | undefined;

  constructor(private readonly log: Logger) {
    const raw = process.env.NOTIFY_SOCKET;
    delete process.env.NOTIFY_SOCKET;
    if (raw === undefined) return;
    const r = notifySocket.safeParse(raw);
    if (r.success) this.socket = r.data;
    else log.warn({ reason: r.error.issues[0]?.message }, 'ignoring NOTIFY_SOCKET');
  }

  private send(message: string): void {
    if (!this.socket) return;
    try {
      addon().notify(this.socket, message);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'cannot notify the service manager');
    }
  }

  ready(): void {
    this.send(`READY=1\nMAINPID=${process.pid}\nSTATUS=serving`);
  }

  stopping(): void {
    this.send('STOPPING=1');
  }
}
