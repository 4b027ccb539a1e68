// Kernel budgets that tenants used to share (issue 13): inotify instances,
// TCP buffer memory and AIO contexts. In each, session A exhausts its own
// budget while session B and the host keep theirs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Session } from '../../src/api/schemas.js';
import { CLI, isRoot, TestDaemon, SESSION_PROBE } from './harness.js';

/** The host's TCP buffer memory, bytes (tcp_memory_allocated is one counter for every netns). */
function hostTcpMemory(): number {
  const m = /^TCP: .* mem (\d+)$/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
  return Number(m?.[1] ?? 0) * 4096;
}

describe.skipIf(!isRoot)('kernel budgets per session (root)', () => {
  const d = new TestDaemon();
  let probe: string;
  let a: Session;
  const held: ChildProcess[] = [];

  /** `probe CASE ARG` in a session, kept running; resolves with its first line. */
  function hold(session: string, args: string[]): Promise<string> {
    const p = spawn(process.execPath, [CLI, 'session', 'exec', session, '--', SESSION_PROBE, ...args], { env: { ...process.env, ENCLAVE_SOCKET: d.socket } });
    held.push(p);
    return new Promise((resolve, reject) => {
      let out = '';
      p.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      p.on('close', () => reject(new Error(`probe ${args.join(' ')} ended: ${out}`)));
    });
  }

  beforeAll(async () => {
    await d.start();
    probe = d.buildProbe();
    a = await d.create({ name: 'greedy', memory_mb: 64 });
    await d.create({ name: 'neighbour' });
  });
  afterAll(async () => {
    for (const p of held) p.kill('SIGKILL');
    await d.cleanup();
  });

  it('gives each session its own inotify budget: A runs out, B and host root do not', async () => {
    // The session's user namespace is owned by its own host uid, so its
    // instances are counted against that uid, not against host root's.
    const limit = Number(readFileSync('/proc/sys/user/max_inotify_instances', 'utf8'));
    expect(await hold('greedy', ['inotify-many', String(limit + 50)])).toBe(`${limit} EMFILE`);
    expect((await d.cli(['session', 'exec', 'neighbour', '--', SESSION_PROBE, 'inotify-one'])).stdout).toBe('ok\n');
    expect(spawnSync(probe, ['inotify-one'], { encoding: 'utf8' }).stdout).toBe('ok\n');
    // NS_GET_OWNER_UID: the namespace's owner is the first host uid of the session's range.
    const py = 'import fcntl,os,struct,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\nprint(struct.unpack("I",fcntl.ioctl(fd,0xb704,bytes(4)))[0])';
    const owner = spawnSync('/usr/bin/python3', ['-c', py, `/proc/${a.init_pid}/ns/user`], { encoding: 'utf8' });
    expect(owner.stdout.trim()).toBe(String(a.id_range!.host_base));
  });

  it('charges TCP buffers to the session: A pins at most its memory limit, the host and B keep theirs', async () => {
    const before = hostTcpMemory();
    const queued = Number(await hold('greedy', ['tcp-hog', '200']));
    const limit = 64 * 1024 * 1024;
    const usage = Number(readFileSync(join('/sys/fs/cgroup/memory', d.cgroupParent, a.id, 'memory.kmem.tcp.usage_in_bytes'), 'utf8'));
    const grew = hostTcpMemory() - before;
    console.log(`tcp-hog: ${queued} bytes queued, session tcp usage ${usage}, host TCP memory +${grew}`);
    expect(queued).toBeGreaterThan(1024 * 1024); // it did fill buffers
    // The kernel lets charges it must not fail (an arriving segment) overshoot the limit a little.
    expect(usage).toBeLessThanOrEqual(1.5 * limit);
    expect(grew).toBeLessThan(1.5 * limit);
    // The neighbour moves a megabyte over TCP as usual.
    const r = await d.sh(
      'neighbour',
      `node -e 'const n=require("net");const s=n.createServer(c=>{let k=0;c.on("data",b=>k+=b.length);c.on("end",()=>{console.log(k);s.close()})}).listen(0,"127.0.0.1",()=>{const c=n.connect(s.address().port,"127.0.0.1",()=>c.end(Buffer.alloc(1<<20)))})'`,
    );
    expect(r.stdout.trim()).toBe(String(1 << 20));
  });

  it('refuses AIO contexts in sessions (fs.aio-max-nr is host-wide); the host keeps them', async () => {
    expect((await d.cli(['session', 'exec', 'greedy', '--', SESSION_PROBE, 'io-setup'])).stdout).toBe('ENOSYS\n');
    expect((await d.cli(['session', 'exec', 'neighbour', '--', SESSION_PROBE, 'io-setup'])).stdout).toBe('ENOSYS\n');
    expect(spawnSync(probe, ['io-setup'], { encoding: 'utf8' }).stdout).toBe('ok\n');
  });
});
