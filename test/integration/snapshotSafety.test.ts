// Snapshots that go wrong must leave nothing wrong behind: `-o FILE` never
// follows a planted symlink.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CLI, isRoot, TestDaemon } from './harness.js';

/** The CLI with a deadline: killed (code null) if it takes longer; how long it took. */
function cliTimed(d: TestDaemon, args: string[], deadlineMs: number): Promise<{ code: number | null; ms: number; stderr: string }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ENCLAVE_SOCKET: d.socket }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), deadlineMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, ms: Date.now() - t0, stderr });
    });
  });
}

describe.skipIf(!isRoot)('snapshots that go wrong (root)', () => {
  const d = new TestDaemon();

  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('-o FILE never follows a planted FILE.partial (or FILE) symlink: it writes a new file and renames it', async () => {
    const sub = join(d.dir, 'out');
    rmSync(sub, { recursive: true, force: true });
    mkdirSync(sub, { mode: 0o755 });
    const victim = join(d.dir, 'victim');
    const victim2 = join(d.dir, 'victim2');
    writeFileSync(victim, 'root-owned, precious\n', { mode: 0o644 });
    writeFileSync(victim2, 'also precious\n', { mode: 0o644 });
    const file = join(sub, 'p.snap');
    symlinkSync(victim, `${file}.partial`);
    symlinkSync(victim2, file);
    const small = await d.create({ name: 'small' });
    expect(small.state).toBe('running');
    const r = await cliTimed(d, ['session', 'snapshot', 'small', '-o', file, '--compression', 'zstd'], 30_000);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(readFileSync(victim, 'utf8')).toBe('root-owned, precious\n');
    expect(readFileSync(victim2, 'utf8')).toBe('also precious\n');
    expect(readlinkSync(`${file}.partial`)).toBe(victim); // untouched
    const st = lstatSync(file);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(readFileSync(file).readUInt32LE(0)).toBe(0xfd2fb528);
    // Nothing else left in the directory.
    expect(readdirSync(dirname(file)).sort()).toEqual([basename(file), `${basename(file)}.partial`]);
    // A failed snapshot leaves no partial file either.
    const bad = await cliTimed(d, ['session', 'snapshot', 'no-such-session', '-o', join(sub, 'q.snap')], 30_000);
    expect(bad.code).toBe(1);
    expect(readdirSync(sub).filter((f) => f.startsWith('q.snap'))).toEqual([]);
  });
});
