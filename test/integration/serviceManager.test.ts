// Readiness for systemd (Type=notify): READY=1 only after the database check
// and the re-adoption of running sessions, with the daemon's PID; STOPPING=1
// when it stops; the sessions keep running.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { isRoot, TestDaemon } from './harness.js';

describe.skipIf(!isRoot)('service manager notifications (root)', () => {
  const d = new TestDaemon();
  const notify = join(d.dir, 'notify.sock');
  let listener: ChildProcess;
  const received: { message: string; logThen: string }[] = [];
  let arrived: () => void = () => undefined;

  beforeAll(async () => {
    await d.start();
    listener = spawn('/usr/bin/python3', ['-u', '-c', 'import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("bound")\nwhile True:\n    print(s.recv(4096).decode().replace("\\n","|"))', notify]);
    // Whole lines only: a chunk may end mid-line.
    let pending = '';
    let bound!: () => void;
    const isBound = new Promise<void>((r) => (bound = r));
    listener.stdout!.on('data', (c: Buffer) => {
      pending += c.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (line === 'bound') bound();
        else if (line !== '') received.push({ message: line, logThen: d.log() });
      }
      arrived();
    });
    await isBound;
  });
  afterAll(async () => {
    listener?.kill('SIGKILL');
    await d.cleanup();
  });

  const next = (n: number) => new Promise<void>((r) => (arrived = () => received.length >= n && r()));

  it('is ready only after re-adopting running sessions, and says stopping at stop', async () => {
    const s = await d.create({ name: 'kept' });
    await d.stop();
    process.env.NOTIFY_SOCKET = notify;
    try {
      const ready = next(1);
      await d.start();
      await ready;
    } finally {
      delete process.env.NOTIFY_SOCKET;
    }
    expect(received[0]!.message).toBe(`READY=1|MAINPID=${d.pid}|STATUS=serving`);
    // When it said ready, it had re-adopted the session and was listening.
    expect(received[0]!.logThen).toContain('re-adopted running session');
    expect(received[0]!.logThen).toContain('"msg":"listening"');
    const stopping = next(2);
    await d.stop();
    await stopping;
    expect(received[1]!.message).toBe('STOPPING=1');
    await d.start();
    expect((await d.show(s.id)).state).toBe('running');
  });
});
