// What follows a session a drain moves (src/fleet/moveKit.ts kitPlan), and
// what the receiving node accepts of a kit (moveKitSchema).
import { describe, expect, it } from 'vitest';
import { featuresNeeded, groupPlan, kitPlan, MAX_GROUP, moveKitSchema, type KitFacts, type KitPlan } from '../../src/fleet/moveKit.js';
import { sharedSecretsQuery, sharedSecretsSchema } from '../../src/api/fleetSchemas.js';

const vol = (id: string, name: string, owner = 1000, state = 'ready') => ({ id, name, size_mb: 64, owner_uid: owner, state });
const facts = (over: Partial<KitFacts> = {}): KitFacts => ({
  owner: 1000,
  held: [{ owner_uid: 1000, name: 'github' }, { owner_uid: 1000, name: 'OPENAI_API_KEY' }],
  mounts: [{ volume: vol('v-00000000aa', 'code'), others: [] }],
  stored: () => true,
  sharedHere: (o) => o === 0,
  ...over,
});

describe('kitPlan', () => {
  it("takes the owner's secrets and the volumes the session alone mounts (read-only ones too: its copy takes their contents read-write once)", () => {
    expect(kitPlan(facts({ sharedHere: () => false }))).toEqual({ secrets: ['github', 'OPENAI_API_KEY'], volumes: [{ id: 'v-00000000aa', name: 'code', size_mb: 64 }], shared: [], with: [] });
    expect(kitPlan(facts({ held: [], mounts: [] }))).toEqual({ secrets: [], volumes: [], shared: [], with: [] });
  });

  it("names root's shared secrets it declares, not carried: it goes where root shares them (sharedHolders.ts)", () => {
    const held = [{ owner_uid: 1000, name: 'github' }, { owner_uid: 0, name: 'npm' }];
    const sharedHere = (o: number) => o === 0;
    expect(kitPlan(facts({ held, sharedHere }))).toEqual({ secrets: ['github'], volumes: [{ id: 'v-00000000aa', name: 'code', size_mb: 64 }], shared: [{ owner_uid: 0, name: 'npm' }], with: [] });
    // Root's own session too: a secret root shares is never carried (a copy would be shared with every user there); its unshared ones are.
    const rootHeld = [{ owner_uid: 0, name: 'npm' }, { owner_uid: 0, name: 'deploy' }];
    expect(kitPlan(facts({ owner: 0, held: rootHeld, mounts: [], sharedHere: (_o, n) => n === 'npm' }))).toEqual({ secrets: ['deploy'], volumes: [], shared: [{ owner_uid: 0, name: 'npm' }], with: [] });
  });

  it('keeps the session where it is, saying why, when any of them cannot follow', () => {
    const stays = (f: KitFacts) => {
      const p = kitPlan(f);
      return 'stays' in p ? p.stays : undefined;
    };
    expect(stays(facts({ held: [{ owner_uid: 0, name: 'npm' }], sharedHere: () => false }))).toMatch(/uid 0's secret npm, which it declares, is no longer shared/);
    expect(stays(facts({ stored: (_o, n) => n !== 'github' }))).toMatch(/secret github is no longer stored/);
    const others = [{ id: 's-00000000b1', state: 'stopped' }, { id: 's-00000000b2', state: 'running' }];
    expect(stays(facts({ mounts: [{ volume: vol('v-00000000aa', 'code'), others }] }))).toBe('volume code is mounted by session s-00000000b2 too, which is running: they move together once it is stopped');
    expect(stays(facts({ mounts: [{ volume: vol('v-00000000aa', 'code', 0), others: [] }] }))).toMatch(/uid 0's volume code/);
    expect(stays(facts({ mounts: [{ volume: undefined, others: [] }] }))).toMatch(/gone/);
    expect(stays(facts({ mounts: [{ volume: vol('v-00000000aa', 'code', 1000, 'removing'), others: [] }] }))).toMatch(/being removed/);
  });

  it('names the stopped sessions that share its volumes: they move with it', () => {
    const mounts = [
      { volume: vol('v-00000000aa', 'code'), others: [{ id: 's-00000000b1', state: 'stopped' }] },
      { volume: vol('v-00000000bb', 'cache'), others: [{ id: 's-00000000b1', state: 'stopped' }, { id: 's-00000000b3', state: 'stopped' }] },
    ];
    expect(kitPlan(facts({ mounts }))).toMatchObject({ with: ['s-00000000b1', 's-00000000b3'] });
  });
});

describe('featuresNeeded', () => {
  it('sends a read-only volume of a session that may remount only to a node that stages it', () => {
    const ro = [{ name: 'code', target: '/srv', readonly: true }];
    expect(featuresNeeded({ profile: 'system', volumes: ro })).toEqual(['staged-ro-volumes']);
    expect(featuresNeeded({ volumes: ro })).toEqual(['staged-ro-volumes']); // the receiving node's default profile decides
    for (const profile of ['workspace', 'strict'] as const) expect(featuresNeeded({ profile, volumes: ro })).toEqual([]);
    expect(featuresNeeded({ profile: 'system', volumes: [{ name: 'code', target: '/srv', readonly: false }] })).toEqual([]);
    expect(featuresNeeded({ profile: 'system' })).toEqual([]);
  });
});

describe('moveKitSchema', () => {
  const kit = { secrets: [{ name: 'github', value_base64: 'c2VjcmV0', shared: false }], volumes: [{ id: 'v-00000000aa', name: 'code', size_mb: 64 }] };
  it('accepts a kit as a node sends it', () => {
    expect(moveKitSchema.parse(kit)).toEqual(kit);
  });
  it('refuses names and ids a node could not have sent, and anything more', () => {
    for (const bad of [
      { ...kit, secrets: [{ ...kit.secrets[0], name: '../etc' }] },
      { ...kit, secrets: [{ ...kit.secrets[0], value_base64: 'not base64!' }] },
      { ...kit, volumes: [{ ...kit.volumes[0], id: 'v-../../x' }] },
      { ...kit, volumes: [{ ...kit.volumes[0], name: '/abs' }] },
      { ...kit, volumes: [{ ...kit.volumes[0], size_mb: 1 }] },
      { ...kit, extra: 1 },
      { ...kit, volumes: Array.from({ length: 129 }, () => kit.volumes[0]) },
    ]) {
      expect(moveKitSchema.safeParse(bad).success, JSON.stringify(bad).slice(0, 80)).toBe(false);
    }
  });
});

describe('sharedSecretsQuery and its answer', () => {
  const nonce = 'ab'.repeat(16);
  it('takes UID:NAME references and a hex nonce, as a drained node asks', () => {
    expect(sharedSecretsQuery.parse({ refs: '0:npm,0:GH_TOKEN', nonce })).toEqual({ refs: '0:npm,0:GH_TOKEN', nonce });
    expect(sharedSecretsSchema.parse({ secrets: [{ ref: '0:npm', mac: 'f'.repeat(64) }] }).secrets).toHaveLength(1);
  });
  it('refuses a bare name (whose?), a bad name, too many, a short or upper-case nonce, and anything more', () => {
    for (const bad of [
      { refs: 'npm', nonce },
      { refs: '0:../x', nonce },
      { refs: '0:npm,', nonce },
      { refs: Array.from({ length: 129 }, (_, i) => `0:n${i}`).join(','), nonce },
      { refs: '0:npm', nonce: 'ab' },
      { refs: '0:npm', nonce: 'AB'.repeat(16) },
      { refs: '0:npm', nonce, extra: '1' },
    ]) {
      expect(sharedSecretsQuery.safeParse(bad).success, JSON.stringify(bad).slice(0, 80)).toBe(false);
    }
    for (const bad of [{ secrets: [{ ref: '0:npm', mac: 'x' }] }, { secrets: [], more: 1 }]) expect(sharedSecretsSchema.safeParse(bad).success).toBe(false);
  });
});

describe('groupPlan', () => {
  const plan = (volumes: string[], withThem: string[]): KitPlan => ({ secrets: [], volumes: volumes.map((id) => ({ id, name: id.slice(-2), size_mb: 64 })), shared: [], with: withThem });
  // s1 and s2 share v1, s2 and s3 share v2: one group of three; s4 alone.
  const plans: Record<string, KitPlan | { stays: string }> = {
    's-0000000003': plan(['v-00000000v2'], ['s-0000000002']),
    's-0000000001': plan(['v-00000000v1'], ['s-0000000002']),
    's-0000000002': plan(['v-00000000v2', 'v-00000000v1'], ['s-0000000001', 's-0000000003']),
    's-0000000004': plan(['v-00000000v4'], []),
  };
  it('takes every session that shares a volume with it, transitively, in id order, each volume made by the first that mounts it', () => {
    for (const from of ['s-0000000001', 's-0000000003']) {
      const g = groupPlan(from, (id) => plans[id]);
      if ('stays' in g) throw new Error(g.stays);
      expect(g.members.map((m) => m.id)).toEqual(['s-0000000001', 's-0000000002', 's-0000000003']);
      expect([...g.makers]).toEqual([
        ['v-00000000v1', 's-0000000001'],
        ['v-00000000v2', 's-0000000002'],
      ]);
    }
    const alone = groupPlan('s-0000000004', (id) => plans[id]);
    expect('stays' in alone ? alone.stays : alone.members.map((m) => m.id)).toEqual(['s-0000000004']);
  });
  it('keeps them all where they are when one of them stays, or is gone, or there are too many', () => {
    const stays = (from: string, p: (id: string) => KitPlan | { stays: string } | undefined) => {
      const g = groupPlan(from, p);
      return 'stays' in g ? g.stays : undefined;
    };
    expect(stays('s-0000000001', (id) => (id === 's-0000000003' ? { stays: 'its secret x is no longer stored' } : plans[id]))).toBe('it shares a volume with session s-0000000003, which stays: its secret x is no longer stored');
    expect(stays('s-0000000001', (id) => (id === 's-0000000002' ? undefined : plans[id]))).toBe('it shares a volume with session s-0000000002, which stays (gone)');
    expect(stays('s-0000000001', (id) => (id === 's-0000000001' ? { stays: 'own reason' } : plans[id]))).toBe('own reason');
    const ring = (id: string) => plan(['v-0000000ring'], Array.from({ length: MAX_GROUP + 1 }, (_, i) => `s-${String(i + 1).padStart(10, '0')}`).filter((x) => x !== id));
    expect(stays('s-0000000001', ring)).toMatch(new RegExp(`a drain moves at most ${MAX_GROUP} together`));
    const full = (id: string) => plan(['v-0000000ring'], Array.from({ length: MAX_GROUP }, (_, i) => `s-${String(i + 1).padStart(10, '0')}`).filter((x) => x !== id));
    expect(stays('s-0000000001', full)).toBeUndefined();
  });
});
