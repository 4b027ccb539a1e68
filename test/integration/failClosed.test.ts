// Fail closed: when a confinement step cannot be done, nothing runs, the
// error names the step, and nothing is left behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { isRoot, TestDaemon } from './harness.js';

describe.skipIf(!isRoot)('fail closed (root)', () => {
  // A rootfs without /home: the tmpfs step must fail.
  const bad = new TestDaemon();
  const good = new TestDaemon();

  beforeAll(async () => {
    bad.sessionsConfig = `rootfs = "${join(bad.dir, 'rootfs')}"\n`;
    mkdirSync(join(bad.dir, 'rootfs', 'tmp'), { recursive: true });
    await bad.start();
    await good.start();
  });
  afterAll(async () => {
    await bad.cleanup();
    await good.cleanup();
  });

  it('refuses a session whose mounts cannot be built, naming the step, and leaves nothing', async () => {
    const r = await bad.api('POST', '/v1/sessions', { name: 'nohome' });
    expect(r.status).toBe(500);
    const message = (r.body as { error: { code: string; message: string } }).error;
    expect(message.code).toBe('confinement_failed');
    expect(message.message).toMatch(/could not be confined: step tmpfs failed: ENOENT \(open mount target home\)/);
    const list = (await bad.api('GET', '/v1/sessions?all=1')).body as { sessions: { state: string; last_error: string }[] };
    expect(list.sessions).toHaveLength(1);
    expect(list.sessions[0]!.state).toBe('failed');
    expect(list.sessions[0]!.last_error).toMatch(/step tmpfs failed/);
    expect(bad.cgroupDirs().flatMap((d) => d.split('/').filter((c) => c.startsWith('s-')))).toEqual([]);
    const db = new Database(join(bad.stateDir, 'enclave.db'), { readonly: true });
    try {
      expect(db.prepare('SELECT count(*) AS n FROM id_slots').get()).toEqual({ n: 0 });
      expect(db.prepare('SELECT count(*) AS n FROM kernel_objects').get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });

  it('refuses to create or enter a session when the seccomp program could be tampered with', async () => {
    const s = await good.create({ name: 'victim' });
    const bpf = join(good.stateDir, 'seccomp.bpf');
    chmodSync(bpf, 0o666);
    try {
      const c = await good.api('POST', '/v1/sessions', {});
      expect(c.status).toBe(500);
      expect((c.body as { error: { message: string } }).error.message).toMatch(/step seccomp failed: EINVAL/);
      const e = await good.cli(['session', 'exec', 'victim', '--', 'sh', '-c', 'echo RAN']);
      expect(e.stdout).toBe('');
      expect(e.code).not.toBe(0);
      expect(e.stderr).toMatch(/enclave-enter: .*seccomp\.bpf: Invalid argument/);
    } finally {
      chmodSync(bpf, 0o600);
    }
    expect((await good.sh('victim', 'echo RAN')).stdout).toBe('RAN\n');
    await good.destroy(s.id);
  });
});
