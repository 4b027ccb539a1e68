// Out of memory: with limits.oom = "session" a kill ends the whole session;
// under either policy every kill is reported (show, events, /metrics, exec's
// status), and a restore that runs out of memory says so.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, TestDaemon, SESSION_PROBE } from './harness.js';

describe.skipIf(!isRoot)('OOM policy "session" (root)', () => {
  const d = new TestDaemon({ extraConfig: '[limits]\noom = "session"\n' });
  let probe: string;
  beforeAll(async () => {
    await d.start();
    d.buildProbe();
    probe = SESSION_PROBE;
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('ends the session that ran out of memory, and only that one', async () => {
    const hog = await d.create({ name: 'greedy', memory_mb: 64 });
    const other = await d.create({ name: 'bystander', memory_mb: 64 });
    await d.cli(['session', 'exec', 'greedy', '--', probe, 'hog']);
    let state = (await d.show(hog.id)).state;
    for (let i = 0; i < 500 && state !== 'failed'; i++) {
      await new Promise((r) => setTimeout(r, 10));
      state = (await d.show(hog.id)).state;
    }
    const shown = await d.show(hog.id);
    expect(shown.state).toBe('failed');
    expect(shown.last_error).toMatch(/ran out of memory/);
    expect(d.cgroupDirs(hog.id)).toEqual([]);
    expect((await d.show(other.id)).state).toBe('running');
    expect((await d.sh('bystander', 'echo fine')).stdout).toBe('fine\n');
  });
});

/** The kernel's own record of OOM kills in a memcg: the last `oom-kill:` line naming it in the kernel log. */
function kernelOomVictim(memcg: string): { task: string; pid: number } | undefined {
  const log = spawnSync('dmesg', [], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).stdout ?? '';
  let found: { task: string; pid: number } | undefined;
  for (const m of log.matchAll(/oom-kill:\S*task_memcg=([^,\s]+),task=([^,\s]+),pid=(\d+)/g)) if (m[1] === memcg) found = { task: m[2]!, pid: Number(m[3]) };
  return found;
}

const v1MemoryDir = (d: TestDaemon, id: string) => join('/sys/fs/cgroup/memory', d.cgroupParent, id);
const oomKillsOf = (d: TestDaemon, id: string) => Number(/^oom_kill (\d+)/m.exec(readFileSync(join(v1MemoryDir(d, id), 'memory.oom_control'), 'utf8'))?.[1]);

interface Oom {
  kills: number;
  last_victim: { command: string | null; pid: number | null; at: string } | null;
}

describe.skipIf(!isRoot)('OOM kills are reported (limits.oom = "process", the default)', () => {
  const d = new TestDaemon();
  let probe: string;
  beforeAll(async () => {
    await d.start();
    d.buildProbe();
    probe = SESSION_PROBE;
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('an OOM kill is in show (count, victim), the audit trail, /metrics and exec\'s exit status; the session keeps running', async () => {
    const s = await d.create({ name: 'oomy', memory_mb: 64 });
    const r = await d.cli(['session', 'exec', 'oomy', '--', probe, 'hog']);
    expect(r.code).toBe(137);
    expect(r.stderr).toMatch(/^enclave: killed: out of memory/m);
    // What the kernel says: its counter, and its log's line for this session's memcg.
    const kills = oomKillsOf(d, s.id);
    expect(kills).toBeGreaterThanOrEqual(1);
    const victim = kernelOomVictim(`/${d.cgroupParent}/${s.id}`);
    expect(victim?.task).toBe('probe');

    const shown = JSON.parse((await d.cli(['session', 'show', 'oomy', '--json'])).stdout) as { state: string; oom: Oom };
    expect(shown.state).toBe('running');
    expect(shown.oom.kills).toBe(kills);
    expect(shown.oom.last_victim).toMatchObject({ command: 'probe', pid: victim!.pid });
    const text = (await d.cli(['session', 'show', 'oomy'])).stdout;
    expect(text).toMatch(new RegExp(`^oom kills\\s+${kills}; last: probe \\(host pid ${victim!.pid}\\)`, 'm'));

    const events = (JSON.parse((await d.cli(['events', '--session', 'oomy', '--json'])).stdout) as { events: { action: string; via: string; session_id: string; detail: string | null }[] }).events;
    const oomEvents = events.filter((e) => e.action === 'session.oom');
    expect(oomEvents.length).toBeGreaterThanOrEqual(1);
    expect(oomEvents.at(-1)).toMatchObject({ via: 'kernel', session_id: s.id });
    expect(oomEvents.at(-1)!.detail).toContain(`probe (host pid ${victim!.pid})`);
    const table = (await d.cli(['events', '--session', 'oomy'])).stdout;
    expect(table).toMatch(/kernel\s+session\.oom/);

    const metrics = await d.api('GET', '/metrics');
    expect(String(metrics.body)).toContain(`enclave_session_oom_kills_total{session="${s.id}"} ${kills}`);

    // Still running, and a command that is not killed has no such reason.
    const fine = await d.sh('oomy', 'exit 3');
    expect(fine.code).toBe(3);
    expect(fine.stderr).not.toContain('out of memory');
  });

  it('the count goes on across stop and start (each start is a new cgroup, whose kernel count starts at 0)', async () => {
    const s = await d.create({ name: 'oomy-again', memory_mb: 64 });
    expect((await d.cli(['session', 'exec', 'oomy-again', '--', probe, 'hog'])).code).toBe(137);
    const before = (JSON.parse((await d.cli(['session', 'show', 'oomy-again', '--json'])).stdout) as { oom: Oom }).oom.kills;
    expect(before).toBeGreaterThanOrEqual(1);
    expect((await d.cli(['session', 'stop', 'oomy-again'])).code).toBe(0);
    expect((await d.cli(['session', 'start', 'oomy-again'])).code).toBe(0);
    expect(oomKillsOf(d, s.id)).toBe(0);
    // The probe was put in /run at create; after a start the session's own tail is the hog (it buffers a line that never ends).
    const r = await d.cli(['session', 'exec', 'oomy-again', '--', 'tail', '/dev/zero']);
    expect(r.code).toBe(137);
    expect(r.stderr).toMatch(/^enclave: killed: out of memory/m);
    const shown = JSON.parse((await d.cli(['session', 'show', 'oomy-again', '--json'])).stdout) as { oom: Oom };
    expect(shown.oom.kills).toBe(before + oomKillsOf(d, s.id));
    expect(shown.oom.kills).toBeGreaterThan(before);
    await d.destroy(s.id);
  });

  it('a restore into a too-small session fails saying it ran out of memory; the session is failed with that reason', { timeout: 180_000 }, async () => {
    const big = await d.create({ name: 'roomy', memory_mb: 1024, root_mb: 1024 });
    expect((await d.sh('roomy', 'head -c 300M /dev/zero > /var/big && echo ok')).stdout).toBe('ok\n');
    const file = join(d.dir, 'roomy.snap');
    const snap = await d.cli(['session', 'snapshot', 'roomy', '-o', file]);
    expect(snap.code, snap.stderr).toBe(0);
    await d.destroy(big.id);

    const r = await d.cli(['session', 'create', '--name', 'cramped', '--from', file, '--memory', '128', '--root-size', '1024']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/out of memory/);
    // One line, no tar noise.
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/^tar:|^zstd:/m);
    const shown = JSON.parse((await d.cli(['session', 'show', 'cramped', '--json'])).stdout) as { id: string; state: string; last_error: string | null; oom: Oom };
    expect(r.stderr).toContain(shown.id);
    expect(shown.state).toBe('failed');
    expect(shown.last_error).toMatch(/out of memory/);
    expect(shown.oom.kills).toBeGreaterThanOrEqual(1);
    // The victim, as the kernel log named it (a session's host uid above 2^31 is printed negative there).
    const victim = shown.oom.last_victim?.command;
    expect(victim).toBe(kernelOomVictim(`/${d.cgroupParent}/${shown.id}`)?.task);
    expect(r.stderr).toContain(`${victim}, host pid ${shown.oom.last_victim!.pid}`);
    expect((await d.cli(['session', 'show', 'cramped'])).stdout).toMatch(/^last error\s+.*out of memory/m);
    expect(d.cgroupDirs(shown.id)).toEqual([]);
  });
});
