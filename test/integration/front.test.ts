// The native front end (native/src/front.c), the `enclave` bin: it answers
// the hot commands itself and hands every other line to the Node CLI. Here:
// which lines it answers (ENCLAVE_FRONT=explain) for every command of the
// table; that what it answers reads exactly as the Node CLI's answer (stdout,
// stderr, exit code) against a real daemon; that what it hands on is the
// Node CLI's own answer; and that a front end killed mid-exec leaves nothing
// running in the daemon.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, keyOf } from '../../src/cli/commandTable.js';
import { CLI, FRONT, isRoot, TestDaemon, type CliResult } from './harness.js';

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
      ['session', 'exec', '-t', 'web', 'sh'],
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
