// --init systemd (issue 26): systemd boots inside a system session as PID 1
// of a PID namespace of its own (the session's init stays PID 1 of the
// session and forks it), in the session's delegated cgroups. It reaches
// running or degraded, starts a unit the test writes, which serves on a
// published port; journalctl reads its journal; exec and the console work
// beside it; stop halts it cleanly (its units' stop jobs run) and start
// boots it again; destroy leaves nothing. A create that cannot boot it
// fails, with the reason, and leaves nothing either.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { machineIdFor } from '../../src/isolation/bootPlan.js';
import { isRoot, listenPort, TestDaemon } from './harness.js';
import { Viewer } from './viewer.js';

const SYSTEMD = '/usr/lib/systemd/systemd';
const named = '/sys/fs/cgroup/systemd';

/** An HTTP GET on the host's loopback: the body, or the error's code. */
function fetchText(port: number): Promise<string> {
  return new Promise((resolve) => {
    get({ host: '127.0.0.1', port, path: '/', timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    }).on('error', (e: NodeJS.ErrnoException) => resolve(`ERR ${e.code}`));
  });
}

const UNIT = `[Unit]
Description=enclave test web server
[Service]
ExecStart=/usr/bin/python3 -m http.server 8080 --directory /srv/www
`;
// A unit whose stop job leaves a mark in the session's root: only a clean halt runs it.
const MARKER = `[Unit]
Description=enclave test halt marker
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/bin/sh -c 'echo halted-cleanly > /var/lib/enclave-halt-marker'
`;

describe.skipIf(!isRoot)('--init systemd (root)', () => {
  // A grace long enough for systemd's own shutdown on a loaded machine: a stop that needed SIGKILL is logged, and checked below.
  const d = new TestDaemon({ extraConfig: 'stop_grace_ms = 60000\n' });
  const hostPort = listenPort(26);
  let id = '';

  beforeAll(async () => {
    // CI's setup installs systemd and dbus (.ci/setup): a host without them fails here rather than skipping.
    if (!existsSync(SYSTEMD)) throw new Error(`${SYSTEMD} missing: install Debian's systemd and dbus (npm run setup)`);
    await d.start();
    const s = await d.create({ name: 'sd', profile: 'system', init: 'systemd', memory_mb: 512, publish: [{ host_ip: '127.0.0.1', host_port: hostPort, session_port: 8080 }] });
    id = s.id;
    expect(s.init).toBe('systemd');
  }, 120_000);
  afterAll(async () => {
    await d.cleanup();
  }, 120_000);

  /** What systemd says of its boot once no job is left: running or degraded, and the failed units. */
  const bootState = async () => {
    const r = await d.sh('sd', 'timeout 120 systemctl is-system-running --wait; systemctl --failed --plain --no-legend --no-pager');
    const [state, ...failed] = r.stdout.trim().split('\n');
    return { state, failed: failed.map((l) => l.split(/\s+/)[0]).filter(Boolean), stderr: r.stderr };
  };

  it('refuses --init systemd without the system profile, saying why', async () => {
    const r = await d.cli(['session', 'create', '--profile', 'workspace', '--init', 'systemd']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--init systemd needs --profile system');
    const api = await d.api('POST', '/v1/sessions', { init: 'systemd' });
    expect(api.status).toBe(400);
  });

  it('boots: systemd reaches running, with no failed unit', async () => {
    const b = await bootState();
    if (b.failed.length) console.log(`systemd state ${b.state}; failed units: ${b.failed.join(', ')}`);
    expect(b.stderr).toBe('');
    expect(b.state).toBe('running');
    expect(b.failed).toEqual([]);
    expect((await d.cli(['session', 'show', 'sd'])).stdout).toMatch(/^boots +systemd, as the init of its own PID namespace/m);
  }, 180_000);

  it('runs systemd as PID 1 of its own PID namespace, forked by the session\'s init; commands run in systemd\'s namespaces', async () => {
    // From the host: the session's init, and its child systemd, PID 1 two namespaces down (the session's, then its own).
    const init = (await d.show('sd')).init_pid!;
    expect(readFileSync(`/proc/${init}/comm`, 'utf8')).toBe('enclave-init\n');
    const children = readFileSync(`/proc/${init}/task/${init}/children`, 'utf8').trim().split(' ').map(Number);
    const systemd = children.find((p) => readFileSync(`/proc/${p}/comm`, 'utf8') === 'systemd\n');
    expect(systemd).toBeDefined();
    expect(readFileSync(`/proc/${systemd}/status`, 'utf8')).toMatch(/^NSpid:\t\d+\t\d+\t1$/m);
    // Inside: an exec is in systemd's PID namespace, where systemd is PID 1.
    const r = await d.sh('sd', 'cat /proc/1/comm; systemd-detect-virt --container');
    expect(r.stdout).toBe('systemd\ncontainer-other\n');
  });

  it('keeps its cgroup tree in the session\'s delegated cgroups, and has its own machine ID', async () => {
    const here = join(named, d.cgroupParent, id);
    expect(readdirSync(here)).toEqual(expect.arrayContaining(['init.scope', 'system.slice']));
    const r = await d.sh('sd', 'cat /etc/machine-id; grep name=systemd /proc/$(pgrep -o -x systemd)/cgroup');
    const [machineId, tree] = r.stdout.trim().split('\n');
    expect(machineId).toBe(machineIdFor(id));
    // Rooted at the session's own cgroup (its cgroup namespace): nothing of the host's tree shows.
    expect(tree).toMatch(/^\d+:name=systemd:\/init\.scope$/);
  });

  it('reaches nothing of the host\'s: its system bus is its own, every cgroup hierarchy it sees is rooted at the session\'s', async () => {
    const r = await d.sh(
      'sd',
      'busctl --system --no-legend list | awk \'$1 == "org.freedesktop.systemd1" { print $2 }\'; busctl --system get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager Virtualization; ls /sys/fs/cgroup',
    );
    const [busPid, virt, ...hierarchies] = r.stdout.trim().split('\n');
    // The bus's systemd is PID 1 of the namespace the exec is in: the session's own.
    expect([busPid, virt, r.stderr]).toEqual(['1', 's "container-other"', '']);
    expect(hierarchies).toContain('systemd');
    for (const h of hierarchies) expect(existsSync(join('/sys/fs/cgroup', h, d.cgroupParent, id)), h).toBe(true);
  });

  it('starts a unit written in the session, serves on a published port, and journalctl reads its log', async () => {
    const w = await d.sh(
      'sd',
      [
        'set -e',
        'mkdir -p /srv/www /etc/systemd/system && echo served-by-systemd > /srv/www/index.html',
        'cat > /etc/systemd/system/enclave-web.service <<EOF',
        UNIT.trimEnd(),
        'EOF',
        'cat > /etc/systemd/system/enclave-marker.service <<EOF',
        MARKER.trimEnd(),
        'EOF',
        'systemctl daemon-reload',
        'systemctl start enclave-web.service enclave-marker.service',
        'systemctl is-active enclave-web.service enclave-marker.service',
      ].join('\n'),
    );
    expect([w.stderr, w.stdout]).toEqual(['', 'active\nactive\n']);
    // The server may take a moment to listen after systemd started it.
    let body = '';
    for (let i = 0; i < 100 && body !== 'served-by-systemd\n'; i++) {
      body = await fetchText(hostPort);
      if (body !== 'served-by-systemd\n') await new Promise((r) => setTimeout(r, 100));
    }
    expect(body).toBe('served-by-systemd\n');
    const j = await d.sh('sd', 'journalctl --no-pager -o cat -u enclave-web.service');
    expect(j.stdout).toContain('Started enclave-web.service - enclave test web server.');
    expect(j.stdout).toContain('"GET / HTTP/1.1" 200');
  }, 120_000);

  it('keeps exec and the console working beside it', async () => {
    const v = new Viewer(d, 'sd');
    await v.opened;
    v.type('echo console-$((6*7)) $(systemctl is-system-running)\r');
    await v.waitFor('console-42 running');
    v.ws.close();
  });

  it('stop halts systemd cleanly (its units\' stop jobs run) and start boots it again', async () => {
    const stop = await d.cli(['session', 'stop', 'sd']);
    expect([stop.code, stop.stderr]).toEqual([0, '']);
    expect(d.log()).not.toMatch(/did not (end|stop) in time/);
    const start = await d.cli(['session', 'start', 'sd']);
    expect([start.code, start.stderr]).toEqual([0, '']);
    const b = await bootState();
    expect([b.state, b.stderr]).toEqual(['running', '']);
    const r = await d.sh('sd', 'cat /var/lib/enclave-halt-marker /etc/machine-id; systemctl is-active enclave-web.service');
    expect(r.stdout).toBe(`halted-cleanly\n${machineIdFor(id)}\ninactive\n`);
  }, 240_000);

  it('destroy halts it and leaves no cgroup, in name=systemd or any other hierarchy', async () => {
    await d.destroy('sd');
    expect(d.log()).not.toMatch(/did not (end|stop) in time/);
    expect(d.cgroupDirs(id)).toEqual([]);
    expect(existsSync(join(named, d.cgroupParent, id))).toBe(false);
  }, 120_000);
});

describe.skipIf(!isRoot)('--init systemd fails closed (root)', () => {
  // A root with no systemd in it: the boot's execve fails, and so does the create.
  const d = new TestDaemon();
  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('a create whose systemd cannot start fails with the reason and leaves nothing', async () => {
    const root = join(d.dir, 'bare-root');
    for (const sub of ['proc', 'sys', 'dev', 'run', 'tmp', 'home', 'root', 'etc', 'usr']) mkdirSync(join(root, sub), { recursive: true });
    d.reconfigure({ extraConfig: `rootfs = "${root}"\n` });
    await d.stop();
    await d.start();
    const r = await d.api('POST', '/v1/sessions', { name: 'nosd', profile: 'system', init: 'systemd' });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(r.body)).toContain('could not boot systemd');
    expect(JSON.stringify(r.body)).toContain(`execve ${SYSTEMD}`);
    expect(d.cgroupDirs().flatMap((p) => readdirSync(p).filter((e) => e.startsWith('s-')))).toEqual([]);
  }, 120_000);
});
