// SSH into a session: `create --ssh-key FILE --publish PORT:22` gives
// `ssh -p PORT root@127.0.0.1`, with OpenSSH's own sshd running inside under
// the workspace profile (privilege separation: chroot to /run/sshd, setuid
// to its sshd user). Host keys are the session's own; a wrong key is
// refused; strict refuses --ssh-key before anything exists; and a stop and
// start brings sshd back with root's key. Root's HOME is /root, where exec
// starts. The key pair is made in this run's temp dir; nothing is written to
// the caller's ~/.ssh.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, TestDaemon } from './harness.js';

const hasSsh = existsSync('/usr/bin/ssh') && existsSync('/usr/bin/ssh-keygen') && existsSync('/usr/sbin/sshd');

describe.skipIf(!isRoot)('ssh into a session (root)', () => {
  const d = new TestDaemon();
  // Below the ephemeral range, per run (as publish.test.ts picks its ports).
  const port = 21000 + (parseInt(d.tag, 16) % 1200) * 10 + 7;
  let keys: string;

  const ssh = (key: string, command: string, extra: string[] = []) =>
    spawnSync(
      'ssh',
      ['-p', String(port), '-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR', ...extra, 'root@127.0.0.1', command],
      { encoding: 'utf8', timeout: 30_000 },
    );

  beforeAll(async () => {
    // CI installs openssh-server (.ci/setup); without it this suite must not pass silently.
    expect(hasSsh, 'ssh, ssh-keygen and sshd must be installed (apt-get install openssh-server openssh-client)').toBe(true);
    await d.start();
    keys = join(d.dir, 'keys');
    mkdirSync(keys, { mode: 0o700 });
    for (const k of ['id', 'other']) {
      const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `enclave-test-${k}`, '-f', join(keys, k)], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    }
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('runs a command over ssh as root, in the session, from root\'s HOME', async () => {
    const r = await d.cli(['session', 'create', '--name', 'box', '--ssh-key', join(keys, 'id.pub'), '--publish', `127.0.0.1:${port}:22`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = ssh(join(keys, 'id'), 'id -u; hostname; pwd; echo "$HOME"; cat /proc/self/uid_map | tr -s " "');
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    const [uid, host, pwd, home, map] = out.stdout.trim().split('\n');
    const s = await d.show('box');
    expect(uid).toBe('0');
    expect(host).toBe(s.hostname);
    expect(pwd).toBe('/root');
    expect(home).toBe('/root');
    expect(map!.trim()).toBe(`0 ${s.id_range!.host_base} ${s.id_range!.size}`);
    // show says so, with the command that reaches it.
    expect(s.ssh).toBe(true);
    expect((await d.cli(['session', 'show', 'box'])).stdout).toMatch(new RegExp(`^ssh +sshd on port 22: ssh -p ${port} root@127\\.0\\.0\\.1$`, 'm'));
    // A terminal too (VS Code's and a person's way in).
    const tty = ssh(join(keys, 'id'), 'tty; stty size', ['-tt']);
    expect(tty.status).toBe(0);
    expect(tty.stdout).toMatch(/^\/dev\/pts\/\d+\r?\n/);
  });

  it('keeps the key files right: root-owned, 0700 and 0600, the line given; host keys of its own', async () => {
    const r = await d.sh('box', 'stat -c "%a %U %n" /root /root/.ssh /root/.ssh/authorized_keys /run/sshd; cat /root/.ssh/authorized_keys; cat /etc/ssh/ssh_host_ed25519_key.pub');
    const lines = r.stdout.trim().split('\n');
    expect(lines.slice(0, 4)).toEqual(['700 root /root', '700 root /root/.ssh', '600 root /root/.ssh/authorized_keys', '755 root /run/sshd']);
    expect(lines[4]).toBe(readFileSync(join(keys, 'id.pub'), 'utf8').trim());
    // The session's own host key, not the host's.
    expect(lines[5]!.split(' ')[1]).not.toBe(readFileSync('/etc/ssh/ssh_host_ed25519_key.pub', 'utf8').split(' ')[1]);
  });

  it('starts exec in root\'s HOME, /root (its layer under workspace, a tmpfs of its own under strict), unless --cwd; /home is the other users\'', async () => {
    const here = await d.sh('box', 'pwd; echo "$HOME"; getent passwd root | cut -d: -f6; useradd -m dev && ls /home; ls -A /root | head -1');
    expect(here.stdout).toBe('/root\n/root\n/root\ndev\n.ssh\n');
    expect((await d.cli(['session', 'exec', 'box', '--cwd', '/tmp', '--', 'pwd'])).stdout).toBe('/tmp\n');
    expect((await d.cli(['session', 'exec', 'box', '--env', 'HOME=/srv', '--', 'pwd'])).stdout).toBe('/srv\n');
    await d.create({ name: 'ro', profile: 'strict' });
    const strict = await d.sh('ro', 'pwd; touch /root/.profile-test && stat -c "%a %U" /root; grep " /root " /proc/self/mounts | cut -d" " -f3; touch /etc/x 2>&1 | grep -c Read-only');
    expect(strict.stdout).toBe('/root\n700 root\ntmpfs\n1\n');
    await d.destroy('ro');
  });

  it('refuses a key it was not given', () => {
    const out = ssh(join(keys, 'other'), 'echo IN');
    expect(out.stdout).not.toContain('IN');
    expect(out.status).toBe(255);
    expect(out.stderr).toMatch(/Permission denied \(publickey\)/);
  });

  it('keeps sshd\'s privilege separation: its pre-auth child chroots to /run/sshd (EPERM before workspace kept SYS_CHROOT)', async () => {
    const r = await d.sh('box', 'cat /var/log/sshd.log; grep -c "^sshd:" /etc/passwd');
    expect(r.stdout).not.toMatch(/chroot|Operation not permitted|fatal/i);
    expect(r.stdout.trim().split('\n').pop()).toBe('1');
  });

  it('refuses --ssh-key that is not a public key, and under strict, before anything exists', async () => {
    const priv = await d.cli(['session', 'create', '--name', 'bad', '--ssh-key', join(keys, 'id')]);
    expect(priv.code).toBe(2);
    expect(priv.stderr).toMatch(/--ssh-key .*id: is a private key: give the \.pub file/);
    const none = await d.cli(['session', 'create', '--name', 'bad', '--ssh-key', join(keys, 'missing.pub')]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no such file/);
    const strict = await d.api('POST', '/v1/sessions', { name: 'bad', profile: 'strict', ssh_key: readFileSync(join(keys, 'id.pub'), 'utf8').trim() });
    expect(strict.status).toBe(400);
    expect(JSON.stringify(strict.body)).toMatch(/ssh_key needs a writable root/);
    const mangled = await d.api('POST', '/v1/sessions', { name: 'bad', ssh_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== x' });
    expect(mangled.status).toBe(400);
    expect(JSON.stringify(mangled.body)).toMatch(/must be an OpenSSH public key/);
    expect((await d.api('GET', '/v1/sessions/bad')).status).toBe(404);
  });

  it('brings sshd back after a stop and start, with root\'s key from its layer', async () => {
    expect((await d.cli(['session', 'stop', 'box'])).code).toBe(0);
    expect((await d.cli(['session', 'start', 'box'])).code).toBe(0);
    const out = ssh(join(keys, 'id'), 'echo back');
    expect(out.stderr).toBe('');
    expect(out.stdout).toBe('back\n');
  });
});
