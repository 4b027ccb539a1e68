import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { configSchema } from '../../src/config/schema.js';
import { repoRoot } from '../../src/native/addon.js';
import { LIMITS } from '../../src/vocab/limits.js';

describe('config', () => {
  it('documents every key with its default in config.example.toml', () => {
    const example = parseConfig(readFileSync(join(repoRoot, 'config.example.toml'), 'utf8'), 'config.example.toml');
    expect(example).toEqual(configSchema.parse({}));
  });

  it('applies defaults for a partial file and overrides from the command line', () => {
    const c = parseConfig('log_level = "debug"\n[limits]\npids = 64\n', 'x.toml', { state_dir: '/srv/enclave' });
    expect(c.log_level).toBe('debug');
    expect(c.limits).toEqual({ ...Object.fromEntries(LIMITS.map((r) => [r.key, r.default])), pids: 64, oom: 'process' });
    expect(c.limits.memory_mb).toBe(1024);
    expect(c.state_dir).toBe('/srv/enclave');
    expect(c.socket).toBe('/run/enclave/enclave.sock');
  });

  it('names the file and the unknown key', () => {
    expect(() => parseConfig('[limits]\nmemroy_mb = 5\n', '/etc/enclave/config.toml')).toThrow(
      "/etc/enclave/config.toml: unknown field 'limits.memroy_mb'",
    );
    expect(() => parseConfig('colour = "red"\n', 'c.toml')).toThrow("c.toml: unknown field 'colour'");
  });

  it('names the key and the reason for a wrong type or value', () => {
    expect(() => parseConfig('[limits]\npids = "many"\n', 'c.toml')).toThrow(/c\.toml: 'limits\.pids': .*number/);
    expect(() => parseConfig('state_dir = "relative"\n', 'c.toml')).toThrow("c.toml: 'state_dir': must be an absolute path");
    expect(() => parseConfig('[network]\nsubnet = "10.0.0.0"\n', 'c.toml')).toThrow(/'network\.subnet': must be an IPv4 CIDR/);
    expect(() => parseConfig('log_level = "loud"\n', 'c.toml')).toThrow(/'log_level'/);
  });

  it('names where a moved key lives now', () => {
    expect(() => parseConfig('[tmpfs]\nhome_mb = 64\n', 'c.toml')).toThrow("c.toml: 'tmpfs.home_mb' moved to 'limits.home_mb'");
    expect(() => parseConfig('[sessions]\nroot_size_mb = 64\n', 'c.toml')).toThrow("'sessions.root_size_mb' moved to 'limits.root_mb'");
  });

  it('takes sessions.snapshot_timeout_ms, 10 minutes by default, and refuses nonsense', () => {
    expect(parseConfig('', 'c.toml').sessions.snapshot_timeout_ms).toBe(600_000);
    expect(parseConfig('[sessions]\nsnapshot_timeout_ms = 1500\n', 'c.toml').sessions.snapshot_timeout_ms).toBe(1500);
    expect(() => parseConfig('[sessions]\nsnapshot_timeout_ms = 0\n', 'c.toml')).toThrow(/'sessions\.snapshot_timeout_ms'/);
    expect(() => parseConfig('[sessions]\nsnapshot_timeout_ms = "10m"\n', 'c.toml')).toThrow(/'sessions\.snapshot_timeout_ms'/);
  });

  it('refuses ID ranges past the largest host ID', () => {
    expect(() => parseConfig('[ids]\nbase = 4000000000\nsize = 65536\nslots = 10000\n', 'c.toml')).toThrow(/'ids\.slots': ID ranges end at/);
  });

  it('reports TOML syntax errors with the file name', () => {
    expect(() => parseConfig('state_dir = \n', 'broken.toml')).toThrow(ConfigError);
    expect(() => parseConfig('state_dir = \n', 'broken.toml')).toThrow(/^broken\.toml: not valid TOML/);
  });
});
