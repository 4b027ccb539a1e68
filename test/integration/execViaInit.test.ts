// Exec through the session's own init: a dropped client cannot wedge a
// session, exec'd commands get exactly the session's confinement even after
// the config changed, the control channel is out of the session's reach, and
// a session that cannot fork costs the daemon nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, readdirSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import WebSocket from 'ws';
import { Channel, K8S_V5_PROTOCOL, exitCodeOf } from '../../src/terminal/channels.js';
import { execStatusSchema } from '../../src/api/schemas.js';
import Database from 'better-sqlite3';
import { CLI, isRoot, TestDaemon, SESSION_PROBE } from './harness.js';
import { capabilityMask } from '../../src/isolation/profiles.js';
import { addon } from '../../src/native/addon.js';
import { SessionAgent, StartFailure, type ExitReport } from '../../src/sessions/agent.js';

/** All a pipe's read end holds, to EOF (every write end closed). */
function drain(fd: number): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(65536);
  for (let n; (n = readSync(fd, buf)) > 0; ) chunks.push(Buffer.from(buf.subarray(0, n)));
  return Buffer.concat(chunks).toString();
}

/** A command through a session's init, straight over its control channel: stdout, stderr, how it ended. */
async function run(agent: SessionAgent, argv: string[], o: { env?: string[]; cwd?: string; input?: string } = {}): Promise<{ pid: number; stdout: string; stderr: string; exit: ExitReport | null }> {
  const [outR, outW] = addon().pipe();
  const [errR, errW] = addon().pipe();
  const stdin = o.input === undefined ? undefined : addon().pipe();
  const held = new Set([outR, outW, errR, errW, ...(stdin ?? [])]);
  const close = (fd: number) => held.delete(fd) && closeSync(fd);
  try {
    const c = await agent.start({ tty: false, stdin: stdin !== undefined, argv, env: o.env ?? [], cwd: o.cwd ?? '/', cols: 0, rows: 0, fds: stdin ? [stdin[0], outW, errW] : [outW, errW] });
    // The command has its own copies now.
    for (const fd of [outW, errW, ...(stdin ? [stdin[0]] : [])]) close(fd);
    if (stdin) {
      writeSync(stdin[1], o.input!);
      close(stdin[1]);
    }
    const exit = await c.exited;
    return { pid: c.pid, stdout: drain(outR), stderr: drain(errR), exit };
  } finally {
    for (const fd of [...held]) close(fd);
  }
}

async function startFailure(p: Promise<unknown>): Promise<StartFailure> {
  try {
    await p;
  } catch (e) {
    if (e instanceof StartFailure) return e;
    throw e;
  }
  throw new Error('it started');
}

/** PIDs whose parent is `ppid` (processes, not threads). */
function childrenOf(ppid: number): { pid: number; comm: string; state: string }[] {
  const out = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = /^\d+ \((.*)\) (\S) (\d+)/.exec(readFileSync(`/proc/${e}/stat`, 'utf8'));
      if (m && Number(m[3]) === ppid) out.push({ pid: Number(e), comm: m[1]!, state: m[2]! });
    } catch {
      /* gone */
    }
  }
  return out;
}

const CONFINEMENT = /^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters|Uid|Gid|Groups):/;

function upgradeStatus(socket: string, path: string): Promise<number> {
  const ws = new WebSocket(`ws+unix://${socket}:${path}`, [K8S_V5_PROTOCOL]);
  return new Promise<number>((resolve) => {
    ws.on('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('error', () => undefined);
  });
}

/** exec --tty over raw k8s framing: the terminal's output and the exit code. */
function ttyExec(socket: string, session: string, script: string): Promise<{ output: Buffer; code: number | undefined }> {
  const q = `command=sh&command=-c&command=${encodeURIComponent(script)}&tty=1&cols=80&rows=24`;
  const ws = new WebSocket(`ws+unix://${socket}:/v1/sessions/${session}/exec?${q}`, [K8S_V5_PROTOCOL]);
  const out: Buffer[] = [];
  let code: number | undefined;
  return new Promise((resolve, reject) => {
    ws.on('message', (m: Buffer) => {
      if (m[0] === Channel.stdout) out.push(m.subarray(1));
      if (m[0] === Channel.status) code = exitCodeOf(execStatusSchema.parse(JSON.parse(m.subarray(1).toString())));
    });
    ws.on('close', () => resolve({ output: Buffer.concat(out), code }));
    ws.on('error', reject);
  });
}

describe.skipIf(!isRoot)('exec through the session init (root)', () => {
  const d = new TestDaemon({ topConfig: '[rlimits]\nnofile = 1111\n' });
  let probe: string;
  beforeAll(async () => {
    await d.start();
    d.buildProbe();
    probe = SESSION_PROBE;
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('a client killed mid-exec, with a command that ignores HUP and TERM, cannot wedge destroy', { timeout: 30_000 }, async () => {
    const s = await d.create({ name: 'hang' });
    const client = spawn(process.execPath, [CLI, 'session', 'exec', 'hang', '--socket', d.socket, '--', 'sh', '-c', 'trap "" HUP TERM; sleep 4; echo done'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1000));
    client.kill('SIGKILL');
    await new Promise((r) => client.once('exit', r));
    // The command was the init's child inside the session: nothing of it is the daemon's (its lxcfs is, for every session).
    const lxcfsFile = join(d.stateDir, 'lxcfs', 'lxcfs.pid');
    const lxcfs = existsSync(lxcfsFile) ? Number(readFileSync(lxcfsFile, 'utf8').trim()) : -1;
    const ofExecs = () => childrenOf(d.pid).filter((c) => c.pid !== lxcfs);
    expect(ofExecs().filter((c) => c.pid !== s.init_pid)).toEqual([]);
    await d.destroy(s.id); // before the fix this never returned
    expect((await d.show(s.id)).state).toBe('destroyed');
    expect(ofExecs()).toEqual([]);
  });

  it('after rlimits.nofile changes and a restart, exec in an old session gets exactly the init\'s limits, filter and capabilities', { timeout: 30_000 }, async () => {
    const old = await d.create({ name: 'old' });
    await d.stop('SIGTERM');
    d.reconfigure({ topConfig: '[rlimits]\nnofile = 2222\n' });
    await d.start();
    const r = await d.sh('old', 'cat /proc/1/limits; echo ===; cat /proc/self/limits; echo ===; cat /proc/1/status; echo ===; cat /proc/self/status');
    expect(r.code).toBe(0);
    const [initLimits, selfLimits, initStatus, selfStatus] = r.stdout.split('===\n');
    expect(selfLimits).toBe(initLimits);
    expect(selfLimits).toMatch(/^Max open files\s+1111\s+1111/m);
    const confinement = (status: string) => status.split('\n').filter((l) => CONFINEMENT.test(l));
    expect(confinement(selfStatus!)).toHaveLength(11);
    expect(confinement(selfStatus!)).toEqual(confinement(initStatus!));
    expect(confinement(selfStatus!)).toContain(`CapBnd:\t${capabilityMask('workspace').padStart(16, '0')}`); // the default profile's
    expect(confinement(selfStatus!).find((l) => l.startsWith('Seccomp:'))).toBe('Seccomp:\t2');
    // A new session is made with the new config.
    await d.create({ name: 'new' });
    expect((await d.sh('new', 'cat /proc/self/limits')).stdout).toMatch(/^Max open files\s+2222\s+2222/m);
    await d.destroy('new');
    await d.destroy(old.id);
  });

  // Every verb, both ways, between the daemon's codec (the verb table of
  // native/src/agent.h) and the real init; the unit tests' stand-in plays
  // only a hostile init.
  it('speaks the whole control protocol with the real init: exec, stdin, env, failures, tty, signal, release, write, ending', { timeout: 30_000 }, async () => {
    const s = await d.create({ name: 'protocol' });
    let ending: (code: number) => void;
    const ended = new Promise<number>((r) => (ending = r));
    // The newest connection wins: this one takes the channel from the daemon until the session ends.
    const agent = new SessionAgent(join(d.stateDir, 'sessions', s.id, 'control'), pino({ level: 'silent' }), (code) => ending(code));
    try {
      agent.listen();
      // exec -> started, exited: argv, env, cwd, stdin, stdout, stderr, exit code.
      const r = await run(agent, ['sh', '-c', 'read line; echo "$line $A $(pwd)"; echo err >&2; exit 3'], { env: ['A=from-env'], cwd: '/tmp', input: 'hello\n' });
      expect(r).toMatchObject({ stdout: 'hello from-env /tmp\n', stderr: 'err\n', exit: { code: 3, signal: null } });
      expect(r.pid).toBeGreaterThan(1);
      // exec -> failed: a missing cwd, a missing command, and what the init's table refuses.
      expect(await startFailure(run(agent, ['true'], { cwd: '/nonexistent' }))).toMatchObject({ step: 'cwd', errno: 2 });
      expect(await startFailure(run(agent, ['/nonexistent-command']))).toMatchObject({ step: 'exec', errno: 2 });
      expect(await startFailure(agent.start({ tty: true, stdin: false, argv: ['true'], env: [], cwd: '/', cols: 1001, rows: 24, fds: [] }))).toMatchObject({ step: 'protocol', errno: 22, detail: 'malformed exec' });
      // exec with a tty -> started with the pty master; release once drained.
      const t = await agent.start({ tty: true, stdin: false, argv: ['sh', '-c', 'tty; stty size; exit 7'], env: [], cwd: '/', cols: 100, rows: 30, fds: [] });
      expect(t.master !== null && addon().isPtyMaster(t.master)).toBe(true);
      let screen = '';
      const buf = Buffer.alloc(4096);
      while (!/30 100\r\n/.test(screen)) screen += buf.subarray(0, readSync(t.master!, buf)).toString();
      expect(screen).toMatch(/^\/dev\/pts\/\d+\r\n30 100\r\n$/);
      expect(await t.exited).toEqual({ code: 7, signal: null });
      agent.release(t.id);
      closeSync(t.master!);
      // signal -> the command's process group.
      const [outR, outW] = addon().pipe();
      const sleeper = await agent.start({ tty: false, stdin: false, argv: ['sleep', '30'], env: [], cwd: '/', cols: 0, rows: 0, fds: [outW, outW] });
      closeSync(outW);
      agent.signal(sleeper.id, 15);
      expect(await sleeper.exited).toEqual({ code: null, signal: 15 });
      closeSync(outR);
      // write -> written (a secret file, atomically, its mode), and refused outside the secret mounts.
      await agent.writeFile('/run/enclave/auth', 'protocol-test', 0o400, 0, Buffer.from('s3cret\n'));
      expect((await run(agent, ['sh', '-c', 'stat -c %a /run/enclave/auth/protocol-test; cat /run/enclave/auth/protocol-test'])).stdout).toBe('400\ns3cret\n');
      await agent.writeFile('/run/enclave/auth', 'shared-test', 0o440, 65000, Buffer.from('s3cret\n'));
      expect((await run(agent, ['stat', '-c', '%a %u %g', '/run/enclave/auth/shared-test'])).stdout).toBe('440 0 65000\n');
      expect(await startFailure(agent.writeFile('/etc', 'x', 0o400, 0, Buffer.from('x')))).toMatchObject({ step: 'write', errno: 1, detail: 'not a secret directory' });
      expect(await startFailure(agent.writeFile('/run/enclave/auth', 'x', 0o4755, 0, Buffer.from('x')))).toMatchObject({ step: 'write', errno: 22, detail: 'bad mode' });
      // ending: the init says how it ends before it exits.
      await d.destroy(s.id);
      expect(await ended).toBe(143);
    } finally {
      agent.close();
    }
    expect((await d.show(s.id)).state).toBe('destroyed');
  });

  it('a session process cannot find or use the control channel', async () => {
    const s = await d.create({ name: 'nosy' });
    const control = join(d.stateDir, 'sessions', s.id, 'control');
    const st = statSync(control);
    expect(st.isSocket()).toBe(true);
    expect(st.uid).toBe(0);
    expect(st.mode & 0o777).toBe(0o600);
    const script = [
      'ls /proc/1/fd >/dev/null 2>&1 && echo FD-LISTED',
      'for f in 0 1 2 3 4 5 6 7 8 9; do readlink /proc/1/fd/$f 2>/dev/null && echo FD-READ; done',
      'ls /proc/1/root >/dev/null 2>&1 && echo ROOT-LISTED',
      `test -e ${control} && echo PATH-VISIBLE`,
      'find /run /tmp /home /proc/1 -type s 2>/dev/null | grep . && echo SOCKET-FOUND',
      "grep -v '^Num' /proc/net/unix | grep . && echo UNIX-SOCKETS",
      `${probe} getfd 1`,
      `${probe} ptrace 1`,
      'echo end',
    ].join('; ');
    const r = await d.sh('nosy', script);
    expect(r.stdout).toBe('EPERM\nEPERM\nend\n');
    // The daemon still reaches it.
    expect((await d.sh('nosy', 'echo still')).stdout).toBe('still\n');
    await d.destroy(s.id);
  });

  it('exec during a fork bomb in the same session fails with a clear error and leaves the daemon healthy', { timeout: 30_000 }, async () => {
    const bomb = await d.create({ name: 'bomb', pids: 64 });
    const calm = await d.create({ name: 'calm' });
    await d.sh('bomb', `${probe} forkbomb >/dev/null 2>&1 </dev/null &`);
    const pidsFile = d.cgroupDirs(bomb.id).map((c) => join(c, 'pids.current')).find((f) => { try { return statSync(f).isFile(); } catch { return false; } })!;
    for (let i = 0; i < 200 && Number(readFileSync(pidsFile, 'utf8')) < 64; i++) await new Promise((r) => setTimeout(r, 25));
    const r = await d.cli(['session', 'exec', 'bomb', '--', 'true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cannot start a command: step fork failed: EAGAIN/);
    expect((await d.api('GET', '/v1/health')).status).toBe(200);
    expect((await d.sh('calm', 'echo ok')).stdout).toBe('ok\n');
    await d.destroy(bomb.id);
    await d.destroy(calm.id);
  });

  // No output of a tty command may be lost at its exit. (The init also keeps a
  // slave open until the daemon drained the master, against libuv#4992; this
  // test passed with and without that hold here, so it guards the tail, it
  // does not prove the hold.)
  it('a tty command\'s last output always arrives: a 64 KiB burst right before exit, 20 times', { timeout: 60_000 }, async () => {
    const s = await d.create({ name: 'tail' });
    for (let i = 0; i < 20; i++) {
      const r = await ttyExec(d.socket, 'tail', "head -c 65536 /dev/zero | tr '\\0' x; exit 5");
      expect(r.code).toBe(5);
      expect(r.output.toString().split('').filter((c) => c === 'x').length, `run ${i}`).toBe(65536);
    }
    await d.destroy(s.id);
  });

  it('a session of an older daemon (no stored plan) is refused for exec with a clear message, and its kept console does not take the daemon down', { timeout: 30_000 }, async () => {
    const s = await d.create({ name: 'legacy', console: true });
    await d.stop('SIGTERM');
    const db = new Database(join(d.stateDir, 'enclave.db'));
    try {
      db.prepare('DELETE FROM session_plans WHERE session_id = ?').run(s.id);
    } finally {
      db.close();
    }
    await d.start();
    expect((await d.api('GET', '/v1/health')).status).toBe(200);
    const r = await d.cli(['session', 'exec', 'legacy', '--', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/created by an older daemon and has no stored plan/);
    await d.destroy(s.id);
    expect((await d.show(s.id)).state).toBe('destroyed');
  });

  it('validates exec --tty sizes like attach (1..1000 x 1..500), before upgrading', async () => {
    const s = await d.create({ name: 'sizes' });
    for (const q of ['cols=100000&rows=24', 'cols=1e400&rows=24', 'cols=-5&rows=24', 'cols=80&rows=501', 'cols=abc&rows=2']) {
      expect(await upgradeStatus(d.socket, `/v1/sessions/sizes/exec?command=true&tty=1&${q}`), q).toBe(400);
    }
    expect(await upgradeStatus(d.socket, '/v1/sessions/sizes/exec?command=true&tty=1&cols=1000&rows=500')).toBe(101);
    await d.destroy(s.id);
  });

  it('an OOM kill in a session hits only that session\'s processes, and destroy then completes', { timeout: 30_000 }, async () => {
    const s = await d.create({ name: 'oom', memory_mb: 64 });
    const marker = `enclave-test-oom-${d.runId}`;
    writeFileSync('/dev/kmsg', `${marker}\n`);
    const r = await d.cli(['session', 'exec', 'oom', '--', probe, 'hog']);
    expect(r.code).not.toBe(0);
    const log = execFileSync('dmesg', { encoding: 'utf8' });
    const after = log.slice(log.lastIndexOf(marker));
    const kills = [...after.matchAll(/oom-kill:.*?oom_memcg=(\S+?),.*?task=(\S+?),pid=(\d+)/g)];
    expect(kills.length).toBeGreaterThan(0);
    for (const [, memcg, task] of kills) {
      expect(memcg).toContain(s.id);
      expect(task).toBe('probe');
    }
    await d.destroy(s.id);
    expect((await d.show(s.id)).state).toBe('destroyed');
  });
});
