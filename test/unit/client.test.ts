// The client library without a daemon: typed errors from error bodies,
// request lines, and the exec and attach streams against a fake daemon on a
// Unix socket that speaks the v5 framing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { Channel } from '../../src/api/protocol.js';
import { encodeFrame, exitStatusFor } from '../../src/api/frames.js';
import { errorFromReply } from '../../src/client/errors.js';
import { execRequestPath } from '../../src/client/exec.js';
import { ConflictError, Enclave, EnclaveError, ERROR_CLASSES, InvalidRequestError, NotFoundError, ProtocolError, type AttachEvent } from '../../src/client/index.js';

describe('typed errors', () => {
  it('has a class of its own for every API error code, each an EnclaveError', () => {
    const classes = Object.values(ERROR_CLASSES);
    expect(new Set(classes).size).toBe(classes.length);
    for (const [code, C] of Object.entries(ERROR_CLASSES)) {
      const e = errorFromReply(418, { error: { code, message: `m-${code}` } });
      expect(e, code).toBeInstanceOf(C);
      expect(e).toBeInstanceOf(EnclaveError);
      expect(e).toMatchObject({ code, status: 418, message: `m-${code}`, name: C.name });
    }
  });

  it('keeps the field, step and errno; an unknown code is a plain EnclaveError; a body that is not the API names the status', () => {
    expect(errorFromReply(400, { error: { code: 'invalid_request', message: "'name': bad", field: 'name' } })).toMatchObject({ constructor: InvalidRequestError, field: 'name', status: 400 });
    expect(errorFromReply(500, { error: { code: 'confinement_failed', message: 'step tmpfs failed', step: 'tmpfs', errno: 2 } })).toMatchObject({ step: 'tmpfs', errno: 2 });
    const later = errorFromReply(451, { error: { code: 'from_a_newer_daemon', message: 'no' } });
    expect(later.constructor).toBe(EnclaveError);
    expect(later).toMatchObject({ code: 'from_a_newer_daemon', status: 451 });
    expect(errorFromReply(502, '<html>bad gateway</html>')).toMatchObject({ constructor: ProtocolError, status: 502, message: 'the daemon answered HTTP 502' });
  });
});

describe('keep-alive', () => {
  it('reuses one connection, and sends again on a new one when the daemon closed the kept one under it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-client-'));
    const socket = join(dir, 'sock');
    const connections = new Set<object>();
    let requests = 0;
    const server = createServer((req, res) => {
      connections.add(req.socket);
      // The third request arrives on a kept connection the server then drops unanswered.
      if (++requests === 3) return req.socket.destroy();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sessions: [] }));
    });
    await new Promise<void>((r) => server.listen(socket, r));
    const client = new Enclave({ socket });
    try {
      expect(await client.list()).toEqual([]);
      expect(await client.list()).toEqual([]);
      expect(connections.size).toBe(1);
      expect(await client.list()).toEqual([]);
      expect(requests).toBe(4);
      expect(connections.size).toBe(2);
    } finally {
      client.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('exec request line', () => {
  it('says stdin=0 unless stdin is forwarded, repeats command and env, carries cwd and the terminal size', () => {
    expect(execRequestPath({ session: 'web', command: ['true'], stdin: false })).toBe('/v1/sessions/web/exec?command=true&stdin=0');
    expect(execRequestPath({ session: '0:web', command: ['sh', '-c', 'a b'], env: ['A=1', 'B=2'], cwd: '/tmp', stdin: true, tty: { cols: 90, rows: 20 } })).toBe(
      '/v1/sessions/0%3Aweb/exec?command=sh&command=-c&command=a+b&env=A%3D1&env=B%3D2&cwd=%2Ftmp&stdin=1&tty=1&cols=90&rows=20',
    );
  });
});

describe('exec and attach streams against a fake daemon', () => {
  const dir = mkdtempSync(join(tmpdir(), 'enclave-client-'));
  const socket = join(dir, 'sock');
  let server: Server;
  let wss: WebSocketServer;
  let client: Enclave;
  /** What the fake attach console received: stdin bytes, resizes, acks. */
  const attachSeen = { stdin: '', resizes: [] as string[], acks: [] as number[] };
  const stdinFrames: number[] = [];

  /** exec: echoes stdin to stdout once it is closed, says hi on stderr, exits with the code named by the command. */
  function fakeExec(ws: WebSocket, command: string[]): void {
    const chunks: Buffer[] = [];
    ws.on('message', (m: Buffer) => {
      if (m[0] === Channel.stdin) {
        stdinFrames.push(m.length - 1);
        chunks.push(m.subarray(1));
      } else if (m[0] === Channel.close) {
        ws.send(encodeFrame(Channel.stdout, Buffer.concat(chunks)));
        ws.send(encodeFrame(Channel.stderr, Buffer.from('hi\n')));
        ws.send(encodeFrame(Channel.status, Buffer.from(JSON.stringify(exitStatusFor(Number(command[1] ?? 0), null)))));
        ws.close(1000);
      }
    });
    if (command[0] === 'no-status') ws.close(1000);
  }

  /** attach: hello, 600 KiB of output, then echoes stdin; resizes and acks recorded. */
  function fakeAttach(ws: WebSocket): void {
    const event = (e: object) => ws.send(encodeFrame(Channel.events, Buffer.from(JSON.stringify(e))));
    event({ type: 'hello', session: 's-0123456789', role: 'rw', cols: 80, rows: 24, offset: 1000, resumed: false, snapshot: true, viewers: 1 });
    ws.send(encodeFrame(Channel.snapshot, Buffer.from('SCREEN')));
    ws.send(encodeFrame(Channel.stdout, Buffer.alloc(600 * 1024, 'x')));
    ws.on('message', (m: Buffer) => {
      if (m[0] === Channel.stdin) {
        attachSeen.stdin += m.subarray(1).toString();
        if (attachSeen.stdin.endsWith('exit\n')) {
          ws.send(encodeFrame(Channel.status, Buffer.from(JSON.stringify(exitStatusFor(7, null)))));
          ws.close(1000);
        } else ws.send(encodeFrame(Channel.stdout, m.subarray(1)));
      } else if (m[0] === Channel.resize) {
        attachSeen.resizes.push(m.subarray(1).toString());
        event({ type: 'resize', cols: 100, rows: 30 });
      } else if (m[0] === Channel.ack) attachSeen.acks.push(Number(m.subarray(1).toString()));
    });
  }

  beforeAll(async () => {
    server = createServer((_req, res) => res.writeHead(409, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'conflict', message: 'taken' } })));
    wss = new WebSocketServer({ server });
    wss.on('connection', (ws, req) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname.endsWith('/exec')) fakeExec(ws, url.searchParams.getAll('command'));
      else fakeAttach(ws);
    });
    await new Promise<void>((r) => server.listen(socket, r));
    client = new Enclave({ socket });
  });
  afterAll(async () => {
    client.close();
    wss.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('run: stdin in frames under the daemon limit, EOF, stdout, stderr and the exit code', async () => {
    const big = Buffer.alloc(200 * 1024 + 3, 'a');
    const r = await client.run('web', ['exit', '3'], { stdin: big, encoding: 'buffer' });
    expect(r.exitCode).toBe(3);
    expect(r.stdout.equals(big)).toBe(true);
    expect(r.stderr.toString()).toBe('hi\n');
    expect(Math.max(...stdinFrames)).toBeLessThanOrEqual(64 * 1024);
    expect(await client.run('web', ['exit'], { stdin: 'text' })).toEqual({ stdout: 'text', stderr: 'hi\n', exitCode: 0 });
  });

  it('run: a stream that ends without a status is a ProtocolError; an HTTP error reply its typed error', async () => {
    await expect(client.run('web', ['no-status'])).rejects.toBeInstanceOf(ProtocolError);
    await expect(client.list()).rejects.toBeInstanceOf(ConflictError);
    await expect(client.show('web')).rejects.not.toBeInstanceOf(NotFoundError);
  });

  it('exec: a writable stdin and readable stdout and stderr', async () => {
    const p = client.exec('web', ['exit', '9']);
    p.stdin!.end('piped');
    const out: Buffer[] = [];
    p.stdout.on('data', (c: Buffer) => out.push(c));
    expect(await p.exit).toBe(9);
    await new Promise((r) => p.stdout.once('end', r));
    expect(Buffer.concat(out).toString()).toBe('piped');
  });

  it('attach: hello, snapshot, output acknowledged as it is read, writes, resize, exit code', async () => {
    const a = await client.attach('web', { cols: 80, rows: 24 });
    const events: AttachEvent[] = [];
    a.on('event', (e: AttachEvent) => events.push(e));
    expect(await a.ready).toMatchObject({ type: 'hello', offset: 1000, snapshot: true });
    expect(a.screen?.toString()).toBe('SCREEN');
    let got = '';
    a.on('data', (c: Buffer) => (got += c.toString()));
    a.write('echo\n');
    a.resize(100, 30);
    await new Promise<void>((r) => {
      const check = () => (got.endsWith('echo\n') && events.length && attachSeen.acks.length ? r() : setTimeout(check, 5));
      check();
    });
    expect(got.length).toBe(600 * 1024 + 5);
    expect(a.offset).toBe(1000 + 600 * 1024 + 5);
    expect(attachSeen.acks[0]).toBe(1000 + 600 * 1024);
    expect(attachSeen.resizes).toEqual(['{"Width":100,"Height":30}']);
    expect(events).toEqual([{ type: 'resize', cols: 100, rows: 30 }]);
    a.write('exit\n');
    expect(await a.exit).toBe(7);
  });
});
