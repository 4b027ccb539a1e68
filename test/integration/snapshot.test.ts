// Snapshots: the writable root layer and /home of a running session, taken
// while it is frozen, replayed into a new session with owners, modes, links
// and deletions intact. The host reads the session's tree without following
// anything the session put in it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, openSync, readdirSync, readFileSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, TestDaemon } from './harness.js';

describe.skipIf(!isRoot)('session snapshots (root)', () => {
  const d = new TestDaemon();
  const file = () => join(d.dir, 'a.snap');

  beforeAll(async () => {
    await d.start();
    await d.create({ name: 'sa' });
  });
  afterAll(async () => {
    await d.cleanup();
  });

  const STATE = [
    'stat -c "%n %u:%g %a %F" /usr/local/bin/tool /usr/local/share/hard /home/me /home/me/notes /srv/data',
    'readlink /usr/local/lib/evil',
    'cat /home/me/notes /usr/local/share/hard',
    'ls /etc/hostname 2>&1 | grep -c "No such file"',
    'stat -c %h /usr/local/bin/tool',
    'ls /var/lib/dpkg/info',
  ].join('; ');

  it('takes the layer and /home of a running session, as a zstd tar that names symlinks and never follows them', async () => {
    const setup = [
      'echo "#!/bin/sh" > /usr/local/bin/tool && chown 1000:1000 /usr/local/bin/tool && chmod 4750 /usr/local/bin/tool',
      'ln /usr/local/bin/tool /usr/local/share/hard',
      'mkdir -p /home/me && echo mine > /home/me/notes && chown -R 1000:1001 /home/me && chmod 0640 /home/me/notes && chmod 0700 /home/me',
      'mkdir /srv/data && chown 33:33 /srv/data',
      'ln -s /etc/shadow /usr/local/lib/evil',
      'rm /etc/hostname',
      'rm -rf /var/lib/dpkg/info && mkdir /var/lib/dpkg/info && touch /var/lib/dpkg/info/only',
      'sleep 1000 >/dev/null 2>&1 &',
    ].join(' && ');
    expect((await d.sh('sa', setup)).stderr).toBe('');
    const before = await d.sh('sa', STATE);
    const r = await d.cli(['session', 'snapshot', 'sa', '-o', file()]);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(readdirSync(d.dir).filter((f) => f.endsWith('.partial'))).toEqual([]);
    const head = Buffer.alloc(4);
    const fd = openSync(file(), 'r');
    readSync(fd, head, 0, 4, 0);
    closeSync(fd);
    expect(head.readUInt32LE(0)).toBe(0xfd2fb528); // zstd
    const list = execFileSync('tar', ['--use-compress-program=zstd', '-tvf', file()], { encoding: 'utf8' });
    expect(list.split('\n')[1]).toMatch(/ \.enclave\/manifest\.json$/);
    expect(list).toMatch(/^lrwxrwxrwx 0\/0 .* usr\/local\/lib\/evil -> \/etc\/shadow$/m);
    expect(list).toMatch(/^-rwsr-x--- 1000\/1000 .* usr\/local\/bin\/tool$/m);
    expect(list).toMatch(/^hrwsr-x--- 1000\/1000 .* usr\/local\/share\/hard link to usr\/local\/bin\/tool$/m);
    expect(list).toMatch(/^-rw-r----- 1000\/1001 .* home\/me\/notes$/m);
    expect(list).not.toMatch(/ (proc|sys|dev|tmp|run)\//); // the layer only, and /home
    const shadow = readFileSync('/etc/shadow', 'utf8').split('\n')[0]!;
    const raw = execFileSync('zstd', ['-dc', file()]).toString('latin1');
    expect(raw).not.toContain(shadow);
    // Thawed again: the session's processes run on, and it answers.
    const v2 = d.cgroupDirs((await d.show('sa')).id).find((p) => existsSync(join(p, 'cgroup.freeze')));
    expect(v2).toBeDefined();
    expect(readFileSync(join(v2!, 'cgroup.freeze'), 'utf8').trim()).toBe('0');
    expect((await d.sh('sa', 'pgrep -c sleep')).stdout).toBe('1\n');
    // The same state replays into a new session with another host range.
    const b = await d.cli(['session', 'create', '--name', 'sb', '--from', file(), '--json']);
    expect([b.code, b.stderr]).toEqual([0, '']);
    const sa = await d.show('sa');
    const sb = await d.show('sb');
    expect(sb.id_range!.host_base).not.toBe(sa.id_range!.host_base);
    const after = await d.sh('sb', STATE);
    expect(after.stdout).toBe(before.stdout);
    expect(after.stdout).toMatch(/^\/usr\/local\/bin\/tool 1000:1000 4750 regular file\n/);
    expect(after.stdout).toContain('/home/me/notes 1000:1001 640 regular file\n/srv/data 33:33 755 directory\n/etc/shadow\nmine\n');
    expect(after.stdout).toMatch(/\n1\n2\nonly\n$/);
    expect((await d.sh('sb', 'ls -a / | grep -c enclave')).stdout).toBe('0\n');
  });

  it('refuses a strict session, which has no layer, and a file that is not a snapshot before creating anything', async () => {
    await d.create({ name: 'ss', profile: 'strict' });
    const r = await d.cli(['session', 'snapshot', 'ss', '-o', join(d.dir, 's.snap')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/has no writable root layer/);
    expect(existsSync(join(d.dir, 's.snap'))).toBe(false);
    const before = (await d.api('GET', '/v1/sessions')).body;
    const bad = await d.cli(['session', 'create', '--from', '/etc/hostname']);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/not a snapshot/)]);
    expect((await d.api('GET', '/v1/sessions')).body).toEqual(before);
  });
});
