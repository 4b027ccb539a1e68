import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/store/db.js';
import { AddressesExhaustedError, PortTakenError, SessionStore } from '../../src/store/sessionStore.js';
import { hostIfName, intToIp, ipToInt, macFor, parseSubnet } from '../../src/network/addressing.js';
import { sessionDb, type SessionDb } from './fixtures/sessionDb.js';

describe('addressing', () => {
  it('splits a subnet into gateway and leasable range', () => {
    const s = parseSubnet('10.200.0.0/16');
    expect(intToIp(s.network)).toBe('10.200.0.0');
    expect(intToIp(s.gateway)).toBe('10.200.0.1');
    expect(intToIp(s.first)).toBe('10.200.0.2');
    expect(intToIp(s.last)).toBe('10.200.255.254');
    expect(intToIp(parseSubnet('172.31.5.77/24').network)).toBe('172.31.5.0');
    expect(() => parseSubnet('10.0.0.0/30')).toThrow(/prefix/);
  });
  it('derives the MAC from the address and the link name from the id', () => {
    expect(macFor(ipToInt('10.200.1.254'))).toBe('02:00:0a:c8:01:fe');
    expect(hostIfName('s-0123456789')).toBe('ve-0123456789');
    expect(hostIfName('s-0123456789').length).toBeLessThanOrEqual(15);
    expect(() => ipToInt('10.0.0.256')).toThrow(RangeError);
  });
});

describe('IPAM in SQLite', () => {
  const t = sessionDb('ipam');
  const create = (extra: Parameters<SessionDb['create']>[0] = {}) => t.create({ addresses: range, ...extra });
  const range = { first: ipToInt('10.9.0.2'), last: ipToInt('10.9.0.5') }; // four addresses

  it('leases the lowest free address, one per session', () => {
    const a = create();
    const b = create();
    expect(intToIp(t.store.leaseOf(a.id)!)).toBe('10.9.0.2');
    expect(intToIp(t.store.leaseOf(b.id)!)).toBe('10.9.0.3');
    expect(a.network).toBe('bridge');
  });

  it('gives an address back on finish and reuses it', () => {
    const a = create();
    create();
    t.store.settle(a.id, 'destroyed');
    expect(t.store.leaseOf(a.id)).toBeUndefined();
    const c = create();
    expect(intToIp(t.store.leaseOf(c.id)!)).toBe('10.9.0.2');
  });

  it('fails cleanly when the pool is exhausted, leaving nothing half-made', () => {
    for (let i = 0; i < 4; i++) create();
    const before = t.store.list(true).length;
    expect(() => create()).toThrow(AddressesExhaustedError);
    expect(t.store.list(true).length).toBe(before); // the transaction rolled back
  });

  it('keeps leases across a reopen of the database', () => {
    const a = create();
    t.db.close();
    t.db = openDatabase(t.dir);
    t.store = new SessionStore(t.db);
    expect(intToIp(t.store.leaseOf(a.id)!)).toBe('10.9.0.2');
    expect(intToIp(t.store.leaseOf(create().id)!)).toBe('10.9.0.3');
  });

  it('leases nothing for a session without network', () => {
    const s = create({ addresses: undefined });
    expect(s.network).toBe('none');
    expect(t.store.leaseOf(s.id)).toBeUndefined();
  });

  it('refuses a host port another live session publishes, and frees it on finish', () => {
    const port = { host_ip: '127.0.0.1', host_port: 8080, session_port: 80 };
    const a = create({ publish: [port] });
    expect(() => create({ publish: [port] })).toThrow(PortTakenError);
    t.store.settle(a.id, 'destroyed');
    const b = create({ publish: [port] });
    expect(t.store.portsOf(b.id)).toEqual([port]);
  });
});
