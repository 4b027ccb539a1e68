// The shipped systemd unit: what it must say, and that systemd itself
// accepts it (systemd-analyze verify prints nothing for a clean unit).
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../src/native/addon.js';

const unit = readFileSync(join(repoRoot, 'contrib', 'enclave.service'), 'utf8');
const key = (k: string) => unit.split('\n').filter((l) => l.startsWith(`${k}=`)).map((l) => l.slice(k.length + 1));

describe('contrib/enclave.service', () => {
  it('never kills sessions on stop, and is ready only when the daemon says so', () => {
    expect(key('KillMode')).toEqual(['process']);
    expect(key('Type')).toEqual(['notify']);
    expect(key('NotifyAccess')).toEqual(['main']);
    expect(key('ExecStart')).toEqual(['/usr/local/bin/enclave daemon']);
  });

  it('reloads through the daemon, so a broken config fails the reload and nothing changes', () => {
    expect(key('ExecReload')).toEqual(['/usr/local/bin/enclave daemon reload']);
  });

  const analyze = '/usr/bin/systemd-analyze';
  // CI installs systemd (.ci/setup): there the check runs, never skips.
  it.skipIf(!existsSync(analyze) && !process.env.CI)('passes systemd-analyze verify without a warning', () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-unit-'));
    try {
      // Verify wants ExecStart to exist: point it at the build's CLI.
      const path = join(dir, 'enclave.service');
      writeFileSync(path, unit.replaceAll('/usr/local/bin/enclave', join(repoRoot, 'dist', 'bundle', 'main.js')));
      const r = spawnSync(analyze, ['verify', path], { encoding: 'utf8' });
      expect(r.stderr + r.stdout).toBe('');
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
