// Exec through the CLI and the raw WebSocket protocol.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { Channel, K8S_V5_PROTOCOL, encodeFrame } from '../../src/terminal/channels.js';
import { isRoot, TestDaemon } from './harness.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe.skipIf(!isRoot)('exec (root)', () => {
  const d = new TestDaemon();
  beforeAll(async () => {
    await d.start();
    await d.create({ name: 'ex' });
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it.each([
    ['exit 0', 0],
    ['exit 1', 1],
    ['exit 42', 42],
    ['kill -9 $$', 137],
    ['kill -15 $$', 143],
  ])('propagates `%s` as exit code %i', async (script, code) => {
    const r = await d.cli(['session', 'exec', 'ex', '--', 'sh', '-c', script]);
    expect(r.code).toBe(code);
  });

  it('exits 127 for a missing command and 126 for a non-executable one', async () => {
    const missing = await d.cli(['session', 'exec', 'ex', '--', 'no-such-command-here']);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toContain('no-such-command-here');
    const notExec = await d.cli(['session', 'exec', 'ex', '--', '/etc/passwd']);
    expect(notExec.code).toBe(126);
  });

  it('keeps stdout and stderr apart', async () => {
    const r = await d.cli(['session', 'exec', 'ex', '--', 'sh', '-c', 'echo to-out; echo to-err >&2; echo more-out']);
    expect(r.stdout).toBe('to-out\nmore-out\n');
    expect(r.stderr).toBe('to-err\n');
  });

  it('delivers stdin to the command, including EOF', async () => {
    const r = await d.cli(['session', 'exec', '-i', 'ex', '--', 'sh', '-c', 'cat; echo after-eof'], 'line one\nline two\n');
    expect(r.stdout).toBe('line one\nline two\nafter-eof\n');
    expect(r.code).toBe(0);
  });

  // Hang detectors: before the fix these took the WebSocket close timeout (30 s).
  it('finishes when the command exits while stdin is still being flooded', { timeout: 15_000 }, async () => {
    const r = await d.cli(['session', 'exec', '-i', 'ex', '--', 'sh', '-c', 'head -c 5 >/dev/null; exit 7'], randomBytes(8 * 1024 * 1024));
    expect(r.code).toBe(7);
  });

  it('streams 10 MB of output byte-exact', { timeout: 15_000 }, async () => {
    const input = randomBytes(10 * 1024 * 1024);
    const r = await d.cli(['session', 'exec', '-i', 'ex', '--', 'cat'], input);
    expect(r.code).toBe(0);
    expect(r.stdoutBytes.length).toBe(input.length);
    expect(sha(r.stdoutBytes)).toBe(sha(input));
  });

  it('passes env and cwd', async () => {
    const r = await d.cli(['session', 'exec', 'ex', '--env', 'FOO=bar baz', '--cwd', '/tmp', '--', 'sh', '-c', 'echo "$FOO"; pwd']);
    expect(r.stdout).toBe('bar baz\n/tmp\n');
  });

  it('speaks v5.channel.k8s.io: separate channels and a status on channel 3', async () => {
    const path = `/v1/sessions/ex/exec?command=sh&command=-c&command=${encodeURIComponent('cat; echo e >&2; exit 5')}&stdin=1`;
    const ws = new WebSocket(`ws+unix://${d.socket}:${path}`, [K8S_V5_PROTOCOL]);
    const got: Record<number, Buffer[]> = {};
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => {
        expect(ws.protocol).toBe(K8S_V5_PROTOCOL);
        ws.send(encodeFrame(Channel.stdin, Buffer.from('hello\n')));
        ws.send(Buffer.from([Channel.close, Channel.stdin]));
      });
      ws.on('message', (m: Buffer) => (got[m[0]!] ??= []).push(m.subarray(1)));
      ws.on('close', () => resolve());
      ws.on('error', reject);
    });
    expect(Buffer.concat(got[Channel.stdout] ?? []).toString()).toBe('hello\n');
    expect(Buffer.concat(got[Channel.stderr] ?? []).toString()).toBe('e\n');
    const status = JSON.parse(Buffer.concat(got[Channel.status] ?? []).toString());
    expect(status.status).toBe('Failure');
    expect(status.details.causes).toContainEqual({ reason: 'ExitCode', message: '5' });
  });

  it('refuses an upgrade without the k8s subprotocol, before upgrading', async () => {
    const ws = new WebSocket(`ws+unix://${d.socket}:/v1/sessions/ex/exec?command=true`);
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => undefined);
    });
    expect(status).toBe(400);
  });

  it('refuses exec into an unknown session with a clear message', async () => {
    const r = await d.cli(['session', 'exec', 'nosuch', '--', 'true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("enclave: no session 'nosuch'\n");
  });
});
