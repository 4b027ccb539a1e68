// The native front end (native/src/front.c), the `enclave` bin: it answers
// the hot commands itself and hands every other line to the Node CLI. Here:
// which lines it answers (ENCLAVE_FRONT=explain) for every command of the
// table; that what it answers reads exactly as the Node CLI's answer (stdout,
// stderr, exit code) against a real daemon; that what it hands on is the
// Node CLI's own answer; that a front end killed mid-exec leaves nothing
// running in the daemon; and attach and exec -t in a real terminal (output,
// exit code, resize, detach, the terminal put back on every way out).
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn as spawnPty } from 'node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, keyOf } from '../../src/cli/commandTable.js';
import { CLI, FRONT, isRoot, TestDaemon, type CliResult } from './harness.js';
import { expectRestored, modesOnPrintf } from './terminalCheck.js';

function run(file: string, args: string[], env: Record<string, string>, input = ''): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(file, args, { env: { ...process.env, ...env } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (c: Buffer) => out.push(c));
    p.stderr.on('data', (c: Buffer) => err.push(c));
    p.stdin.on('error', () => undefined);
    p.stdin.end(input);
    p.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString(), stderr: Buffer.concat(err).toString(), stdoutBytes });
    });
  });
}

/** What the front end would do with this line: "node", or "front METHOD TARGET". */
async function explain(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await run(FRONT, args, { ENCLAVE_FRONT: 'explain', ...env });
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

/** A line for each command of the table that parses (its required arguments given). */
function sampleLine(c: (typeof COMMANDS)[number]): string[] {
  const args = c.args.filter((a) => !a.optional && !a.name.endsWith('...')).map((a) => (a.name === 'SESSION' ? 'web' : a.name.includes(':') ? '8080:80' : 'x'));
  return [...c.words, ...args, ...(c.trailing ? ['true'] : [])];
}

describe('the front end decides from the command table', () => {
  it('hands every command the table does not mark `front` to the Node CLI', async () => {
    for (const c of COMMANDS.filter((x) => !x.front)) expect(await explain(sampleLine(c)), keyOf(c)).toBe('node');
  });

  it('answers every command marked `front` itself, and hands it on with a flag it does not know, --help, or a usage error', async () => {
    for (const c of COMMANDS.filter((x) => x.front)) {
      expect(await explain(sampleLine(c)), keyOf(c)).toMatch(/^front /);
      // Before the arguments: after them, exec's --help is the command's own.
      expect(await explain([...c.words, '--help', ...sampleLine(c).slice(c.words.length)]), keyOf(c)).toBe('node');
      expect(await explain([...c.words, '--no-such-flag']), keyOf(c)).toBe('node');
    }
    for (const line of [
      ['session', 'exec', '-t', '-u', 'root', 'web', 'sh'],
      ['session', 'exec', '--detach-keys', 'ctrl-a', 'web', 'sh'],
      ['session', 'exec', '-t', '--detach-keys', 'ctrl-1', 'web', 'sh'],
      ['session', 'attach', '--detach-keys', '', 'web'],
      ['session', 'attach', '--detach-keys', 'ctrl-p,,x', 'web'],
      ['session', 'attach', '0:web'],
      ['session', 'exec', '-e', 'GH_TOKEN=x', 'web', 'true'],
      ['session', 'exec', '-e', 'db_password', 'web', 'true'],
      ['session', 'exec', '-e', '1BAD=x', 'web', 'true'],
      ['session', 'exec', '-e', '=x', 'web', 'true'],
      ['session', 'exec', '--env-file', '/dev/null', 'web', 'true'],
      ['session', 'exec', '-u', 'root', 'web', 'true'],
      ['session', 'exec', 'web'],
      ['session', 'show', '1000:web'],
      ['session', 'show', 'Not A Name'],
      ['session', 'destroy', '--timeout', '3', 'web'],
      ['session', 'show', 'web', 'extra'],
      ['session', 'list', '--json=1'],
      ['--socket'],
      ['--socket=', 'session', 'list'],
      ['--version'],
      ['--help'],
      [],
      ['session'],
      ['session', 'nope'],
    ]) {
      expect(await explain(line), line.join(' ')).toBe('node');
    }
    expect(await explain(['session', 'list'], { ENCLAVE_SOCKET: '' })).toBe('node');
  });

  it('asks for the CLI rendering of what it prints, with the flags as the Node CLI maps them', async () => {
    expect(await explain(['session', 'ls', '-aq'])).toBe('front GET /v1/sessions?all=1&format=ids');
    expect(await explain(['session', 'list', '-q', '--json'])).toBe('front GET /v1/sessions?format=pretty');
    expect(await explain(['session', 'inspect', 's-0123456789', '--json'])).toBe('front GET /v1/sessions/s-0123456789?format=pretty');
    expect(await explain(['--socket', '/x', 'session', 'stop', 'web'])).toBe('front POST /v1/sessions/web/stop?format=text');
    expect(await explain(['session', 'rm', '-f', 'web'])).toBe('front DELETE /v1/sessions/web?force=1');
    expect(await explain(['session', 'exec', '-i', '-w', '/a b', 'web', '--', 'sh', '-c', 'echo "x&y=z" +'])).toBe(
      'front WEBSOCKET /v1/sessions/web/exec?command=sh&command=-c&command=echo%20%22x%26y%3Dz%22%20%2B&cwd=%2Fa%20b&stdin=1',
    );
    // -e K=V as given, K alone from here, left out when unset here.
    expect(await explain(['session', 'exec', '-e', 'A=1', '--env=B=x=y', '-eHERE', '-e', 'NOT_SET_HERE', 'web', 'env'], { HERE: 'a b' })).toBe(
      'front WEBSOCKET /v1/sessions/web/exec?command=env&env=A%3D1&env=B%3Dx%3Dy&env=HERE%3Da%20b&stdin=0',
    );
    // attach and exec -t: the attach protocol; the size only when stdout is a terminal (here a pipe).
    expect(await explain(['session', 'attach', 'web'])).toBe('front WEBSOCKET /v1/sessions/web/attach?role=rw');
    expect(await explain(['session', 'attach', '--ro', '--detach-keys', 'ctrl-a, D', 'web'])).toBe('front WEBSOCKET /v1/sessions/web/attach?role=ro');
    expect(await explain(['session', 'exec', '-it', '-w', '/tmp', 'web', 'sh'])).toBe('front WEBSOCKET /v1/sessions/web/exec?command=sh&cwd=%2Ftmp&stdin=1&tty=1');
    expect(await explain(['session', 'exec', '-t', '--detach-keys', 'x', 'web', 'sh'])).toBe('front WEBSOCKET /v1/sessions/web/exec?command=sh&stdin=0&tty=1');
    // A command's own flags after SESSION are the command's.
    expect(await explain(['session', 'exec', 'web', 'ls', '-e', '--help'])).toBe('front WEBSOCKET /v1/sessions/web/exec?command=ls&command=-e&command=--help&stdin=0');
  });
});

describe.skipIf(!isRoot)('the front end against a daemon (root)', () => {
  const d = new TestDaemon();
  let id = '';
  let strict = '';
  beforeAll(async () => {
    await d.start();
    id = (await d.create({ name: 'web' })).id;
    strict = (await d.create({ name: 'tight', profile: 'strict', network: 'none' })).id;
  });
  afterAll(() => d.cleanup());

  const env = () => ({ ENCLAVE_SOCKET: d.socket });
  const viaFront = (args: string[], input?: string) => run(FRONT, args, env(), input);
  const viaNode = (args: string[], input?: string) => run(process.execPath, [CLI, ...args], env(), input);
  /** The list's AGE column ticks between two runs a moment apart; nothing else may differ. */
  const ageless = (r: CliResult) => ({ ...r, stdoutBytes: undefined, stdout: r.stdout.replace(/ \d+[smhd]$/gm, ' AGE') });

  it('prints exactly what the Node CLI prints, with its exit code, for each line it answers', async () => {
    const lines = [
      ['session', 'list'],
      ['session', 'ls', '-q'],
      ['session', 'list', '-a'],
      ['session', 'list', '--json'],
      ['session', 'show', 'web'],
      ['session', 'inspect', id, '--json'],
      ['session', 'show', 'nosuch'],
      ['session', 'show', 's-0000000000'],
      ['session', 'exec', 'web', 'sh', '-c', 'echo out; echo err >&2; exit 3'],
      ['session', 'exec', '-w', '/tmp', 'web', 'pwd'],
      ['session', 'exec', '-e', 'A=1', '-e', 'HOME', '-e', 'NOT_SET_HERE', 'web', 'sh', '-c', 'echo "$A|$HOME|${NOT_SET_HERE-unset}"'],
      ['session', 'exec', '-w', 'relative', 'web', 'pwd'],
      ['session', 'exec', 'web', 'no-such-command-here'],
      ['session', 'exec', 'nosuch', 'true'],
      ['session', 'exec', 'web', 'sh', '-c', 'kill -9 $$'],
      ['session', 'stop', 'tight'],
      ['session', 'destroy', 'nosuch'],
      ['session', 'start', 'nosuch', '--json'],
    ];
    for (const line of lines) {
      expect(await explain(line), line.join(' ')).toMatch(/^front /);
      const [f, n] = [await viaFront(line), await viaNode(line)];
      expect(ageless(f), line.join(' ')).toEqual(ageless(n));
    }
  });

  it('sends stdin with -i (to its end), none without it, and binary output byte for byte', async () => {
    const input = 'line one\nline two\n';
    expect((await viaFront(['session', 'exec', '-i', 'web', 'sh', '-c', 'cat; echo after-eof'], input)).stdout).toBe(`${input}after-eof\n`);
    expect((await viaFront(['session', 'exec', 'web', 'sh', '-c', 'cat; echo end'], 'PIPED\n')).stdout).toBe('end\n');
    const big = await viaFront(['session', 'exec', 'web', 'sh', '-c', 'head -c 3000000 /dev/zero | tr "\\0" "\\377"']);
    expect(big.code).toBe(0);
    expect(big.stdoutBytes.length).toBe(3_000_000);
    expect(big.stdoutBytes.every((b) => b === 0xff)).toBe(true);
  });

  it('ends with 1 when the reader of its stdout goes away (| head -1), as the Node CLI does, and the command ends too', async () => {
    for (const [file, pre] of [[FRONT, []], [process.execPath, [CLI]]] as const) {
      const p = spawn(file, [...pre, 'session', 'exec', 'web', 'yes'], { env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'ignore'] });
      await new Promise((r) => p.stdout.once('data', r));
      p.stdout.destroy();
      expect(await new Promise((r) => p.on('exit', (code) => r(code))), file).toBe(1);
    }
    for (const deadline = Date.now() + 10_000; (await viaFront(['session', 'exec', 'web', 'sh', '-c', 'ps -eo comm'])).stdout.split('\n').includes('yes'); ) {
      if (Date.now() > deadline) throw new Error('yes outlived its client');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it('stop and start print what the Node CLI prints (the session id and its state)', { timeout: 60_000 }, async () => {
    const stopped = await viaFront(['session', 'stop', 'web']);
    expect(stopped).toMatchObject({ code: 0, stdout: `${id} stopped\n`, stderr: '' });
    expect(await viaFront(['session', 'stop', 'web'])).toEqual(await viaNode(['session', 'stop', 'web']));
    const started = await viaFront(['session', 'start', 'web', '--json']);
    expect(started.code).toBe(0);
    expect(JSON.parse(started.stdout)).toMatchObject({ id, state: 'running' });
    // The --json output: the API's reply, indented as the Node CLI indents it.
    expect(started.stdout).toBe(`${JSON.stringify(JSON.parse(started.stdout), null, 2)}\n`);
  });

  it('hands what it does not answer to the Node CLI, whose answer it is', async () => {
    for (const line of [['--version'], ['session', 'exec', '--help'], ['session', 'show'], ['volume', 'list'], ['session', 'exec', '-e', '1BAD=x', 'web', 'true'], ['session', 'frob'], ['session', 'show', '0:web']]) {
      expect(await viaFront(line), line.join(' ')).toEqual(await viaNode(line));
    }
    // No daemon at the socket: nothing was sent, so the Node CLI says why.
    const gone = { ENCLAVE_SOCKET: `${d.dir}/no-such.sock` };
    const [f, n] = [await run(FRONT, ['session', 'show', 'web'], gone), await run(process.execPath, [CLI, 'session', 'show', 'web'], gone)];
    expect(f).toEqual(n);
    expect(f.code).toBe(1);
  });

  it('destroy answers as the Node CLI does; a front end killed mid-exec leaves no command running in the session', { timeout: 30_000 }, async () => {
    const s = await d.create({ name: 'gone' });
    const client = spawn(FRONT, ['session', 'exec', 'gone', 'sh', '-c', 'sleep 60; echo done'], { env: { ...process.env, ...env() }, stdio: 'ignore' });
    const running = async () => (await d.sh('gone', 'ps -eo comm')).stdout.split('\n').includes('sleep');
    for (const deadline = Date.now() + 10_000; !(await running()); ) {
      if (Date.now() > deadline) throw new Error('the exec never started');
      await new Promise((r) => setTimeout(r, 100));
    }
    client.kill('SIGKILL');
    await new Promise((r) => client.once('exit', r));
    for (const deadline = Date.now() + 10_000; await running(); ) {
      if (Date.now() > deadline) throw new Error('the command outlived its client');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await viaFront(['session', 'rm', '-f', 'gone'])).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect((await d.show(s.id)).state).toBe('destroyed');
    expect(await viaFront(['session', 'rm', 'gone'])).toEqual(await viaNode(['session', 'rm', 'gone']));
  });
});

/**
 * A shell line in a real terminal, with no `node` on PATH: a line the front
 * end handed to the Node CLI would fail, so what runs is the front end's own.
 * $FRONT is the bin; /usr/bin/stty -g before and after shows the terminal's
 * settings put back.
 */
function frontInPty(socket: string, line: string, cols = 100, rows = 30) {
  const empty = mkdtempSync(join(tmpdir(), 'front-path-'));
  const p = spawnPty('/bin/sh', ['-c', line], { name: 'xterm-256color', cols, rows, env: { ...process.env, ENCLAVE_SOCKET: socket, PATH: empty, FRONT } });
  let out = '';
  p.onData((s) => (out += s));
  const exited = new Promise<number>((r) => p.onExit(({ exitCode }) => r(exitCode))).finally(() => rmSync(empty, { recursive: true, force: true }));
  const waitFor = async (s: string | RegExp, ms = 15_000) => {
    for (const deadline = Date.now() + ms; !(typeof s === 'string' ? out.includes(s) : s.test(out)); ) {
      if (Date.now() > deadline) throw new Error(`never showed ${String(s)}: ${JSON.stringify(out.slice(-400))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  /** The front end's pid: the shell's child. */
  const front = () => {
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === p.pid) return Number(e);
      } catch {
        /* gone meanwhile */
      }
    }
    throw new Error('no front end under the shell');
  };
  return { p, waitFor, exited, out: () => out, front };
}

let tags = 0;
const modesOn = () => {
  const tag = `INSIDE${++tags}x`;
  return { line: modesOnPrintf(tag, '\\n'), tag };
};

/** The two `stty -g` lines the shell printed around the front end: its settings before and after. */
function settings(out: string): [string, string] {
  const m = [...out.matchAll(/S[12]:([0-9a-f:]+)/g)].map((x) => x[1]!);
  expect(m).toHaveLength(2);
  return [m[0]!, m[1]!];
}

const around = (cmd: string) => `echo "S1:$(/usr/bin/stty -g)"; ${cmd}; echo "EXIT:$?"; echo "S2:$(/usr/bin/stty -g)"`;

describe.skipIf(!isRoot)('attach and exec -t through the front end, in a terminal (root)', () => {
  const d = new TestDaemon();
  beforeAll(async () => {
    await d.start();
    await d.create({ name: 'tty' });
  });
  afterAll(() => d.cleanup());

  /** `session attach tty` through the front end, with the console switched into vim's modes. */
  const attachedInModes = async () => {
    const run = frontInPty(d.socket, around('"$FRONT" session attach tty'));
    await new Promise((r) => setTimeout(r, 500));
    const on = modesOn();
    run.p.write(`${on.line}\r`);
    await run.waitFor(on.tag);
    return run;
  };

  it('exec -t: the command in a terminal of this size, its output and its exit code; the terminal as it was', async () => {
    const run = frontInPty(d.socket, around(`"$FRONT" session exec -t tty sh -c 'test -t 0 && echo is-a-tty; stty size; exit 3'`), 90, 25);
    await run.exited;
    const out = run.out();
    expect(out).toContain('is-a-tty');
    expect(out).toContain('25 90');
    expect(out).toContain('EXIT:3');
    expect(out).not.toContain('cannot run the Node CLI');
    const [before, after] = settings(out);
    expect(after).toBe(before);
  });

  it('exec -it: a resize of the caller\'s terminal reaches the command (stty size), keys go in raw, and a program\'s modes are switched off at its end', async () => {
    const on = modesOn();
    const run = frontInPty(d.socket, around(`"$FRONT" session exec -it tty sh -c 'echo READY; while read x; do stty size; done; ${on.line.replace(/'/g, "'\\''")}; exit 5'`), 100, 30);
    await run.waitFor('READY');
    run.p.resize(120, 40);
    // The resize is a frame the daemon applies after a short debounce: ask until the command sees it.
    for (const deadline = Date.now() + 15_000; !run.out().includes('40 120'); ) {
      if (Date.now() > deadline) throw new Error(`the resize never arrived: ${run.out().slice(-300)}`);
      run.p.write('\r');
      await new Promise((r) => setTimeout(r, 200));
    }
    run.p.write('\x04'); // ctrl-d: a byte in raw mode, the end of input for the session's terminal
    await run.waitFor('EXIT:5');
    await run.exited;
    await expectRestored(run.out());
    const [before, after] = settings(run.out());
    expect(after).toBe(before);
  });

  it('attach: types into the console, detaches with the keys (the shell keeps running), the terminal and its modes put back', async () => {
    const run = await attachedInModes();
    run.p.write('\x10\x11'); // ctrl-p, ctrl-q
    await run.waitFor('EXIT:0');
    await run.exited;
    expect(run.out()).toContain('[detached');
    await expectRestored(run.out());
    const [before, after] = settings(run.out());
    expect(after).toBe(before);
    // Another pair of keys, and --ro: what it types is not sent.
    const ro = frontInPty(d.socket, around('"$FRONT" session attach --ro --detach-keys ctrl-a,d tty'));
    await new Promise((r) => setTimeout(r, 500));
    ro.p.write("echo 'NOT''SENT'\r");
    await new Promise((r) => setTimeout(r, 500));
    ro.p.write('\x01d');
    await ro.waitFor('EXIT:0');
    expect(ro.out()).not.toContain('NOTSENT');
    expect((await d.sh('tty', 'ps -eo args')).stdout).toMatch(/sh -l/); // the console's shell runs on
  });

  it('killed mid-attach: SIGTERM puts the terminal back before it dies; SIGKILL leaves no viewer and no exec -t command behind', async () => {
    const run = await attachedInModes();
    process.kill(run.front(), 'SIGTERM');
    await run.waitFor('EXIT:143');
    await run.exited;
    await expectRestored(run.out());
    const [before, after] = settings(run.out());
    expect(after).toBe(before);

    const viewers = async () => (await d.show('tty')).console.viewers;
    const killed = frontInPty(d.socket, '"$FRONT" session attach tty');
    await new Promise((r) => setTimeout(r, 500));
    expect(await viewers()).toBe(1);
    process.kill(killed.front(), 'SIGKILL');
    await killed.exited;
    for (const deadline = Date.now() + 10_000; (await viewers()) !== 0; ) {
      if (Date.now() > deadline) throw new Error('the viewer outlived its client');
      await new Promise((r) => setTimeout(r, 100));
    }

    const sleeper = frontInPty(d.socket, '"$FRONT" session exec -t tty sh -c "echo STARTED; sleep 77"');
    await sleeper.waitFor('STARTED');
    const running = async () => (await d.sh('tty', 'ps -eo args')).stdout.includes('sleep 77');
    expect(await running()).toBe(true);
    process.kill(sleeper.front(), 'SIGKILL');
    await sleeper.exited;
    for (const deadline = Date.now() + 10_000; await running(); ) {
      if (Date.now() > deadline) throw new Error('the command outlived its client');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  // Last: it stops the daemon.
  it('the daemon gone mid-attach: the close is reported as the Node CLI words it, exit 1, the terminal put back', { timeout: 60_000 }, async () => {
    const run = await attachedInModes();
    await d.stop('SIGTERM');
    await run.waitFor('EXIT:1');
    await run.exited;
    // 1012 when its close frame gets out before the daemon's sockets go, else the socket's end (1006), as the Node CLI's ws reports them.
    expect(run.out()).toMatch(/enclave: the console connection closed \((1012: the daemon is restarting: attach again|1006)\)/);
    await expectRestored(run.out());
    const [before, after] = settings(run.out());
    expect(after).toBe(before);
    await d.start(); // so that cleanup ends the sessions through it
  });
});
