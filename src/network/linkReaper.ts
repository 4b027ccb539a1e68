// The host ends of veth pairs of ended sessions, until they are gone.
//
// A session's netns dies with its last process; the kernel's netns cleanup
// (a workqueue, under rtnl) then removes both ends of its veth pair. Deleting
// the host end ourselves only queues behind that cleanup: measured 15-43 ms
// of a blocked event loop per destroy. So a destroy does not delete the link;
// it hands it here and returns. The session's address stays leased until the
// link is gone (a new session with the same address, hence the same MAC,
// must not share the bridge with the old port and its FDB entries). A link
// that outlives the grace (something outside still holds the netns) is
// deleted. A daemon that dies first leaves the records; start-up hands them
// back here (see SessionManager.start).
import type { Logger } from 'pino';
import { addon } from '../native/addon.js';
import { linkExists } from './hostNetwork.js';

export interface LinkReaperOptions {
  /** Called once the link is gone; false means "not recorded yet, call again". */
  gone: (session: string, link: string) => boolean;
  log: Logger;
  graceMs?: number;
  pollMs?: number;
  /** The kernel, replaceable in a test: does the link exist; delete it. */
  exists?: (link: string) => boolean;
  remove?: (link: string) => void;
}

export class LinkReaper {
  private readonly pending = new Map<string, { link: string; deadline: number }>();
  private timer: NodeJS.Timeout | undefined;
  private readonly graceMs: number;
  private readonly pollMs: number;
  private readonly exists: (link: string) => boolean;
  private readonly remove: (link: string) => void;

  constructor(private readonly opts: LinkReaperOptions) {
    this.graceMs = opts.graceMs ?? 2000;
    this.pollMs = opts.pollMs ?? 25;
    this.exists = opts.exists ?? linkExists;
    this.remove = opts.remove ?? ((link) => void addon().deleteLink(link));
  }

  /** Watch `link` of an ended `session` until it is gone (idempotent). */
  retire(session: string, link: string): void {
    if (!this.pending.has(session)) this.pending.set(session, { link, deadline: Date.now() + this.graceMs });
    this.timer ??= setInterval(() => this.sweep(), this.pollMs).unref();
  }

  /**
   * Done waiting for a session's link now: deleted if it is still there (a
   * start of the same session makes one of that name). Blocks on the
   * kernel's netns cleanup, which a start may: it is not a destroy's path.
   */
  finish(session: string): void {
    const p = this.pending.get(session);
    if (!p) return;
    if (this.exists(p.link)) this.remove(p.link);
    if (this.opts.gone(session, p.link)) this.pending.delete(session);
  }

  /** Sessions whose link is still being waited for. */
  get size(): number {
    return this.pending.size;
  }

  /** One pass: a stat per pending link; a delete only for one past its grace. */
  private sweep(): void {
    const now = Date.now();
    for (const [session, p] of this.pending) {
      if (this.exists(p.link)) {
        if (now < p.deadline) continue;
        // The netns is held from outside the session (an fd, a bind mount): the session is over, its link goes.
        this.remove(p.link);
        this.opts.log.warn({ session, link: p.link, grace_ms: this.graceMs }, 'a destroyed session\'s link outlived its netns teardown; deleted it');
        if (this.exists(p.link)) {
          p.deadline = now + this.graceMs; // tried again after another grace, not on every pass
          continue;
        }
      }
      if (this.opts.gone(session, p.link)) this.pending.delete(session);
    }
    if (this.pending.size === 0) this.close();
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
