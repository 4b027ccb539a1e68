// Attach figures: throughput of a large cat through the console WebSocket and
// keystroke echo latency, next to the same measurements on a raw node-pty
// (no daemon, no session) taken in the same run.
import { writeFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawn as spawnPty, type IPty } from 'node-pty';
import WebSocket from 'ws';
import { ACK_CHANNEL, ATTACH_PROTOCOL } from '../src/terminal/console.js';
import { Channel, encodeFrame } from '../src/terminal/channels.js';
import type { TestDaemon } from '../test/integration/harness.js';

/** Something that takes keystrokes and reports output bytes. */
interface Terminalish {
  type(s: string): void;
  onOutput(f: (b: Buffer) => void): void;
  close(): void;
}

function rawPty(cmd: string, args: string[]): Terminalish {
  const p: IPty = spawnPty(cmd, args, { name: 'xterm-256color', cols: 120, rows: 40, encoding: null });
  return {
    type: (s) => p.write(s),
    onOutput: (f) => p.onData((d: string | Buffer) => f(typeof d === 'string' ? Buffer.from(d) : d)),
    close: () => p.kill(),
  };
}

async function attach(d: TestDaemon, session: string): Promise<Terminalish> {
  const ws = new WebSocket(`ws+unix://${d.socket}:/v1/sessions/${session}/attach?cols=120&rows=40`, [ATTACH_PROTOCOL]);
  const listeners: ((b: Buffer) => void)[] = [];
  let offset = -1;
  ws.on('message', (m: Buffer) => {
    if (m[0] === 5 && offset < 0) offset = (JSON.parse(m.subarray(1).toString()) as { offset: number }).offset;
    if (m[0] !== Channel.stdout) return;
    offset += m.length - 1;
    ws.send(encodeFrame(ACK_CHANNEL, Buffer.from(String(offset))));
    for (const l of listeners) l(m.subarray(1));
  });
  await new Promise((r) => ws.once('open', r));
  return {
    type: (s) => ws.send(encodeFrame(Channel.stdin, Buffer.from(s))),
    onOutput: (f) => listeners.push(f),
    close: () => ws.close(),
  };
}

function waitFor(t: Terminalish, needle: string, ms = 120_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let tail = '';
    const timer = setTimeout(() => reject(new Error(`no ${JSON.stringify(needle)} within ${ms} ms`)), ms);
    t.onOutput((b) => {
      tail = (tail + b.toString('latin1')).slice(-needle.length - 64);
      if (tail.includes(needle)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** MiB/s for `cat FILE` of `bytes`, timed from the keystroke to the end marker. */
async function throughput(t: Terminalish, file: string, bytes: number): Promise<number> {
  const done = waitFor(t, 'A-done-A');
  const t0 = process.hrtime.bigint();
  t.type(`cat ${file}; printf '\\101-done-\\101'\r`);
  await done;
  return bytes / (1024 * 1024) / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/** Echo latency of single keystrokes into `cat` (the tty echoes them). */
async function echoLatency(t: Terminalish, n: number): Promise<number[]> {
  const out: number[] = [];
  let resolveEcho: (() => void) | undefined;
  let expect = '';
  t.onOutput((b) => {
    if (resolveEcho && b.toString('latin1').includes(expect)) resolveEcho();
  });
  const ready = waitFor(t, 'A-cat-A');
  t.type(`printf '\\101-cat-\\101'; cat > /dev/null\r`);
  await ready;
  for (let i = 0; i < n; i++) {
    expect = String.fromCharCode(97 + (i % 26));
    const echoed = new Promise<void>((r) => (resolveEcho = r));
    const t0 = process.hrtime.bigint();
    t.type(expect);
    await echoed;
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
    resolveEcho = undefined;
  }
  t.type('\x03'); // ctrl-c out of cat
  await new Promise((r) => setTimeout(r, 50)); // let it land before the pty goes
  return out;
}

export interface AttachFigures {
  attachMiBs: number;
  rawMiBs: number;
  attachEcho: number[];
  rawEcho: number[];
}

export async function benchAttach(d: TestDaemon, mib = 32): Promise<AttachFigures> {
  const bytes = mib * 1024 * 1024;
  await d.create({ name: 'bench-console', tmp_mb: mib * 2 });
  // Printable data: a terminal stream, not binary noise.
  await d.sh('bench-console', `head -c ${(bytes * 3) / 4} /dev/urandom | base64 -w0 > /tmp/big`);
  const hostFile = `${d.dir}/big`;
  writeFileSync(hostFile, randomBytes((bytes * 3) / 4).toString('base64'));

  const a = await attach(d, 'bench-console');
  const attachMiBs = await throughput(a, '/tmp/big', bytes);
  const attachEcho = await echoLatency(a, 200);
  a.close();

  const r = rawPty('/bin/sh', []);
  const rawMiBs = await throughput(r, hostFile, bytes);
  const rawEcho = await echoLatency(r, 200);
  r.close();
  rmSync(hostFile, { force: true });
  return { attachMiBs, rawMiBs, attachEcho, rawEcho };
}
