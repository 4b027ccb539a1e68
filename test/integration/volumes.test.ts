// Volumes: a loop-mounted ext4 image per volume, idmapped into each session
// that mounts it, so owners hold across sessions with different host ranges;
// the image size is a real quota; :ro holds for root inside; a volume in use
// cannot be removed; and it outlives sessions and daemon restarts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { volumeSchema } from '../../src/api/schemas.js';
import { isRoot, mountsUnder, TestDaemon } from './harness.js';

describe.skipIf(!isRoot)('volumes (root)', () => {
  const d = new TestDaemon();
  const image = () => join(d.stateDir, 'volumes', 'images', 'code.ext4');

  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('creates a volume with a size, and lists it', async () => {
    const r = await d.cli(['volume', 'create', 'code', '--size', '32', '--json']);
    expect(r.stderr).toBe('');
    const v = volumeSchema.parse(JSON.parse(r.stdout));
    expect([v.name, v.size_mb, v.owner_uid, v.used_by]).toEqual(['code', 32, 0, []]);
    expect((await d.cli(['volume', 'list'])).stdout).toMatch(/^code\s+32 MiB\s+0\.0 MiB\s+0\s+-$/m);
    // On the host it is reachable by root only.
    expect(execFileSync('stat', ['-c', '%a', join(d.stateDir, 'volumes')]).toString().trim()).toBe('700');
  });

  it('keeps file owners across sessions with different host ranges, and :ro holds for root inside', async () => {
    const a = await d.create({ name: 'va', volumes: [{ name: 'code', target: '/workspace' }] });
    const b = await d.create({ name: 'vb', profile: 'strict', volumes: [{ name: 'code', target: '/srv', readonly: true }] });
    expect(a.id_range!.host_base).not.toBe(b.id_range!.host_base);
    expect(a.volumes).toEqual([{ name: 'code', target: '/workspace', readonly: false }]);
    const w = await d.sh('va', 'echo src > /workspace/main.c && chown 1000:1000 /workspace/main.c && chmod 644 /workspace/main.c && stat -c %u:%g:%a /workspace/main.c');
    expect(w.stdout).toBe('1000:1000:644\n');
    const r = await d.sh('vb', 'stat -c %u:%g:%a /srv/main.c; cat /srv/main.c; touch /srv/x 2>&1; rm /srv/main.c 2>&1; mount -o remount,rw /srv 2>&1; echo end');
    expect(r.stdout).toMatch(/^1000:1000:644\nsrc\n/);
    expect(r.stdout.match(/Read-only file system/g)?.length).toBe(2);
    expect(r.stdout).toMatch(/mount: .*(permission denied|Operation not permitted)/i);
    // Both share it: a write in A shows in B at once (B is strict: no DAC override, so the mode is what lets it read).
    await d.sh('va', 'echo more >> /workspace/main.c');
    expect((await d.sh('vb', 'cat /srv/main.c')).stdout).toBe('src\nmore\n');
    // Nothing suid or device-like works from a volume, even one root inside wrote.
    const suid = await d.sh('va', 'cp /bin/sh /workspace/sh && chmod 4755 /workspace/sh && grep /workspace /proc/self/mountinfo');
    expect(suid.stdout).toMatch(/ \/workspace rw,nosuid,nodev,[^ ]*idmapped/);
  });

  it('ends writes past the size in ENOSPC, and nothing else of the session is affected', async () => {
    const r = await d.sh('va', 'dd if=/dev/zero of=/workspace/big bs=1M count=64 2>&1 | grep -o "No space left on device"; echo ok > /tmp/after && cat /tmp/after; rm /workspace/big');
    expect(r.stdout).toBe('No space left on device\nok\n');
  });

  it('refuses to remove a volume a live session mounts', async () => {
    const r = await d.cli(['volume', 'remove', 'code']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/volume code is mounted by va, vb: destroy those sessions first/);
    const v = volumeSchema.parse(JSON.parse((await d.cli(['volume', 'show', 'code', '--json'])).stdout));
    expect(v.used_by.map((u) => [u.name, u.target, u.readonly])).toEqual([['va', '/workspace', false], ['vb', '/srv', true]]);
  });

  it('refuses bad mounts before anything is created', async () => {
    const before = (await d.api('GET', '/v1/sessions?all=1')).body;
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ volumes: [{ name: 'nope', target: '/workspace' }] }, 404, /no volume named nope/],
      [{ volumes: [{ name: 'code', target: '/etc' }] }, 400, /must not be in \/proc/],
      [{ volumes: [{ name: 'code', target: '/w/../etc' }] }, 400, /must not contain \. or \.\./],
      [{ volumes: [{ name: 'code', target: 'relative' }] }, 400, /absolute path/],
      [{ volumes: [{ name: 'code', target: '/a' }, { name: 'code', target: '/a' }] }, 400, /same target/],
      [{ profile: 'strict', volumes: [{ name: 'code', target: '/workspace' }] }, 400, /not a directory of this session's read-only root/],
    ];
    for (const [body, status, msg] of cases) {
      const r = await d.api('POST', '/v1/sessions', body);
      expect([r.status, JSON.stringify(r.body)]).toEqual([status, expect.stringMatching(msg)]);
    }
    expect((await d.api('GET', '/v1/sessions?all=1')).body).toEqual(before);
  });

  it('outlives its sessions and daemon restarts; a persistent /home; then removes cleanly', async () => {
    await d.destroy('va');
    await d.destroy('vb');
    expect(await d.stop('SIGTERM')).toBe(0);
    await d.start();
    await d.create({ name: 'vc', volumes: [{ name: 'code', target: '/home' }] });
    const r = await d.sh('vc', 'stat -c %u:%g:%a /home/main.c; cat /home/main.c; grep " /home " /proc/self/mountinfo | grep -c tmpfs');
    expect(r.stdout).toBe('1000:1000:644\nsrc\nmore\n0\n');
    await d.destroy('vc');
    const rm = await d.cli(['volume', 'remove', 'code']);
    expect([rm.code, rm.stderr]).toEqual([0, '']);
    expect(existsSync(image())).toBe(false);
    expect(mountsUnder(join(d.stateDir, 'volumes'))).toEqual([]);
    expect(execFileSync('losetup', ['-a']).toString()).not.toContain(d.stateDir);
    expect((await d.cli(['volume', 'list', '--json'])).stdout).toBe('{\n  "volumes": []\n}\n');
  });
});
