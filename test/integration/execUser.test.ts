// exec as another user of the session (the exec query's `user`, docker's
// exec -u): the session's init forks the command, and that child resolves
// the user against the session's own /etc/passwd and /etc/group, sets its
// groups, gid and uid, HOME/USER/LOGNAME and cwd, then runs it. A hostile
// passwd or group costs that child only: the init answers the next exec.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Readable } from 'node:stream';
import { Enclave, InvalidRequestError, type Session } from '../../src/client/index.js';
import { isRoot, TestDaemon } from './harness.js';

async function readAll(r: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** uid, gid and groups as `id` prints them, then HOME USER LOGNAME, then the cwd. */
const WHO = 'id; echo "$HOME ${USER-unset} ${LOGNAME-unset}"; pwd';

describe.skipIf(!isRoot)('exec as a user of the session (root)', () => {
  const d = new TestDaemon();
  let c: Enclave;
  let s: Session;
  const root = async (script: string) => {
    const r = await c.run(s.id, ['sh', '-c', script]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    return r.stdout;
  };
  const as = (user: string, script: string, o: { cwd?: string; env?: string[] } = {}) => c.run(s.id, ['sh', '-c', script], { user, ...o });
  /** The session is still the one it was: same init, running, and it runs the next command. */
  const initStillServes = async () => {
    const now = await c.show(s.id);
    expect(now.state).toBe('running');
    expect(now.init_pid).toBe(s.init_pid);
    expect(await c.run(s.id, ['echo', 'next'])).toEqual({ stdout: 'next\n', stderr: '', exitCode: 0 });
  };

  beforeAll(async () => {
    await d.start();
    c = new Enclave({ socket: d.socket });
    s = await c.create({ name: 'users' });
    await root('groupadd -g 1500 bob && groupadd -g 2000 dev && groupadd -g 2001 ops && groupadd -g 2002 somegroup && useradd -m -u 1500 -g 1500 -G dev,ops bob && cp /etc/passwd /etc/group /root/');
  });
  afterAll(async () => {
    c?.close();
    await d.cleanup();
  });

  it('runs as a named user: its uid, gid and groups (real, effective, saved, fs), no capability, its HOME, USER, LOGNAME and cwd', async () => {
    expect(await as('bob', WHO)).toEqual({ stdout: 'uid=1500(bob) gid=1500(bob) groups=1500(bob),2000(dev),2001(ops)\n/home/bob bob bob\n/home/bob\n', stderr: '', exitCode: 0 });
    const status = (await as('bob', 'grep -E "^(Uid|Gid|Groups|CapPrm|CapEff|CapAmb):" /proc/self/status')).stdout;
    expect(status.replace(/[ \t]+/g, ' ')).toBe('Uid: 1500 1500 1500 1500\nGid: 1500 1500 1500 1500\nGroups: 1500 2000 2001 \nCapPrm: 0000000000000000\nCapEff: 0000000000000000\nCapAmb: 0000000000000000\n');
    // The same user by number; a cwd and a HOME the caller gives win.
    expect((await as('1500', 'id -un; pwd')).stdout).toBe('bob\n/home/bob\n');
    expect((await as('bob', 'pwd', { cwd: '/tmp' })).stdout).toBe('/tmp\n');
    expect((await as('bob', 'echo $HOME $USER; pwd', { env: ['HOME=/tmp', 'USER=robert'] })).stdout).toBe('/tmp robert\n/tmp\n');
    // What bob may not do, he cannot: root's home is root's.
    expect((await as('bob', 'ls /root')).exitCode).not.toBe(0);
  });

  it('runs a uid passwd does not know as docker does: gid 0, no other group, HOME /, no USER', async () => {
    expect(await as('1234', WHO)).toEqual({ stdout: 'uid=1234 gid=0(root) groups=0(root)\n/ unset unset\n/\n', stderr: '', exitCode: 0 });
    expect((await as('1234', 'id -u; id -G')).stdout).toBe('1234\n0\n');
  });

  it('takes an explicit group, by name or number, as the only group', async () => {
    expect((await as('bob:somegroup', 'id')).stdout).toBe('uid=1500(bob) gid=2002(somegroup) groups=2002(somegroup)\n');
    expect((await as('1500:2003', 'id -u; id -g; id -G')).stdout).toBe('1500\n2003\n2003\n');
    expect((await as('1234:dev', 'id -u; id -G; echo $HOME')).stdout).toBe('1234\n2000\n/\n');
  });

  it('fails an unknown user or group with exit 126 and a clear message; the init runs on', async () => {
    expect(await as('nobodyhere', 'true')).toEqual({ stdout: '', stderr: "enclave: exec: no user 'nobodyhere' in the session's /etc/passwd\n", exitCode: 126 });
    expect(await as('bob:nosuchgroup', 'true')).toEqual({ stdout: '', stderr: "enclave: exec: no group 'nosuchgroup' in the session's /etc/group\n", exitCode: 126 });
    await initStillServes();
  });

  it('refuses a malformed user, and a number outside the session\'s IDs, before anything runs', async () => {
    for (const bad of ['bob:dev:x', '', 'bo b', '-bob', 'bob:', ':dev', 'x'.repeat(33), '99999999']) {
      const e = await c.run(s.id, ['true'], { user: bad }).catch((x: unknown) => x);
      expect(e, bad).toBeInstanceOf(InvalidRequestError);
      expect((e as InvalidRequestError).message, bad).toMatch(/^invalid exec query: 'user': must be NAME, UID, NAME:GROUP or UID:GID \(a name .*, a number 0\.\.1048575\)$/);
    }
    const far = await c.run(s.id, ['true'], { user: '1500:70000' }).catch((x: unknown) => x);
    expect(far).toBeInstanceOf(InvalidRequestError);
    expect((far as Error).message).toBe("user: gid 70000 is outside the session's IDs 0..65535 (ids.size)");
  });

  it('survives a hostile /etc/passwd and /etc/group: a 1 MB line, a million lines, a FIFO', async () => {
    // Replaced, not written into: cp would write into the FIFO, and block.
    const restore = 'rm -f /etc/passwd /etc/group && cp /root/passwd /root/group /etc/';
    const cases: [string, string, RegExp][] = [
      ['head -c 1048576 /dev/zero | tr "\\0" a > /etc/passwd && echo >> /etc/passwd && cat /root/passwd >> /etc/passwd', 'bob', /^enclave: exec: the session's \/etc\/passwd has a line over 65536 bytes\n$/],
      ['yes x 2>/dev/null | head -n 1000000 > /etc/passwd && cat /root/passwd >> /etc/passwd', 'bob', /^enclave: exec: the session's \/etc\/passwd has over 200000 lines\n$/],
      ['rm /etc/passwd && mkfifo /etc/passwd', '1234', /^enclave: exec: the session's \/etc\/passwd is not a regular file\n$/],
      ['head -c 1048576 /dev/zero | tr "\\0" , | sed "s/^/big:x:3000:/" > /etc/group && echo >> /etc/group && cat /root/group >> /etc/group', 'bob', /^enclave: exec: the session's \/etc\/group has a line over 65536 bytes\n$/],
    ];
    for (const [setup, user, message] of cases) {
      await root(setup);
      const r = await as(user, 'echo ran');
      expect(r.stdout, setup).toBe('');
      expect(r.stderr, setup).toMatch(message);
      expect(r.exitCode, setup).toBe(126);
      await root(restore);
      await initStillServes();
      expect((await as('bob', 'id -u')).stdout).toBe('1500\n');
    }
  });

  it('resolves in the session, not on the host: a passwd the daemon could not even see', async () => {
    // The session's /tmp is a tmpfs of its own mount namespace: through the
    // session's root on the host, /etc/passwd points at nothing (or at the
    // host's /tmp). Only a reader inside the session finds zed.
    await root('cp /root/passwd /tmp/pw && echo "zed:x:4321:4321::/tmp:/bin/sh" >> /tmp/pw && ln -sf /tmp/pw /etc/passwd');
    try {
      expect((await as('zed', 'id -u; id -g; echo $HOME; pwd')).stdout).toBe('4321\n4321\n/tmp\n/tmp\n');
    } finally {
      await root('cp /root/passwd /etc/passwd.new && mv /etc/passwd.new /etc/passwd');
    }
    expect((await as('zed', 'true')).exitCode).toBe(126);
  });

  it('starts in / when the user\'s HOME is not a directory it can enter, as login does', async () => {
    await root('useradd -M -d /nonexistent -u 1600 nohome');
    expect((await as('nohome', 'echo $HOME; pwd')).stdout).toBe('/nonexistent\n/\n');
  });

  it('runs a terminal command as the user, the terminal its own', async () => {
    const t = await c.execTty(s.id, ['sh', '-c', 'id -un; pwd; stat -c %U "$(tty)"; exit 4'], { user: 'bob', cols: 80, rows: 24 });
    const out = await readAll(t);
    expect(out.replace(/\r/g, '')).toBe('bob\n/home/bob\nbob\n');
    expect(await t.exit).toBe(4);
    const bad = await c.execTty(s.id, ['true'], { user: 'nobodyhere' }).catch((x: unknown) => x);
    expect(bad).toBeInstanceOf(InvalidRequestError);
    expect((bad as Error).message).toBe("exec: no user 'nobodyhere' in the session's /etc/passwd");
  });

  it('refuses user under the strict profile, which keeps no CAP_SETUID or CAP_SETGID, before anything runs', async () => {
    const strict = await c.create({ name: 'strict', profile: 'strict' });
    try {
      const e = await c.run(strict.id, ['id'], { user: 'root' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(InvalidRequestError);
      expect((e as Error).message).toMatch(/^user: the strict profile keeps no CAP_SETUID, CAP_SETGID or setgroups/);
      expect((await c.run(strict.id, ['id', '-u'])).stdout).toBe('0\n');
    } finally {
      await c.destroy(strict.id, { force: true });
    }
  });
});
