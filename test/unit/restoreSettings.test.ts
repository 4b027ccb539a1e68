// The pure parts of issue 24: create --from's merge of a snapshot's settings
// and the command line's flags, the manifest schema a hostile snapshot must
// pass, a tar header's checksum, and the disk room a volume grow needs.
import { describe, expect, it } from 'vitest';
import { manifestSchema, type Manifest } from '../../src/api/manifest.js';
import { restoredName, restorePlan } from '../../src/cli/restoreSettings.js';
import { tarHeader } from '../../src/cli/snapshotHead.js';
import { volumeRoom } from '../../src/isolation/capacity.js';

const base = { format: 'enclave-snapshot', version: 1, session: 's-1', created_at: '2026-01-01T00:00:00Z', parts: ['/', '/home'], entries: 3, deleted: 0, snapshot_id: 'abcdef012345' };
const manifest = (extra: Record<string, unknown>): Manifest => manifestSchema.parse({ ...base, ...extra });

describe('create --from settings', () => {
  const m = manifest({
    settings: { memory_mb: 300, pids: 300, network: 'bridge', publish: [{ host_ip: '127.0.0.1', host_port: 8080, session_port: 80 }], auth: ['github'], env: ['A=1'], volumes: [{ name: 'data', target: '/work', readonly: false }], idle_timeout_s: 600 },
  });

  it('takes every setting, and a flag wins over the one it names', () => {
    const p = restorePlan({ memory_mb: 200 }, m, true);
    expect(p.body).toMatchObject({ memory_mb: 200, pids: 300, auth: ['github'], env: ['A=1'], idle_timeout_s: 600, volumes: [{ name: 'data', target: '/work', readonly: false }] });
    expect(p.volumes).toEqual([]);
    expect(p.notes).toEqual([]);
  });

  it('a list flag replaces the whole list; --network none drops the ports with a note', () => {
    const p = restorePlan({ auth: ['claude'], network: 'none' }, m, true);
    expect(p.body.auth).toEqual(['claude']);
    expect(p.body.publish).toBeUndefined();
    expect(p.notes).toEqual(["the snapshot's published ports are not taken: --network none"]);
  });

  it('--no-settings and a snapshot without settings take the flags only', () => {
    expect(restorePlan({ pids: 50 }, m, false).body).toEqual(expect.not.objectContaining({ memory_mb: 300 }));
    expect(restorePlan({}, manifest({}), true).body.memory_mb).toBeUndefined();
    expect(restorePlan({}, undefined, true).body.memory_mb).toBeUndefined();
  });

  it("mounts the snapshot's volumes as new ones named after it, unless --volume replaces them", () => {
    const mv = manifest({ settings: { volumes: [{ name: 'data', target: '/work', readonly: false }, { name: '0:shared', target: '/ref', readonly: true }] }, volumes: [{ index: 0, name: 'data', target: '/work', readonly: false, size_mb: 64 }] });
    const p = restorePlan({}, mv, true);
    expect(p.volumes).toEqual([{ index: 0, name: restoredName('data', 'abcdef012345'), size_mb: 64 }]);
    expect(p.body.volumes).toEqual([{ name: 'data-abcdef', target: '/work', readonly: false }, { name: '0:shared', target: '/ref', readonly: true }]);
    const q = restorePlan({ volumes: [{ name: 'mine', target: '/x', readonly: false }] }, mv, true);
    expect([q.volumes, q.notes]).toEqual([[], ['the snapshot holds the contents of 1 volume(s), not restored: --volume replaces its volumes']]);
  });

  it('a setting the create schema refuses names where it came from', () => {
    const bad = manifest({ settings: { profile: 'strict', memory_mb: 100 } });
    expect(() => restorePlan({ memory_mb: 1e9 }, bad, true)).toThrow(/memory_mb/);
  });
});

describe('the manifest schema (hostile input)', () => {
  it('refuses unknown fields, wrong types, escaping targets, volumes that are not mounts of the settings', () => {
    for (const extra of [
      { settings: { privileged: true } },
      { settings: { memory_mb: 'lots' } },
      { settings: { volumes: [{ name: 'd', target: '/../etc' }] } },
      { settings: {}, volumes: [{ index: 0, name: 'd', target: '/x', readonly: false, size_mb: 64 }] },
      { settings: { volumes: [{ name: 'd', target: '/x' }] }, volumes: [{ index: 1, name: 'd', target: '/x', readonly: false, size_mb: 64 }] },
      { snapshot_id: undefined, settings: { volumes: [{ name: 'd', target: '/x' }] }, volumes: [{ index: 0, name: 'd', target: '/x', readonly: false, size_mb: 64 }] },
      { format: 'tar' },
    ]) {
      expect(manifestSchema.safeParse({ ...base, ...extra }).success).toBe(false);
    }
    expect(manifestSchema.safeParse({ ...base, settings: { volumes: [{ name: 'd', target: '/x' }] }, volumes: [{ index: 0, name: 'd', target: '/x', readonly: false, size_mb: 64 }] }).success).toBe(true);
  });
});

describe('a tar header', () => {
  const header = (name: string) => {
    const h = Buffer.alloc(512);
    h.write(name, 0, 'latin1');
    h.write('0000644\0', 100, 'latin1');
    h.write('00000000000\0', 124, 'latin1');
    h.write('0', 156, 'latin1');
    h.write('ustar\x0000', 257, 'latin1');
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    return h;
  };

  it('is taken only when its checksum holds', () => {
    expect(tarHeader(header('a/b'))).toEqual({ name: 'a/b', size: 0, type: '0' });
    const bad = header('a/b');
    bad[0] = 0x7a;
    expect(tarHeader(bad)).toBeUndefined();
    expect(tarHeader(Buffer.alloc(512))).toBeUndefined();
  });
});

describe('volume room', () => {
  it('keeps the reserve beside every promise', () => {
    expect(volumeRoom({ freeMb: 1000, promisedMb: 300, reserveMb: 200 }, 500)).toBe(true);
    expect(volumeRoom({ freeMb: 1000, promisedMb: 300, reserveMb: 200 }, 501)).toBe(false);
  });
});
