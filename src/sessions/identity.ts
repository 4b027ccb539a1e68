// Session ids and host names.
import { randomBytes } from 'node:crypto';
import { DNS_LABEL } from '../isolation/plan.js';

export function newSessionId(): string {
  return 's-' + randomBytes(5).toString('hex');
}

/** A DNS label for the session: its name with '_' as '-', else its id. */
export function hostnameFor(id: string, name: string | null): string {
  const h = (name ?? '').replace(/_/g, '-').replace(/-+$/, '');
  return DNS_LABEL.test(h) ? h : id;
}
