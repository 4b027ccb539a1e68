// What follows a session a drain moves (src/fleet/moveKit.ts kitPlan), and
// what the receiving node accepts of a kit (moveKitSchema).
import { describe, expect, it } from 'vitest';
import { featuresNeeded, kitPlan, moveKitSchema, type KitFacts } from '../../src/fleet/moveKit.js';
import { sharedSecretsQuery, sharedSecretsSchema } from '../../src/api/fleetSchemas.js';

const vol = (id: string, name: string, owner = 1000, state = 'ready') => ({ id, name, size_mb: 64, owner_uid: owner, state });
const facts = (over: Partial<KitFacts> = {}): KitFacts => ({
  owner: 1000,
  held: [{ owner_uid: 1000, name: 'github' }, { owner_uid: 1000, name: 'OPENAI_API_KEY' }],
  mounts: [{ volume: vol('v-00000000aa', 'code'), others: 0 }],
  stored: () => true,
  sharedHere: () => true,
  ...over,
});

describe('kitPlan', () => {
  it("takes the owner's secrets and the volumes the session alone mounts (read-only ones too: its copy takes their contents read-write once)", () => {
    expect(kitPlan(facts())).toEqual({ secrets: ['github', 'OPENAI_API_KEY'], volumes: [{ id: 'v-00000000aa', name: 'code', size_mb: 64 }], shared: [] });
    expect(kitPlan(facts({ held: [], mounts: [] }))).toEqual({ secrets: [], volumes: [], shared: [] });
  });

  it("names root's shared secrets it declares, not carried: it goes where root shares them (sharedHolders.ts)", () => {
    const held = [{ owner_uid: 1000, name: 'github' }, { owner_uid: 0, name: 'npm' }];
    expect(kitPlan(facts({ held }))).toEqual({ secrets: ['github'], volumes: [{ id: 'v-00000000aa', name: 'code', size_mb: 64 }], shared: [{ owner_uid: 0, name: 'npm' }] });
  });

  it('keeps the session where it is, saying why, when any of them cannot follow', () => {
    const stays = (f: KitFacts) => {
      const p = kitPlan(f);
      return 'stays' in p ? p.stays : undefined;
    };
    expect(stays(facts({ held: [{ owner_uid: 0, name: 'npm' }], sharedHere: () => false }))).toMatch(/uid 0's secret npm, which it declares, is no longer shared/);
    expect(stays(facts({ stored: (_o, n) => n !== 'github' }))).toMatch(/secret github is no longer stored/);
    expect(stays(facts({ mounts: [{ volume: vol('v-00000000aa', 'code'), others: 2 }] }))).toMatch(/mounted by 2 other sessions/);
    expect(stays(facts({ mounts: [{ volume: vol('v-00000000aa', 'code', 0), others: 0 }] }))).toMatch(/uid 0's volume code/);
    expect(stays(facts({ mounts: [{ volume: undefined, others: 0 }] }))).toMatch(/gone/);
    expect(stays(facts({ mounts: [{ volume: vol('v-00000000aa', 'code', 1000, 'removing'), others: 0 }] }))).toMatch(/being removed/);
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
