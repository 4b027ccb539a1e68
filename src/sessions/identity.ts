// Session ids and host names.
import { randomBytes } from 'node:crypto';

export function newSessionId(): string {
  return 's-' + randomBytes(5).toString('hex');
}

/** A DNS label for the session: its name with '_' as '-', else its id. */
export function hostnameFor(id: string, name: string | null): string {
  const h = (name ?? '').replace(/_/g, '-').replace(/-+$/, '');
  return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(h) ? h : id;
}
