// The access policy, as a pure function: root, deny wins, self scope, gid
// matches, families of actions, and rules the config refuses.
import { describe, expect, it } from 'vitest';
import { decide, grantsProfile, ruleSchema, type Rule } from '../../src/access/policy.js';

const rule = (r: Record<string, unknown>): Rule => ruleSchema.parse(r);

describe('access policy', () => {
  const rules = [
    rule({ name: 'devs-own', gids: [2000], actions: ['session.*'], scope: 'self' }),
    rule({ name: 'ops', uids: [1001], actions: ['*'] }),
    rule({ name: 'no-destroy', uids: [1002], actions: ['session.destroy'], effect: 'deny' }),
    rule({ uids: [1002], actions: ['session.destroy', 'session.show'] }),
  ];
  const dev = { uid: 1002, gids: [2000] };

  it('always allows root, and denies anyone no rule allows', () => {
    expect(decide([], { uid: 0, gids: [] }, 'session.destroy', 5)).toEqual({ allow: true, rule: 'root', scope: 'all' });
    expect(decide(rules, { uid: 4242, gids: [4242] }, 'session.list')).toEqual({ allow: false, rule: 'default', scope: 'self' });
  });

  it('limits a self rule to the caller’s own sessions (create and list have no target)', () => {
    expect(decide(rules, dev, 'session.exec', 1002)).toEqual({ allow: true, rule: 'devs-own', scope: 'self' });
    expect(decide(rules, dev, 'session.exec', 7)).toEqual({ allow: false, rule: 'default', scope: 'self' });
    expect(decide(rules, dev, 'session.exec', null)).toEqual({ allow: false, rule: 'default', scope: 'self' });
    expect(decide(rules, dev, 'session.create')).toEqual({ allow: true, rule: 'devs-own', scope: 'self' });
    expect(decide(rules, dev, 'auth.set')).toEqual({ allow: false, rule: 'default', scope: 'self' });
  });

  it('lets a deny win over any allow', () => {
    expect(decide(rules, dev, 'session.destroy', 1002)).toEqual({ allow: false, rule: 'no-destroy', scope: 'self' });
    expect(decide(rules, dev, 'session.show', 7)).toEqual({ allow: true, rule: 'rules[3]', scope: 'all' });
  });

  it('matches * and families', () => {
    expect(decide(rules, { uid: 1001, gids: [] }, 'events.list')).toEqual({ allow: true, rule: 'ops', scope: 'all' });
    expect(decide(rules, { uid: 1001, gids: [] }, 'auth.remove')).toEqual({ allow: true, rule: 'ops', scope: 'all' });
  });

  it('says how far a listing reaches: an "all" rule wins over a "self" one for the same action', () => {
    const both = [rule({ name: 'own', gids: [2000], actions: ['events.list'], scope: 'self' }), rule({ name: 'auditors', uids: [1002], actions: ['events.list'] })];
    expect(decide(both, dev, 'events.list')).toEqual({ allow: true, rule: 'auditors', scope: 'all' });
    expect(decide(both, { uid: 1003, gids: [2000] }, 'events.list')).toEqual({ allow: true, rule: 'own', scope: 'self' });
  });

  it('refuses rules that match nobody or name no action', () => {
    expect(ruleSchema.safeParse({ actions: ['session.list'] }).success).toBe(false);
    expect(ruleSchema.safeParse({ uids: [1], actions: ['session.nuke'] }).success).toBe(false);
    expect(ruleSchema.safeParse({ uids: [1], actions: ['box.*'] }).success).toBe(false);
    expect(ruleSchema.safeParse({ uids: [1], actions: ['auth.*'], scope: 'mine' }).success).toBe(false);
    expect(ruleSchema.safeParse({ uids: [1], actions: [] }).success).toBe(false);
  });
});

describe('profiles a rule grants', () => {
  const rules = [
    ruleSchema.parse({ name: 'tenants', gids: [100], actions: ['session.*'], scope: 'self' }),
    ruleSchema.parse({ name: 'builders', uids: [1001], actions: ['session.create'], profiles: ['workspace', 'system'] }),
  ];
  it('gives workspace and strict to any allowed creator, system only where a rule names it, and root everything', () => {
    expect(grantsProfile(rules, { uid: 1000, gids: [100] }, 'workspace')).toEqual({ allow: true, rule: 'tenants' });
    expect(grantsProfile(rules, { uid: 1000, gids: [100] }, 'strict').allow).toBe(true);
    expect(grantsProfile(rules, { uid: 1000, gids: [100] }, 'system')).toEqual({ allow: false, rule: 'profiles' });
    expect(grantsProfile(rules, { uid: 1001, gids: [] }, 'system')).toEqual({ allow: true, rule: 'builders' });
    expect(grantsProfile(rules, { uid: 1001, gids: [] }, 'strict').allow).toBe(false); // its only rule lists workspace and system
    expect(grantsProfile([], { uid: 0, gids: [] }, 'system')).toEqual({ allow: true, rule: 'root' });
  });
  it('takes profiles only on an allow rule for session.create', () => {
    expect(() => ruleSchema.parse({ uids: [1], actions: ['session.list'], profiles: ['system'] })).toThrow(/profiles belongs on an allow rule/);
    expect(() => ruleSchema.parse({ uids: [1], actions: ['session.create'], effect: 'deny', profiles: ['system'] })).toThrow(/profiles belongs/);
    expect(() => ruleSchema.parse({ uids: [1], actions: ['session.create'], profiles: ['root'] })).toThrow();
  });
});
