// The list's table (`enclave session list`, the daemon's ?format=text):
// its columns, and the cells a kept (deep-frozen) row keeps between tables.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sessionTable, type SessionListed } from '../../src/api/render.js';
import { deepFreeze } from '../../src/vocab/frozen.js';

const NOW = Date.parse('2026-12-07T10:00:00Z');
const row = (n: number, o: Partial<SessionListed> = {}): SessionListed => ({
  id: `s-000000000${n}`,
  name: `web${n}`,
  owner_uid: 0,
  state: 'running',
  hostname: `h${n}`,
  init_pid: 100 + n,
  id_range: { host_base: 65536 * n, size: 65536 },
  created_at: new Date(NOW - 30_000 * n).toISOString(),
  network: { mode: 'bridge', address: `10.0.0.${n}` },
  ...o,
});

describe('the session table', () => {
  afterEach(() => void vi.useRealTimers());

  it('prints the columns padded, the owner only when one is not the caller, the node in a fleet', () => {
    vi.useFakeTimers({ now: NOW });
    expect(sessionTable([row(1), row(2, { name: null, init_pid: null, id_range: null, network: { mode: 'none', address: null } })], 0)).toBe(
      'ID            NAME  STATE    HOSTNAME  ADDRESS   PID  HOST IDS     AGE\n' +
        's-0000000001  web1  running  h1        10.0.0.1  101  65536+65536  30s\n' +
        's-0000000002  -     running  h2        none      -    -            60s\n',
    );
    expect(sessionTable([row(1, { node: 'a' }), row(5, { owner_uid: 1000, node: 'node-b' })], 0)).toBe(
      'ID            NAME  OWNER     STATE    NODE    HOSTNAME  ADDRESS   PID  HOST IDS      AGE\n' +
        's-0000000001  web1  uid 0     running  a       h1        10.0.0.1  101  65536+65536   30s\n' +
        's-0000000005  web5  uid 1000  running  node-b  h5        10.0.0.5  105  327680+65536  3m\n',
    );
  });

  it('prints kept rows as it prints the same rows made afresh: widths that change, columns that come and go, ages that move', () => {
    vi.useFakeTimers({ now: NOW });
    const kept = [1, 2, 3].map((n) => deepFreeze(row(n, { node: 'a' })));
    const fresh = () => kept.map((r) => structuredClone(r) as SessionListed);
    expect(sessionTable(kept, 0)).toBe(sessionTable(fresh(), 0));
    // A longer name elsewhere widens NAME; another owner's row adds OWNER; both go again.
    const wide = row(4, { name: 'a-much-longer-name', owner_uid: 7, node: 'b' });
    expect(sessionTable([...kept, wide], 0)).toBe(sessionTable([...fresh(), wide], 0));
    expect(sessionTable([...kept, wide], 0)).toContain('s-0000000001  web1                uid 0  running  a');
    expect(sessionTable(kept, 0)).toBe(sessionTable(fresh(), 0));
    expect(sessionTable(kept, 7)).toBe(sessionTable(fresh(), 7));
    // Time passes: the kept rows' ages move with it.
    vi.setSystemTime(NOW + 3 * 3600_000);
    const later = sessionTable(kept, 0);
    expect(later).toBe(sessionTable(fresh(), 0));
    expect(later.split('\n')[1]).toMatch(/ 3h$/);
  });
});
