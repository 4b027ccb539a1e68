import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { applyReload, LIVE_KEYS, planReload } from '../../src/config/reload.js';

const parse = (text: string) => parseConfig(text, 'test.toml');

describe('config reload', () => {
  it('applies live keys in place and names the rest for a restart, changing nothing of those', () => {
    const running = parse('[sessions]\nstop_grace_ms = 1000\n[network]\nsubnet = "10.9.0.0/16"\n');
    const next = parse(
      '[sessions]\nstop_grace_ms = 3000\nmax_sessions = 7\n[network]\nsubnet = "10.8.0.0/16"\n' +
        '[[access.rules]]\nname = "r"\nuids = [1000]\nactions = ["session.list"]\nscope = "self"\n',
    );
    const accessBefore = running.access;
    const plan = planReload(running, next);
    expect(plan).toEqual({ applied: ['access.rules', 'sessions.stop_grace_ms'], restartNeeded: ['network.subnet', 'sessions.max_sessions'] });
    applyReload(running, next, plan);
    expect(running.sessions.stop_grace_ms).toBe(3000);
    expect(running.access.rules).toEqual(next.access.rules);
    // The same object every part holds, not a copy of it.
    expect(running.access).toBe(accessBefore);
    expect(running.network.subnet).toBe('10.9.0.0/16');
    expect(running.sessions.max_sessions).not.toBe(7);
  });

  it('a change inside a live key applies the whole key; nothing changed, nothing applied', () => {
    const running = parse('[access.budget]\nmemory_mb = { session = 512 }\n');
    const next = parse('[access.budget]\nmemory_mb = { session = 256 }\n');
    expect(planReload(running, next).applied).toEqual(['access.budget']);
    expect(planReload(running, parse('[access.budget]\nmemory_mb = { session = 512 }\n'))).toEqual({ applied: [], restartNeeded: [] });
  });

  it('a copy\'s cap is live: each cp reads it when it starts', () => {
    const running = parse('[api]\nmax_copy_mb = 16\nmax_exec_streams_per_session = 8\n');
    const next = parse('[api]\nmax_copy_mb = 32\nmax_exec_streams_per_session = 9\n');
    const plan = planReload(running, next);
    expect(plan).toEqual({ applied: ['api.max_copy_mb'], restartNeeded: ['api.max_exec_streams_per_session'] });
    applyReload(running, next, plan);
    expect(running.api.max_copy_mb).toBe(32);
  });

  it('every live key is a path of the config', () => {
    const c = parse('') as unknown as Record<string, Record<string, unknown>>;
    for (const key of LIVE_KEYS) {
      const [top, leaf] = key.split('.') as [string, string];
      expect(c[top], key).toBeDefined();
      expect(leaf in c[top]!, key).toBe(true);
    }
  });
});
