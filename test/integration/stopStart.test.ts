// Stop and start (issue 24, item 3): stop ends a session's processes and
// stores its writable root and /home; it keeps its name, address, published
// ports, volumes and secrets, and holds no memory, no process and no cgroup.
// Start brings it back from those files. Idle stop stops a session nobody
// uses, not one with a viewer; show and events say why it stopped.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { isRoot, listenPort, TestDaemon } from './harness.js';
import { Viewer } from './viewer.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How a TCP connect to 127.0.0.1:port ends: 'open', or the error's code. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const t = setTimeout(() => (s.destroy(), resolve('timeout')), 3000);
    s.once('connect', () => (clearTimeout(t), s.destroy(), resolve('open')));
    s.once('error', (e: NodeJS.ErrnoException) => (clearTimeout(t), resolve(e.code ?? e.message)));
  });
}

/** Host PIDs whose real uid lies in [base, base+size). */
function processesInRange(base: number, size: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${e}/status`, 'utf8'))?.[1]);
      if (uid >= base && uid < base + size) out.push(Number(e));
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

describe.skipIf(!isRoot)('stop and start (root)', () => {
  const d = new TestDaemon();
  const port = listenPort(51);
  const laterPort = listenPort(52);
  const stored = (id: string) => (existsSync(join(d.stateDir, 'stopped')) ? readdirSync(join(d.stateDir, 'stopped')).filter((f) => f.startsWith(id)) : []);

  beforeAll(async () => {
    await d.start();
    expect((await d.cli(['volume', 'create', 'code', '--size', '32'])).code).toBe(0);
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('keeps the root layer, /home, a volume, the address and the ports; a stopped session has no process or cgroup', async () => {
    const s = await d.create({ name: 'keep', volumes: [{ name: 'code', target: '/srv' }], publish: [{ host_ip: '127.0.0.1', host_port: port, session_port: 80 }] });
    const w = await d.sh('keep', 'echo root > /etc/kept && echo home > /home/kept && echo vol > /srv/kept && mkdir -p /var/www && echo page > /var/www/index.html && chown 1234:1234 /home/kept && (setsid sleep 1000 </dev/null >/dev/null 2>&1 &)');
    expect(w.code).toBe(0);
    const range = s.id_range!;
    expect(processesInRange(range.host_base, range.size).length).toBeGreaterThanOrEqual(2);

    const stop = await d.cli(['session', 'stop', 'keep']);
    expect([stop.code, stop.stdout, stop.stderr]).toEqual([0, `${s.id} stopped\n`, '']);
    const off = await d.show('keep');
    expect(off.state).toBe('stopped');
    expect(off.network.address).toBe(s.network.address);
    expect(off.network.published).toEqual(s.network.published);
    expect(off.volumes).toEqual(s.volumes);
    expect([off.init_pid, off.id_range]).toEqual([null, null]);
    expect(off.stopped_because).toBe('asked by uid 0');
    expect(off.stored_bytes).toBeGreaterThan(0);
    expect(stored(s.id)).toEqual([expect.stringMatching(/^s-[0-9a-f]{10}\.tar(\.zst)?$/)]);
    expect(statSync(join(d.stateDir, 'stopped', stored(s.id)[0]!)).mode & 0o777).toBe(0o600);
    // No memory held: no process of its range, no cgroup (its tmpfs went with them).
    expect(processesInRange(range.host_base, range.size)).toEqual([]);
    expect(d.cgroupDirs(s.id)).toEqual([]);
    // Its port refuses while it is stopped (nothing listens), and exec says why it cannot run.
    expect(await tryConnect(port)).toBe('ECONNREFUSED');
    const exec = await d.sh('keep', 'true');
    expect([exec.code, exec.stderr]).toEqual([1, expect.stringMatching(/is stopped, not running/)]);
    // Its name stays its own: a create of the same name is refused.
    expect((await d.cli(['session', 'create', '--name', 'keep'])).stderr).toMatch(/already have a live session named 'keep'/);

    const start = await d.cli(['session', 'start', 'keep']);
    expect([start.code, start.stdout, start.stderr]).toEqual([0, `${s.id} running\n`, '']);
    const on = await d.show('keep');
    expect([on.id, on.state, on.network.address, on.stored_bytes]).toEqual([s.id, 'running', s.network.address, null]);
    expect(stored(s.id)).toEqual([]);
    const r = await d.sh('keep', 'cat /etc/kept /home/kept /srv/kept; stat -c %u:%g /home/kept; pgrep -x sleep || echo no-sleep');
    expect(r.stdout).toBe('root\nhome\nvol\n1234:1234\nno-sleep\n');
    // The port reaches the session again.
    await d.sh('keep', 'cd /var/www && (setsid python3 -m http.server 80 --bind 0.0.0.0 </dev/null >/dev/null 2>&1 &)');
    let body = '';
    for (let i = 0; i < 50 && !body; i++) {
      body = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) }).then((x) => (x.ok ? x.text() : ''), () => '');
      if (!body) await sleep(100);
    }
    expect(body).toBe('page\n');
  });

  it('a start that cannot restore leaves it stopped with its files as they were', async () => {
    const s = await d.create({ name: 'broken' });
    await d.sh('broken', 'echo mine > /home/mine');
    expect((await d.cli(['session', 'stop', 'broken'])).code).toBe(0);
    const file = join(d.stateDir, 'stopped', stored(s.id)[0]!);
    const good = readFileSync(file);
    writeFileSync(file, 'not a snapshot');
    const start = await d.cli(['session', 'start', 'broken']);
    expect(start.code).toBe(1);
    expect(start.stderr).toMatch(/not started \(it is stopped, its files kept\).*\[start step restore\]/);
    const shown = await d.show('broken');
    expect(shown.state).toBe('stopped');
    expect(shown.last_error).toMatch(/restore/);
    expect(d.cgroupDirs(s.id)).toEqual([]);
    expect(readFileSync(file, 'utf8')).toBe('not a snapshot');
    // Put back, it starts.
    writeFileSync(file, good);
    expect((await d.cli(['session', 'start', 'broken'])).code).toBe(0);
    expect((await d.sh('broken', 'cat /home/mine')).stdout).toBe('mine\n');
  });

  it('refuses to stop a strict session (no layer to store) before ending anything: it runs on, its processes untouched', async () => {
    const s = await d.create({ name: 'tight', profile: 'strict' });
    await d.sh('tight', 'sleep 1000 >/dev/null 2>&1 &');
    const stop = await d.cli(['session', 'stop', 'tight']);
    expect(stop.code).toBe(1);
    expect(stop.stderr).toMatch(/cannot be stopped: .*no writable root layer.*destroy it instead/);
    expect((await d.show('tight')).state).toBe('running');
    expect(stored(s.id)).toEqual([]);
    expect((await d.sh('tight', 'pgrep -x sleep >/dev/null && echo alive')).stdout).toBe('alive\n');
  });

  it('a stopped session survives a daemon restart; destroy then removes its files and frees its name and address', async () => {
    const s = await d.create({ name: 'later', publish: [{ host_ip: '127.0.0.1', host_port: laterPort, session_port: 80 }] });
    await d.sh('later', 'echo still > /home/still');
    expect((await d.cli(['session', 'stop', 'later'])).code).toBe(0);
    await d.stop('SIGKILL');
    await d.start();
    expect((await d.show('later')).state).toBe('stopped');
    // Its port is not forwarded to an address nothing answers on (that would hang a client): refused.
    expect(await tryConnect(laterPort)).toBe('ECONNREFUSED');
    expect((await d.cli(['session', 'start', 'later'])).code).toBe(0);
    expect((await d.sh('later', 'cat /home/still')).stdout).toBe('still\n');
    expect((await d.cli(['session', 'stop', 'later'])).code).toBe(0);
    expect((await d.cli(['session', 'destroy', 'later'])).code).toBe(0);
    expect((await d.show(s.id)).state).toBe('destroyed');
    expect(stored(s.id)).toEqual([]);
    const again = await d.create({ name: 'later' });
    expect(again.id).not.toBe(s.id);
  });

  it('a session re-adopted after a restart, stopped and started again at once, runs on: the old init\'s exit is not the new one\'s', async () => {
    // A quick start (no network to set up) and a daemon killed outright, as a fleet test found it.
    const s = await d.create({ name: 'adopted', network: 'none', console: true });
    // Three rounds: the race is a start finishing within 50 ms of the stop.
    for (let round = 0; round < 3; round++) {
      await d.stop('SIGKILL');
      await d.start();
      // A while after the re-adoption, as where a fleet test found it (a stop at once did not show it here).
      await sleep(1000);
      // Straight one after the other through the API (no CLI start between): the old init's exit
      // watch answers up to 50 ms late for an adopted init, while the new init already runs.
      expect((await d.api('POST', `/v1/sessions/${s.id}/stop`)).status).toBe(200);
      const started = await d.api('POST', `/v1/sessions/${s.id}/start`);
      expect(started.status, JSON.stringify(started.body)).toBe(200);
      await sleep(300);
      const now = await d.show(s.id);
      expect(now, JSON.stringify(now)).toMatchObject({ state: 'running', last_error: null });
      expect((await d.sh(s.id, 'echo alive')).stdout).toBe('alive\n');
    }
    await d.destroy(s.id);
  });

  it('idle stop: not while a viewer is attached; then after its timeout, saying why', async () => {
    const s = await d.create({ name: 'idle', idle_timeout_s: 2 });
    expect(s.idle_timeout_s).toBe(2);
    const v = new Viewer(d, 'idle');
    await v.opened;
    await sleep(4000);
    expect((await d.show('idle')).state).toBe('running');
    v.ws.close();
    await v.closed;
    let shown = await d.show('idle');
    for (const deadline = Date.now() + 15_000; shown.state !== 'stopped' && Date.now() < deadline; ) {
      await sleep(200);
      shown = await d.show('idle');
    }
    expect(shown.state).toBe('stopped');
    expect(shown.stopped_because).toMatch(/^idle for \d+s \(its idle timeout is 2s\)/);
    expect((await d.cli(['session', 'show', 'idle'])).stdout).toMatch(/^stopped\s+idle for/m);
    // The audit trail says so too, as the daemon's act on the owner's session (recorded just after the stop).
    type Ev = { via: string; action: string; session_id: string | null; decision: string; rule: string; detail: string | null; object_owner: number | null };
    let idleStops: Ev[] = [];
    for (const deadline = Date.now() + 5000; idleStops.length === 0 && Date.now() < deadline; await sleep(100)) {
      const events = (JSON.parse((await d.cli(['events', '--session', 'idle', '--json'])).stdout) as { events: Ev[] }).events;
      idleStops = events.filter((e) => e.via === 'daemon' && e.action === 'session.stop');
    }
    expect(idleStops).toHaveLength(1);
    expect(idleStops[0]).toMatchObject({ session_id: s.id, decision: 'none', rule: 'idle_timeout_s', object_owner: 0 });
    expect(idleStops[0]!.detail).toMatch(/^stopped: idle for \d+s \(its idle timeout is 2s\)/);
    expect((await d.cli(['events', '--session', 'idle'])).stdout).toMatch(/daemon\s+session\.stop/);
    expect(existsSync(join(d.stateDir, 'stopped'))).toBe(true);
    expect(s.id).toBe(shown.id);
  });

  it('idle stop: not while it works (CPU)', async () => {
    await d.create({ name: 'busy', idle_timeout_s: 2 });
    await d.sh('busy', '(setsid sh -c "while :; do :; done" </dev/null >/dev/null 2>&1 &)');
    await sleep(5000);
    expect((await d.show('busy')).state).toBe('running');
  });
});
