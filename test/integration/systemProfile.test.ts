// The system profile (issue 26): root inside has every capability over the
// session's own namespaces. Nested namespaces, mounts, TUN, bridges and
// nftables work inside; the host's routes, links and ruleset stay as they
// were; host-wide knobs stay read-only (the kernel's own checks, /proc and
// /sys being unmasked: see docs/security.md, "The system profile"); a
// tenant needs a rule that grants the profile.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { cliAs, isRoot, TestDaemon } from './harness.js';

const GID = 48216; // a group nobody on the machine has
const NOBODY = 65534;
const BUILDER = 65533; // a uid no one uses, granted system by a rule

const host = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });
/** What of the host the session's changes would show in (others' tests change the rest of it meanwhile). */
const hostNet = () => ({ links: host('ip', ['-o', 'link', 'show']), routes: host('ip', ['route', 'show', 'table', 'all']), nft: host('nft', ['list', 'ruleset']), forward: readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8') });

describe.skipIf(!isRoot)('system profile (root)', () => {
  const d = new TestDaemon({
    topConfig: `socket_gid = ${GID}\n`,
    extraConfig:
      `[access]\n[[access.rules]]\nname = "tenants"\nuids = [${NOBODY}]\nactions = ["session.*"]\nscope = "self"\n` +
      `[[access.rules]]\nname = "builders"\nuids = [${BUILDER}]\nactions = ["session.*"]\nscope = "self"\nprofiles = ["workspace", "system"]\n`,
  });
  let before: ReturnType<typeof hostNet>;
  // A host directory only root may read, made before the daemon's scan of /usr (and removed after): one hidden entry this test owns.
  const secret = `/usr/local/share/enclave-hidden-${process.pid}`;

  beforeAll(async () => {
    mkdirSync(secret, { mode: 0o700 });
    writeFileSync(join(secret, 'key'), 'host only\n', { mode: 0o600 });
    await d.start();
    before = hostNet();
    await d.create({ name: 'sys', profile: 'system', memory_mb: 512 });
  });
  afterAll(async () => {
    await d.cleanup();
    rmSync(secret, { recursive: true, force: true });
  });

  it('runs with every capability in its own user namespace, and seccomp still on', async () => {
    const r = await d.sh('sys', 'grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status');
    expect(r.stdout).toBe('CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nNoNewPrivs:\t0\nSeccomp:\t2\n');
    expect((await d.show('sys')).profile).toBe('system');
  });

  it('makes nested user, PID and mount namespaces with their own procfs (unshare -Urmpf --mount-proc)', async () => {
    const r = await d.sh('sys', 'unshare -Urmpf --mount-proc sh -c \'echo pid=$$; id -u; ls /proc | grep -cE "^[0-9]+$"\'');
    expect(r.stderr).toBe('');
    const [pid, uid, procs] = r.stdout.trim().split('\n');
    expect(pid).toBe('pid=1');
    expect(uid).toBe('0');
    expect(Number(procs)).toBeLessThanOrEqual(3); // its own PID namespace: sh and ls
    // Network, UTS, IPC and cgroup namespaces too, nested in a user namespace of its own.
    const n = await d.sh('sys', 'unshare -Urn --uts --ipc --cgroup sh -c "hostname inner && hostname && ip -o link | wc -l"');
    expect(n.stdout).toBe('inner\n1\n');
    expect((await d.sh('sys', 'hostname')).stdout.trim()).not.toBe('inner');
  });

  it('mounts tmpfs, overlay, proc and sysfs in its own mount namespace', async () => {
    const out = await d.script('sys', [
      'set -e',
      'mkdir -p /tmp/t /tmp/lower /tmp/upper /tmp/work /tmp/merged /tmp/p /tmp/s',
      'mount -t tmpfs -o size=1m none /tmp/t && echo x > /tmp/t/f && cat /tmp/t/f',
      'echo low > /tmp/lower/a',
      'mount -t overlay overlay -o lowerdir=/tmp/lower,upperdir=/tmp/upper,workdir=/tmp/work /tmp/merged',
      'echo up > /tmp/merged/b; cat /tmp/merged/a /tmp/upper/b',
      'mount -t proc proc /tmp/p && test -e /tmp/p/self/status && echo proc',
      'unshare -n sh -c "mount -t sysfs -o ro sysfs /tmp/s && ls /tmp/s/class/net"',
      'umount /tmp/t /tmp/merged /tmp/p',
    ]);
    expect(out).toBe('x\nlow\nup\nproc\nlo\n');
  });

  it('keeps a read-only volume read-only: it came in locked, so no remount of it or of a bind of it makes it writable', async () => {
    for (const v of ['shared', 'scratch', 'ref']) await d.cli(['volume', 'create', v, '--size', '16']);
    try {
      await d.create({ name: 'sys-w', volumes: [{ name: 'shared', target: '/data' }] });
      await d.sh('sys-w', 'echo kept > /data/f');
      // Read-only, read-write, read-only in target order: staged ones come by propagation, the read-write one as an fd
      // (unlocked, as before: a runtime inside may remount its bind with nosuid and nodev alone), each at its own target.
      await d.create({ name: 'sys-ro', profile: 'system', volumes: [{ name: 'shared', target: '/srv', readonly: true }, { name: 'scratch', target: '/c' }, { name: 'ref', target: '/b', readonly: true }] });
      expect(
        await d.script('sys-ro', [
          'echo mine > /c/f && cat /c/f',
          'for t in /b /c /srv; do grep " $t " /proc/self/mountinfo | cut -d" " -f6 | cut -d, -f1; done',
          'test -e /srv/f && ! test -e /b/f && echo apart',
          'mkdir -p /mnt/x && mount --bind /c /mnt/x && mount -o remount,bind,nosuid,nodev /mnt/x && echo runc-like && umount /mnt/x',
        ]),
      ).toBe('mine\nro\nrw\nro\napart\nrunc-like\n');
      // Each way a root owning its mount namespace could make the volume's mount writable, then a write through it.
      const tries = [
        'mount -o remount,bind,rw /srv',
        'mkdir -p /mnt/b && mount --bind /srv /mnt/b && mount -o remount,bind,rw /mnt/b',
        'unshare -m sh -c "mount -o remount,bind,rw /srv && echo x >> /srv/f"',
        // mount_setattr(AT_FDCWD, "/srv", 0, {attr_clr: MOUNT_ATTR_RDONLY}, 32).
        'python3 -c "import ctypes,os,struct; b=ctypes.create_string_buffer(struct.pack(\'QQQQ\',0,1,0,0)); l=ctypes.CDLL(None,use_errno=True); r=l.syscall(442,-100,b\'/srv\',0,b,32); print(\'setattr\',r,os.strerror(ctypes.get_errno()))"',
      ];
      const r = await d.script('sys-ro', [...tries.map((t) => `${t} 2>/dev/null; echo rc=$?`), '{ echo x >> /srv/f; } 2>/dev/null || echo ro', '{ echo x >> /mnt/b/f; } 2>/dev/null || echo ro', 'cat /srv/f']);
      expect(r).toBe('rc=32\nrc=32\nrc=32\nsetattr -1 Operation not permitted\nrc=0\nro\nro\nkept\n');
      expect((await d.sh('sys-w', 'cat /data/f')).stdout).toBe('kept\n');
      // Its own mounts it may still remount either way (runc does, for its read-only paths and its binds).
      expect(await d.script('sys-ro', ['mkdir -p /tmp/own && mount -t tmpfs none /tmp/own', 'mount -o remount,bind,ro /tmp/own && echo made-ro', '{ touch /tmp/own/f; } 2>/dev/null || echo refused', 'mount -o remount,bind,rw /tmp/own && touch /tmp/own/f && echo rw-again', 'umount /tmp/own'])).toBe('made-ro\nrefused\nrw-again\n');
      // A read-write one it may write, and a session stored with it read-only (its row changed by hand) starts with it locked.
      await d.create({ name: 'sys-rw', profile: 'system', volumes: [{ name: 'shared', target: '/srv' }] });
      expect(await d.script('sys-rw', ['echo more >> /srv/f && cat /srv/f'])).toBe('kept\nmore\n');
      expect((await d.cli(['session', 'stop', 'sys-rw'])).code).toBe(0);
      const db = new Database(join(d.stateDir, 'enclave.db'));
      try {
        expect(db.prepare("UPDATE session_volumes SET readonly = 1 WHERE session_id = (SELECT id FROM sessions WHERE name = 'sys-rw')").run().changes).toBe(1);
      } finally {
        db.close();
      }
      expect((await d.cli(['session', 'start', 'sys-rw'])).code).toBe(0);
      expect(await d.script('sys-rw', ['mkdir -p /mnt/c && mount --bind /srv /mnt/c && mount -o remount,bind,rw /mnt/c 2>/dev/null || echo locked', '{ echo x >> /srv/f; } 2>/dev/null || echo ro'])).toBe('locked\nro\n');
    } finally {
      for (const n of ['sys-ro', 'sys-w', 'sys-rw']) await d.cli(['session', 'destroy', n]);
      for (const v of ['shared', 'scratch', 'ref']) await d.cli(['volume', 'remove', v]);
    }
  });

  it('logs, at adoption, a running system session whose stored plan has a read-only volume unstaged (an older daemon\'s), and no other', async () => {
    await d.cli(['volume', 'create', 'legacy', '--size', '16']);
    try {
      const old = await d.create({ name: 'sys-legacy', profile: 'system', volumes: [{ name: 'legacy', target: '/srv', readonly: true }] });
      const now = await d.create({ name: 'sys-staged', profile: 'system', volumes: [{ name: 'legacy', target: '/srv', readonly: true }] });
      await d.stop('SIGKILL');
      // What an older daemon stored: the same plan without its stage-volumes op.
      const db = new Database(join(d.stateDir, 'enclave.db'));
      try {
        const row = db.prepare('SELECT plan FROM session_plans WHERE session_id = ?').get(old.id) as { plan: string };
        const plan = JSON.parse(row.plan) as { ops: { op: string }[] };
        expect(plan.ops.filter((o) => o.op === 'stage-volumes')).toHaveLength(1);
        plan.ops = plan.ops.filter((o) => o.op !== 'stage-volumes');
        expect(db.prepare('UPDATE session_plans SET plan = ? WHERE session_id = ?').run(JSON.stringify(plan), old.id).changes).toBe(1);
      } finally {
        db.close();
      }
      await d.start();
      const warned = d
        .log()
        .split('\n')
        .filter((l) => l.includes('an older daemon moved in unlocked'))
        .map((l) => (JSON.parse(l) as { session?: string }).session);
      expect(warned).toEqual([old.id]);
      expect(warned).not.toContain(now.id);
      expect((await d.show('sys-legacy')).state).toBe('running');
    } finally {
      if (d.pid < 0 || !(await d.api('GET', '/v1/health').then(() => true, () => false))) await d.start();
      for (const n of ['sys-legacy', 'sys-staged']) await d.cli(['session', 'destroy', n]);
      await d.cli(['volume', 'remove', 'legacy']);
    }
  });

  it('refuses a read-only volume on the host\'s root (sessions.rootfs "/"), where it would come in unlocked', async () => {
    const h = new TestDaemon();
    h.sessionsConfig = 'rootfs = "/"\n';
    try {
      await h.start();
      expect((await h.cli(['volume', 'create', 'plain', '--size', '16'])).code).toBe(0);
      const refused = await h.api('POST', '/v1/sessions', { name: 'sys-ro', profile: 'system', volumes: [{ name: 'plain', target: '/srv', readonly: true }] });
      expect(refused.status).toBe(400);
      expect(refused.body).toMatchObject({ error: { code: 'invalid_request', field: 'volumes', message: expect.stringMatching(/^volume plain at \/srv: a system session on the host's root \(sessions.rootfs "\/"\) cannot mount a volume read-only: .*or a layered root/) } });
      expect((await h.cli(['session', 'list', '--all'])).stdout).not.toMatch(/sys-ro/);
      // One stopped while the daemon had a layered root, which stages it, is refused at its start once the daemon
      // runs on the host's root (its mounts cannot change), before anything is reserved.
      await h.stop();
      h.reconfigure({ extraConfig: '' });
      await h.start();
      const old = await h.create({ name: 'sys-old', profile: 'system', volumes: [{ name: 'plain', target: '/srv', readonly: true }] });
      expect((await h.cli(['session', 'stop', 'sys-old'])).code).toBe(0);
      await h.stop();
      h.reconfigure({ extraConfig: 'rootfs = "/"\n' });
      await h.start();
      const start = await h.api('POST', '/v1/sessions/sys-old/start');
      expect(start.status).toBe(409);
      expect(start.body).toMatchObject({ error: { code: 'conflict', field: 'volumes', message: expect.stringMatching(/^session \S+ cannot start: it mounts volume plain read-only at \/srv, and a system session on the host's root .* destroy it \(its volumes stay\) and create it again$/) } });
      expect(await h.show('sys-old')).toMatchObject({ state: 'stopped' });
      expect(h.cgroupDirs(old.id)).toEqual([]);
    } finally {
      await h.cleanup();
    }
  });

  it('creates a TUN device, a bridge and nft rules in its own network namespace; the host\'s stay as they were', async () => {
    const out = await d.script('sys', [
      'set -e',
      'ip tuntap add dev tun7 mode tun',
      'ip link add br7 type bridge',
      'ip addr add 10.77.0.1/24 dev br7 && ip link set br7 up',
      'ip route add 10.78.0.0/16 via 10.77.0.2',
      'nft add table inet inside7 && nft add chain inet inside7 c "{ type filter hook input priority 0; }" && nft add rule inet inside7 c tcp dport 9 drop',
      'ip -o link show | grep -cE "tun7|br7"',
      'nft list tables',
      'sysctl -w net.ipv4.ip_forward=1',
    ]);
    expect(out).toBe('2\ntable inet inside7\nnet.ipv4.ip_forward = 1\n');
    const after = hostNet();
    expect(after.links).not.toMatch(/\b(tun7|br7)\b/);
    expect(after.routes).not.toMatch(/10\.7[78]\.0\.0/);
    expect(after.nft).not.toContain('inside7');
    expect(after.forward).toBe(before.forward);
    expect([before.links, before.routes, before.nft].join()).not.toMatch(/tun7|br7|inside7|10\.7[78]\.0\.0/);
  });

  it('keeps host-wide knobs read-only: /proc/sysrq-trigger, /proc/sys/kernel, /sys, even from a procfs and sysfs of its own', async () => {
    const core = readFileSync('/proc/sys/kernel/core_pattern', 'utf8');
    const pidMax = readFileSync('/proc/sys/kernel/pid_max', 'utf8');
    const r = await d.sh(
      'sys',
      [
        'mkdir -p /tmp/p2 && mount -t proc proc /tmp/p2',
        'for p in /proc /tmp/p2; do',
        '  echo x > $p/sys/kernel/core_pattern 2>/dev/null && echo WROTE-core',
        '  echo 0 > $p/sys/kernel/sysrq 2>/dev/null && echo WROTE-sysrq',
        '  echo h > $p/sysrq-trigger 2>/dev/null && echo WROTE-trigger',
        '  echo 1 > $p/sys/vm/drop_caches 2>/dev/null && echo WROTE-vm',
        'done',
        // Every writable file under /proc/sys/kernel is of the session's own IPC or PID namespace.
        'for f in $(find /proc/sys/kernel -type f); do test -w $f && echo "$f"; done | sort',
        'mount -o remount,rw /sys 2>/dev/null; echo never > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null && echo WROTE-sys',
        // pid_max is its PID namespace's own (Linux 6.14): lowered inside, the host's stays.
        'test -w /proc/sys/kernel/pid_max && echo 4000 > /proc/sys/kernel/pid_max && echo pid_max=$(cat /proc/sys/kernel/pid_max)',
        'echo end',
      ].join('\n'),
    );
    const writable = r.stdout.trim().split('\n').filter((l) => l.startsWith('/proc/sys/kernel/'));
    expect(r.stdout).not.toContain('WROTE');
    expect(r.stdout.trim().endsWith('end')).toBe(true);
    // IPC limits of its IPC namespace; ns_last_pid and (Linux 6.14) pid_max of its PID namespace.
    const PER_NAMESPACE = /^\/proc\/sys\/kernel\/(shm\w*|msg\w*|sem|sem_next_id|auto_msgmni|ns_last_pid|pid_max)$/;
    for (const f of writable) expect(f).toMatch(PER_NAMESPACE);
    expect(readFileSync('/proc/sys/kernel/core_pattern', 'utf8')).toBe(core);
    expect(readFileSync('/proc/sys/kernel/pid_max', 'utf8')).toBe(pidMax);
    if (writable.includes('/proc/sys/kernel/pid_max')) expect(r.stdout).toContain('pid_max=4000');
  });

  it('has /dev/net/tun and /dev/fuse, and no block device, /dev/mem, /dev/kmsg or host tty', async () => {
    const r = await d.sh('sys', 'ls -A /dev | tr "\\n" " "; echo; ls -A /dev/net; find /dev -type b | wc -l; mknod /tmp/sda b 8 0 2>&1 | grep -c "Operation not permitted"');
    const [devs, net, blocks, refused] = r.stdout.trim().split('\n');
    expect(devs!.trim().split(' ').sort()).toEqual(['fd', 'full', 'fuse', 'mqueue', 'net', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero'].sort());
    expect(net).toBe('tun');
    expect(blocks).toBe('0');
    expect(refused).toBe('1');
  });

  it('hides the host\'s /usr entries others cannot read by whiteouts, which no unmount lifts', async () => {
    const found = execFileSync('find', ['/usr', '-xdev', '-type', 'd', '!', '-perm', '-o=rx', '-prune'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
    const hidden = [secret, ...found.filter((h) => h !== secret).slice(0, 4)];
    expect(found).toContain(secret);
    const parents = [...new Set(hidden.map((h) => h.slice(0, h.lastIndexOf('/'))))];
    const look = `for h in ${hidden.join(' ')}; do test -e $h && echo SEEN $h; done; ls ${parents.join(' ')} >/dev/null && echo parents`;
    const r = await d.sh('sys', `${look}; unshare -m sh -c 'for m in $(grep -o " /usr/[^ ]*" /proc/self/mounts | sort -r); do umount -l $m; done; ${look.replace(/'/g, '')}' 2>&1; echo end`);
    expect(r.stdout).not.toContain('SEEN');
    expect(r.stdout).toMatch(/^parents\n/);
    expect(r.stdout.trim().endsWith('end')).toBe(true);
  });

  it('refuses the profile to a tenant no rule grants it, and gives it to one a rule does', async () => {
    const refused = await cliAs(d.socket, { uid: NOBODY, groups: [GID] }, ['session', 'create', '--name', 'nope', '--profile', 'system']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`uid ${NOBODY} may not have a session of profile "system": no access rule grants it`);
    const events = (JSON.parse((await d.cli(['events', '--json'])).stdout) as { events: { caller_uid: number; decision: string; rule: string; detail: string | null }[] }).events;
    expect(events.some((e) => e.caller_uid === NOBODY && e.decision === 'deny' && e.rule === 'profiles' && e.detail?.startsWith('profile system'))).toBe(true);
    const granted = await cliAs(d.socket, { uid: BUILDER, groups: [GID] }, ['session', 'create', '--name', 'yes', '--profile', 'system', '--json']);
    expect(granted.stderr).toBe('');
    expect(granted.code).toBe(0);
    const s = JSON.parse(granted.stdout) as { id: string; profile: string };
    expect(s.profile).toBe('system');
    await d.destroy(s.id);
  });
});
