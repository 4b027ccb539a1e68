// Session console attach: byte-exact fan-out, replay and resume, roles,
// resize, a stuck viewer that slows nobody, exit delivery, and the CLI.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { spawn as spawnPty } from 'node-pty';
import { join } from 'node:path';
import xtermHeadless from '@xterm/headless';
import { expectRestored, modesOnPrintf } from './terminalCheck.js';
import { ATTACH_PROTOCOL } from '../../src/terminal/console.js';
import { K8S_V5_PROTOCOL } from '../../src/terminal/channels.js';
import { sessionSchema } from '../../src/api/schemas.js';
import { enclaveCommand, isRoot, TestDaemon } from './harness.js';
import { Viewer } from './viewer.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The lines a terminal shows (scrollback and screen) after drawing `bytes`. */
async function rendered(bytes: Buffer, cols: number, rows: number): Promise<string[]> {
  const t = new xtermHeadless.Terminal({ cols, rows, scrollback: 5000, allowProposedApi: true });
  await new Promise<void>((r) => t.write(bytes, r));
  const b = t.buffer.active;
  const lines: string[] = [];
  for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)!.translateToString(true));
  t.dispose();
  return lines;
}

/** The enclave CLI in a real terminal of the given size (in the integration-front project: the native front end, which answers attach and exec -t). */
function cliInPty(d: TestDaemon, args: string[], cols: number, rows: number) {
  const [file, argv] = enclaveCommand(args);
  const p = spawnPty(file, argv, { name: 'xterm-256color', cols, rows, env: { ...process.env, ENCLAVE_SOCKET: d.socket } });
  let out = '';
  p.onData((s) => (out += s));
  const exited = new Promise<number>((r) => p.onExit(({ exitCode }) => r(exitCode)));
  const waitFor = async (s: string) => {
    for (const deadline = Date.now() + 15_000; !out.includes(s); ) {
      if (Date.now() > deadline) throw new Error(`CLI never showed ${s}: ${out.slice(-300)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { p, waitFor, exited, out: () => out };
}

/**
 * A marker the shell prints but whose typed form (with backslashes) differs.
 * It ends its line: on the prompt's line, a redraw of the prompt (readline on
 * SIGWINCH, when a viewer's resize lands after the command ran) would wipe
 * it from the screen, and a replayed screen rightly would not show it.
 */
let markers = 0;
function marker(): { typed: string; printed: string } {
  const id = `M${++markers}x${Date.now() % 100000}`;
  return { typed: `printf '\\101%s\\101\\n' ${id}`, printed: `A${id}A` };
}

describe.skipIf(!isRoot)('console attach (root)', () => {
  // A short stall limit, so the stuck-viewer test ends quickly.
  const d = new TestDaemon({ extraConfig: '[terminal]\nstall_ms = 1000\n' });

  beforeAll(async () => {
    await d.start();
    await d.create({ name: 'con', tmp_mb: 256 });
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('carries 64 MiB of output byte-exact', { timeout: 120_000 }, async () => {
    const prep = await d.sh('con', 'head -c 50331648 /dev/urandom | base64 -w0 > /tmp/big && sha256sum < /tmp/big | cut -d" " -f1 && stat -c %s /tmp/big');
    const [hash, size] = prep.stdout.trim().split('\n');
    expect(Number(size)).toBe(64 * 1024 * 1024);
    const v = new Viewer(d, 'con');
    await v.opened;
    const t0 = Date.now();
    v.type(`printf '\\001BEGIN\\001'; cat /tmp/big; printf '\\001END\\001'\r`);
    await v.waitFor('\x01END\x01', 110_000);
    const secs = (Date.now() - t0) / 1000;
    const out = v.output();
    const begin = out.indexOf('\x01BEGIN\x01') + 7;
    const body = out.subarray(begin, out.indexOf('\x01END\x01', begin));
    expect(body.length).toBe(64 * 1024 * 1024);
    expect(sha(body)).toBe(hash);
    console.log(`attach throughput: ${(64 / secs).toFixed(1)} MiB/s`);
    v.ws.close();
    await v.closed;
  });

  it('keeps a 4-byte UTF-8 character split across writes intact', async () => {
    const v = new Viewer(d, 'con');
    await v.opened;
    // Octal in the command, so its echo cannot satisfy the wait.
    v.type(`printf '\\360\\237'; sleep 0.3; printf '\\230\\200\\163plit-done\\n'\r`);
    await v.waitFor('split-done');
    expect(v.output().includes(Buffer.from([0xf0, 0x9f, 0x98, 0x80, ...Buffer.from('split-done')]))).toBe(true);
    v.ws.close();
  });

  it('shows two writers and a reader the same output; the reader cannot type', async () => {
    const w1 = new Viewer(d, 'con', { role: 'rw' });
    const w2 = new Viewer(d, 'con', { role: 'rw' });
    const r = new Viewer(d, 'con', { role: 'ro' });
    await Promise.all([w1.opened, w2.opened, r.opened]);
    const start = Math.max(w1.hello.offset, w2.hello.offset, r.hello.offset);
    r.type('echo FROM-READER-$((2+2))\r');
    const m = marker();
    w2.type(`${m.typed}\r`);
    for (const v of [w1, w2, r]) await v.waitFor(m.printed);
    const from = (v: Viewer) => v.output().subarray(start - v.hello.offset);
    expect(from(w1).equals(from(w2))).toBe(true);
    expect(from(r).subarray(0, from(w1).length).equals(from(w1).subarray(0, from(r).length))).toBe(true);
    for (const v of [w1, w2, r]) expect(v.output().includes('FROM-READER-4')).toBe(false);
    for (const v of [w1, w2, r]) v.ws.close();
  });

  it('resumes from an offset with no byte missing and none twice', async () => {
    const observer = new Viewer(d, 'con');
    const a = new Viewer(d, 'con');
    await Promise.all([observer.opened, a.opened]);
    const m1 = marker();
    a.type(`${m1.typed}\r`);
    await a.waitFor(m1.printed);
    const aStart = a.hello.offset;
    const firstPart = Buffer.from(a.output());
    const resumeAt = a.offset;
    a.ws.close();
    await a.closed;
    const m2 = marker();
    observer.type(`${m2.typed}\r`);
    await observer.waitFor(m2.printed);
    const again = new Viewer(d, 'con', { resume: String(resumeAt) });
    await again.opened;
    await again.waitFor(m2.printed);
    expect(again.hello.offset).toBe(resumeAt);
    expect(again.hello.resumed).toBe(true);
    const stitched = Buffer.concat([firstPart, again.output()]);
    const truth = observer.output().subarray(aStart - observer.hello.offset);
    expect(stitched.subarray(0, truth.length).equals(truth)).toBe(true);
    observer.ws.close();
    again.ws.close();
  });

  it('gives a screen snapshot, not replayed bytes, when the resume offset has left the ring', async () => {
    const w = new Viewer(d, 'con');
    await w.opened;
    const m = marker();
    w.type(`clear; printf 'SNAP\\055TOP\\n'; seq 101 105; ${m.typed}\r`);
    await w.waitFor(m.printed);
    w.ws.close();

    // 64 MiB went through a 2 MiB ring: offset 0 is long gone.
    const v = new Viewer(d, 'con', { resume: '0' });
    await v.opened;
    expect(v.hello.resumed).toBe(false);
    expect(v.hello.snapshot).toBe(true);
    const snap = await v.snapshotSeen();
    // A screen and bounded scrollback, not the ring's megabytes.
    expect(snap.length).toBeLessThan(512 * 1024);
    const lines = await rendered(snap, v.hello.cols, v.hello.rows);
    const top = lines.indexOf('SNAP-TOP');
    expect(top).toBeGreaterThanOrEqual(0);
    expect(lines.slice(top + 1, top + 6)).toEqual(['101', '102', '103', '104', '105']);
    expect(lines[top + 6]).toContain(m.printed);

    // Live output follows at hello.offset; the snapshot is not counted in it,
    // so the offset the client computes resumes exactly.
    const m2 = marker();
    v.type(`${m2.typed}\r`);
    await v.waitFor(m2.printed);
    await new Promise((r) => setTimeout(r, 200));
    const again = new Viewer(d, 'con', { resume: String(v.offset) });
    await again.opened;
    expect(again.hello.resumed).toBe(true);
    expect(again.hello.snapshot).toBe(false);
    expect(again.snapshot).toBeUndefined();

    // A fresh attach gets the snapshot too; a plain k8s client gets it on stdout after a clear.
    const fresh = new Viewer(d, 'con');
    const k8s = new Viewer(d, 'con', {}, K8S_V5_PROTOCOL, false);
    await Promise.all([fresh.opened, k8s.opened]);
    expect(fresh.hello.snapshot).toBe(true);
    expect((await rendered(await fresh.snapshotSeen(), fresh.hello.cols, fresh.hello.rows)).join('\n')).toContain(m2.printed);
    await k8s.waitFor(m2.printed);
    expect(k8s.output().subarray(0, 4).toString()).toBe('\x1b[0m');
    for (const x of [v, again, fresh, k8s]) x.ws.close();
  });

  it('lets a writer resize the terminal, and ignores a reader', async () => {
    const w = new Viewer(d, 'con', { role: 'rw' });
    const r = new Viewer(d, 'con', { role: 'ro' });
    await Promise.all([w.opened, r.opened]);
    w.resize(123, 45);
    await new Promise((res) => setTimeout(res, 150));
    r.resize(20, 5);
    await new Promise((res) => setTimeout(res, 150));
    const m = marker();
    w.type(`stty size; ${m.typed}\r`);
    await w.waitFor(m.printed);
    expect(w.output().toString()).toContain('45 123');
    expect(w.events).toContainEqual({ type: 'resize', cols: 123, rows: 45 });
    expect(r.events.filter((e) => e.type === 'resize' && e.cols === 20)).toEqual([]);
    w.ws.close();
    r.ws.close();
  });

  it('delivers ctrl-c to the foreground job through the session pty', async () => {
    const w = new Viewer(d, 'con');
    await w.opened;
    w.type(`sleep 60; printf '\\156ot-interrupted'\r`);
    await new Promise((r) => setTimeout(r, 300));
    w.type('\x03');
    const m = marker();
    w.type(`${m.typed}\r`);
    await w.waitFor(m.printed, 10_000);
    expect(w.output().toString()).not.toContain('not-interrupted');
    w.ws.close();
  });

  it('does not let a stuck viewer slow the others (and cuts the stuck one off)', { timeout: 120_000 }, async () => {
    const run = async (withStuck: boolean): Promise<number> => {
      let stuck: Viewer | undefined;
      if (withStuck) {
        stuck = new Viewer(d, 'con', {}, ATTACH_PROTOCOL, false);
        await stuck.opened;
        stuck.ws.pause(); // never reads again
      }
      const fast = new Viewer(d, 'con');
      await fast.opened;
      const m = marker();
      const t0 = Date.now();
      fast.type(`head -c 12582912 /tmp/big; ${m.typed}\r`);
      await fast.waitFor(m.printed, 100_000);
      const ms = Date.now() - t0;
      if (stuck) {
        // Output keeps coming past the stall limit (1 s): the stuck one is cut off.
        fast.type(`for i in $(seq 40); do echo tick; sleep 0.05; done\r`);
        await new Promise((r) => setTimeout(r, 1500));
        stuck.ws.resume(); // read again, to see the close the daemon sent
        const closed = await stuck.closed;
        expect(closed.code).toBe(4008);
        expect(closed.reason).toMatch(/too slow: reconnect with resume=\d+/);
      }
      fast.ws.close();
      return ms;
    };
    const alone = await run(false);
    const beside = await run(true);
    console.log(`16 MiB to a fast viewer: ${alone} ms alone, ${beside} ms beside a stuck viewer`);
    expect(beside).toBeLessThan(alone * 3 + 1000);
  });

  it('works for plain Kubernetes v5 clients', async () => {
    const k = new Viewer(d, 'con', {}, K8S_V5_PROTOCOL, false);
    await k.opened;
    expect(k.ws.protocol).toBe(K8S_V5_PROTOCOL);
    const m = marker();
    k.type(`${m.typed}\r`);
    await k.waitFor(m.printed);
    expect(k.events).toEqual([]); // no events channel for them
    k.ws.close();
  });

  it('drains the tail before the exit, then gives every viewer the exit code', async () => {
    await d.create({ name: 'short' });
    const a = new Viewer(d, 'short');
    const b = new Viewer(d, 'short', { role: 'ro' });
    await Promise.all([a.opened, b.opened]);
    // Octal in the command: its echo cannot pass for the output.
    a.type(`yes tail-line | head -n 2000; printf '\\154ast-words'; exit 7\r`);
    const [ca, cb] = await Promise.all([a.closed, b.closed]);
    for (const [v, c] of [[a, ca], [b, cb]] as const) {
      expect(c.code).toBe(1000);
      expect(v.output().toString()).toContain('last-words');
      // Exactly the 2000 lines, counted after the (once or twice) echoed command.
      const text = v.output().toString();
      const after = text.slice(text.lastIndexOf('head -n 2000'));
      expect(after.split('tail-line').length - 1).toBe(2000);
      expect(v.status?.details?.causes).toContainEqual({ reason: 'ExitCode', message: '7' });
    }
  });

  it('runs a one-off command in a terminal with exec --tty, with its size and exit code', async () => {
    // The terminal is the session's own: a pty of its devpts, named the same by tty(1) and /proc.
    const script = 'test -t 0 && test -t 1 && echo is-a-tty; stty size; t=$(tty) && [ "$t" = "$(readlink /proc/self/fd/0)" ] && [ -e "$t" ] && echo "own-tty:$t"; exit 3';
    const run = cliInPty(d, ['session', 'exec', '--tty', 'con', '--', 'sh', '-c', script], 90, 25);
    const code = await run.exited;
    const out = run.out();
    expect(out).toContain('is-a-tty');
    expect(out).toContain('25 90');
    expect(out).toMatch(/own-tty:\/dev\/pts\/\d+/);
    expect(code).toBe(3);
  });

  it('attaches from the CLI in a real terminal, detaches with the keys, and re-attaches to the same screen', async () => {
    const cli = (args: string[]) => cliInPty(d, ['session', 'attach', 'con', ...args], 100, 30);
    const first = cli([]);
    const m = marker();
    await new Promise((r) => setTimeout(r, 500));
    first.p.write(`${m.typed}\r`);
    await first.waitFor(m.printed);
    first.p.write('\x10\x11'); // ctrl-p, ctrl-q
    expect(await first.exited).toBe(0);
    expect(first.out()).toContain('[detached');
    const second = cli(['--detach-keys', 'ctrl-a,d']);
    await second.waitFor(m.printed); // the earlier screen, replayed
    second.p.write('\x01d');
    expect(await second.exited).toBe(0);
  });

  it('puts the terminal back on every way out: a program that exits in the alternate screen (exec --tty), and a detach from one (attach)', async () => {
    const on = modesOnPrintf('INSIDE');
    const run = cliInPty(d, ['session', 'exec', '--tty', 'con', '--', 'sh', '-c', `${on}; exit 4`], 100, 30);
    expect(await run.exited).toBe(4);
    await expectRestored(run.out());

    await d.create({ name: 'modes' });
    const attached = cliInPty(d, ['session', 'attach', 'modes'], 100, 30);
    await new Promise((r) => setTimeout(r, 500));
    attached.p.write(`${on}\r`);
    await attached.waitFor('INSIDE');
    attached.p.write('\x10\x11'); // ctrl-p, ctrl-q
    expect(await attached.exited).toBe(0);
    await expectRestored(attached.out());
    await d.destroy('modes');
  });

  // Last in the file: it restarts the daemon, which ends the other consoles.
  it('starts the console at create with --console, and again when the daemon restarts', async () => {
    const shells = async (ref: string) => (await d.sh(ref, 'ps -eo args')).stdout.split('\n').filter((l) => /^(\/usr)?\/bin\/(ba)?sh -l$/.test(l)).length;
    const until = async (what: string, ok: () => Promise<boolean>) => {
      for (const deadline = Date.now() + 10_000; !(await ok()); ) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const made = await d.cli(['session', 'create', '--name', 'kept', '--console', '--json']);
    expect(made.code).toBe(0);
    const kept = sessionSchema.parse(JSON.parse(made.stdout));
    expect(kept.console).toEqual({ keep: true, running: true, viewers: 0 });
    // Its login shell runs before anyone attaches; a plain session has none.
    const plain = await d.create({ name: 'plain' });
    expect(plain.console).toEqual({ keep: false, running: false, viewers: 0 });
    await until('the kept console shell', async () => (await shells('kept')) === 1);
    expect(await shells('plain')).toBe(0);
    expect((await d.cli(['session', 'show', 'kept'])).stdout).toMatch(/console\s+running, 0 viewer\(s\); kept \(--console\)/);

    // A daemon restart keeps consoles (their inits keep their ptys, consoleSurvival.test.ts): the same one shell.
    expect(await d.stop('SIGTERM')).toBe(0);
    await d.start();
    // Adopted after the start, while the API serves (attach.ts adoptAll): running once its init hands it over.
    await until('the kept console adopted', async () => (await d.show('kept')).console.running);
    expect((await d.show('kept')).console).toEqual({ keep: true, running: true, viewers: 0 });
    expect((await d.show('plain')).console.running).toBe(false);
    await until('one shell after the restart', async () => (await shells('kept')) === 1);

    const v = new Viewer(d, 'kept');
    await v.opened;
    expect((await d.show('kept')).console.viewers).toBe(1);
    v.type('echo $((6*7))-kept\r');
    await v.waitFor('42-kept');

    // A second console: the daemon holds each console's pty master, and so
    // does each session's init (its own session's, so the console outlives
    // the daemon; the init is non-dumpable, so no process of the session can
    // reach its fds: execViaInit.test.ts). No other process of either session
    // holds any pty master (it could read another terminal's output), only
    // its own terminal's slave end.
    const second = new Viewer(d, 'plain');
    await second.opened;
    const sessionPids = [kept.id, plain.id].flatMap((id) =>
      d.cgroupDirs(id).flatMap((dir) => {
        try {
          return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
        } catch {
          return [];
        }
      }),
    );
    expect(sessionPids.length).toBeGreaterThanOrEqual(4); // two inits, two shells
    const inits = new Set([String((await d.show('kept')).init_pid), String((await d.show('plain')).init_pid)]);
    for (const pid of new Set(sessionPids)) {
      // A process that ended since it was listed holds no fd.
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      const targets = fds.map((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          return '';
        }
      });
      // Its init: its own console's master, and nothing of the other session's devpts.
      const masters = targets.filter((t) => t.endsWith('ptmx'));
      if (inits.has(pid)) expect(masters.length, `init ${pid}`).toBeLessThanOrEqual(1);
      else expect(masters, `pid ${pid}`).toEqual([]);
    }
    second.ws.close();
    v.ws.close();
    await d.destroy('kept');
    await d.destroy('plain');
    await d.reapAdopted();
  });

  it('bounds what an amplifying output costs the screen mirror: another session still gets its snapshot', async () => {
    await d.create({ name: 'amp' });
    await d.create({ name: 'calm' });
    const calm = new Viewer(d, 'calm');
    await calm.opened;
    const m = marker();
    calm.type(`printf 'CALM\\055SCREEN\\n'; ${m.typed}\r`);
    await calm.waitFor(m.printed);
    calm.ws.close();
    // 12 bytes that, unclamped, keep a headless terminal busy for minutes, in a loop.
    const amp = new Viewer(d, 'amp');
    await amp.opened;
    amp.type("while :; do printf 'x\\033[30000000b\\033[30000000S\\033[30000000L\\033[30000000M'; done\r");
    await new Promise((r) => setTimeout(r, 1500));
    // The mirrors share one worker: calm's fresh attach waits for whatever is queued before it.
    const fresh = new Viewer(d, 'calm');
    await fresh.opened;
    expect(fresh.hello.snapshot).toBe(true);
    expect(await rendered(await fresh.snapshotSeen(), fresh.hello.cols, fresh.hello.rows)).toContain('CALM-SCREEN');
    amp.type('\x03');
    fresh.ws.close();
    amp.ws.close();
    await d.destroy('amp');
    await d.destroy('calm');
  });
});
