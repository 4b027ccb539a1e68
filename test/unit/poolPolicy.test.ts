// The pool's policy (src/sessions/poolPolicy.ts): which creates a session
// made ahead can serve, and when to make one more.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { memberRequest, POOL_SHAPES, refillNow, shapeFor } from '../../src/sessions/poolPolicy.js';
import type { CreateSessionRequest } from '../../src/api/schemas.js';

const config = (pool = 'workspace_bridge = 2\nstrict_none = 1') => parseConfig(`[pool]\n${pool}\n[limits]\nmemory_mb = 512\n`, 'test');

describe('which creates a pool member serves', () => {
  const c = config();

  it('the default create, by the config default profile and network, and what a row can take at hand-out', () => {
    for (const req of [{}, { network: 'bridge' }, { profile: 'workspace' }, { console: true }, { idle_timeout_s: 60 }, { memory_mb: 512 }, { name: 'web' }, { name: 'Not_A_Label' }] as CreateSessionRequest[]) {
      expect(shapeFor(c, req, 0), JSON.stringify(req)).toEqual({ shape: 'workspace_bridge' });
    }
    expect(shapeFor(c, { profile: 'strict', network: 'none' }, 0)).toEqual({ shape: 'strict_none' });
  });

  it('anything in the plan, the kernel objects or the root of a session takes the cold path', () => {
    const cold: [CreateSessionRequest, string][] = [
      [{ publish: [{ host_ip: '127.0.0.1', host_port: 8080, session_port: 80 }] }, 'publish'],
      [{ volumes: [{ name: 'data', target: '/srv', readonly: false }] }, 'volumes'],
      [{ env: ['A=1'] }, 'env'],
      [{ auth: ['github'] }, 'secrets'],
      [{ env_tokens: ['TOKEN'] }, 'secrets'],
      [{ ssh_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEnclaveTestKeyxxxxxxxxxxxxxxxxxxxxxxxxxxx x' }, 'ssh_key'],
      [{ root_mb: 1024 }, 'root_mb'],
      [{ memory_mb: 256 }, 'memory_mb'],
      [{ profile: 'system' }, 'profile system'],
      [{ network: 'none' }, 'no pool for workspace_none'],
      [{ profile: 'strict' }, 'no pool for strict_bridge'],
    ];
    for (const [req, why] of cold) expect(shapeFor(c, req, 0), JSON.stringify(req)).toEqual({ cold: why });
    // Volumes resolved by the caller count even when the request's list is gone.
    expect(shapeFor(c, {}, 1)).toEqual({ cold: 'volumes' });
    // Empty lists ask for nothing.
    expect(shapeFor(c, { publish: [], env: [], auth: [], env_tokens: [], secret_users: {} }, 0)).toEqual({ shape: 'workspace_bridge' });
  });

  it('with no pool configured every create is cold', () => {
    const off = parseConfig('', 'test');
    for (const s of POOL_SHAPES) expect(off.pool[s]).toBe(0);
    expect(shapeFor(off, {}, 0)).toEqual({ cold: 'no pool for workspace_bridge' });
  });

  it('a member is made from the defaults of its shape alone', () => {
    for (const s of POOL_SHAPES) {
      const req = memberRequest(s);
      expect(Object.keys(req).sort()).toEqual(['network', 'profile']);
      expect(shapeFor(parseConfig(`[pool]\n${s} = 1\n`, 'test'), req, 0)).toEqual({ shape: s });
    }
  });

  it('the config refuses a pool past its bound or of an unknown shape', () => {
    expect(() => parseConfig('[pool]\nworkspace_bridge = 17\n', 'test')).toThrow(/pool/);
    expect(() => parseConfig('[pool]\nsystem_bridge = 1\n', 'test')).toThrow(/pool/);
  });
});

describe('refill bounds', () => {
  it('one member at a time, up to the size', () => {
    expect(refillNow(2, { ready: 0, filling: 0, active: 0 }, 100)).toBe(true);
    expect(refillNow(2, { ready: 1, filling: 0, active: 1 }, 100)).toBe(true);
    expect(refillNow(2, { ready: 2, filling: 0, active: 2 }, 100)).toBe(false);
    expect(refillNow(2, { ready: 0, filling: 1, active: 1 }, 100)).toBe(false);
    expect(refillNow(0, { ready: 0, filling: 0, active: 0 }, 100)).toBe(false);
  });

  it('never the host\'s last place', () => {
    expect(refillNow(2, { ready: 0, filling: 0, active: 98 }, 100)).toBe(true);
    expect(refillNow(2, { ready: 0, filling: 0, active: 99 }, 100)).toBe(false);
    expect(refillNow(2, { ready: 0, filling: 0, active: 0 }, 1)).toBe(false);
  });
});
