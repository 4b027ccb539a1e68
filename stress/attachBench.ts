// Attach figures: throughput of a large cat through the console WebSocket and
// keystroke echo latency, next to the same measurements on a raw node-pty
// (no daemon, no session), interleaved in one shuffled order in the same run.
import { writeFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { spawn as spawnPty, type IPty } from 'node-pty';
import WebSocket from 'ws';
import { ACK_CHANNEL, ATTACH_PROTOCOL, EVENTS_CHANNEL, SNAPSHOT_CHANNEL } from '../src/terminal/console.js';
import { Channel, encodeFrame } from '../src/terminal/channels.js';
import type { TestDaemon } from '../test/integration/harness.js';
import { execTrue } from './probes.js';
import { msSince, runShuffled, type Samples } from './schedule.js';

/** Something that takes keystrokes and reports output bytes. */
export interface Terminalish {
  type(s: string): void;
  onOutput(f: (b: Buffer) => void): () => void;
  close(): void;
}

function listeners(): { add: (f: (b: Buffer) => void) => () => void; emit: (b: Buffer) => void } {
  const ls = new Set<(b: Buffer) => void>();
  return {
    add: (f) => {
      ls.add(f);
      return () => ls.delete(f);
    },
    emit: (b) => {
      for (const l of ls) l(b);
    },
  };
}

/** A program on a node-pty of its own, as a user's terminal runs it. */
export function onPty(cmd: string, args: string[], env?: Record<string, string>): Terminalish {
  const p: IPty = spawnPty(cmd, args, { name: 'xterm-256color', cols: 120, rows: 40, encoding: null, ...(env ? { env: { ...process.env, ...env } } : {}) });
  const out = listeners();
  p.onData((d: string | Buffer) => out.emit(typeof d === 'string' ? Buffer.from(d) : d));
  return { type: (s) => p.write(s), onOutput: out.add, close: () => p.kill() };
}

export const rawPty = (cmd: string, args: string[]): Terminalish => onPty(cmd, args);

/**
 * A WebSocket terminal (attach, or exec --tty) speaking the attach protocol,
 * past the hello (and the snapshot, when one is announced): typing before
 * that races the console's start. It acknowledges what it read every 256 KiB,
 * as the CLI does.
 */
export async function wsTerminal(url: string): Promise<Terminalish> {
  const ws = new WebSocket(url, [ATTACH_PROTOCOL], { perMessageDeflate: false });
  const out = listeners();
  let offset = -1;
  let acked = 0;
  let ready!: () => void;
  // Refused (a 404 while the console comes up) or cut before it started: the caller hears it.
  const started = new Promise<void>((r, fail) => ((ready = r), ws.once('error', fail)));
  ws.on('message', (m: Buffer) => {
    if (m[0] === EVENTS_CHANNEL && offset < 0) {
      const hello = JSON.parse(m.subarray(1).toString()) as { offset: number; snapshot?: boolean };
      offset = acked = hello.offset;
      if (!hello.snapshot) ready();
    }
    if (m[0] === SNAPSHOT_CHANNEL) ready();
    if (m[0] !== Channel.stdout) return;
    offset += m.length - 1;
    if (offset - acked >= 256 * 1024) {
      acked = offset;
      ws.send(encodeFrame(ACK_CHANNEL, Buffer.from(String(offset))));
    }
    out.emit(m.subarray(1));
  });
  await started;
  return { type: (s) => ws.send(encodeFrame(Channel.stdin, Buffer.from(s))), onOutput: out.add, close: () => ws.close() };
}

/** The session's console, attached. */
export function attach(d: TestDaemon, session: string): Promise<Terminalish> {
  return wsTerminal(`ws+unix://${d.socket}:/v1/sessions/${session}/attach?cols=120&rows=40`);
}

export function waitFor(t: Terminalish, needle: string, ms = 120_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let tail = '';
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${JSON.stringify(needle)} within ${ms} ms`));
    }, ms);
    const off = t.onOutput((b) => {
      tail = (tail + b.toString('latin1')).slice(-needle.length - 64);
      if (tail.includes(needle)) {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  });
}

let marks = 0;

/** MiB/s for `cat FILE` of `bytes`, timed from the keystroke to the end marker. */
export async function throughput(t: Terminalish, file: string, bytes: number): Promise<number> {
  const tag = `A-done${++marks}-A`;
  const done = waitFor(t, tag);
  const t0 = process.hrtime.bigint();
  t.type(`cat ${file}; printf '\\101-done${marks}-\\101'\r`);
  await done;
  return bytes / (1024 * 1024) / (msSince(t0) / 1e3);
}

/** Put `cat > /dev/null` in the foreground: the tty then echoes each keystroke. */
export async function catMode(t: Terminalish, tag = 'cat', ms?: number): Promise<void> {
  const ready = waitFor(t, `A-${tag}-A`, ms);
  t.type(`printf '\\101-${tag}-\\101'; cat > /dev/null\r`);
  await ready;
}

let keys = 0;

/** Milliseconds from one keystroke to its echo. */
export async function echoOnce(t: Terminalish): Promise<number> {
  const key = String.fromCharCode(97 + (keys++ % 26));
  let off!: () => void;
  const echoed = new Promise<void>((r) => (off = t.onOutput((b) => b.includes(key) && r())));
  const t0 = process.hrtime.bigint();
  t.type(key);
  await echoed;
  off();
  return msSince(t0);
}

export interface AttachOptions {
  mib: number;
  rounds: number;
  keystrokes: number;
  random: () => number;
}

/** Samples: attach-MiBs / raw-MiBs (one per round), attach-echo / raw-echo (ms). */
export async function benchAttach(d: TestDaemon, s: Samples, o: AttachOptions): Promise<void> {
  const bytes = o.mib * 1024 * 1024;
  await d.create({ name: 'bench-console', tmp_mb: o.mib * 2, network: 'none' });
  // Printable data: a terminal stream, not binary noise.
  await d.sh('bench-console', `head -c ${(bytes * 3) / 4} /dev/urandom | base64 -w0 > /tmp/big`);
  const hostFile = `${d.dir}/big`;
  writeFileSync(hostFile, randomBytes((bytes * 3) / 4).toString('base64'));
  const a = await attach(d, 'bench-console');
  const r = rawPty('/bin/sh', []);
  try {
    await runShuffled(
      { 'attach-MiBs': o.rounds, 'raw-MiBs': o.rounds },
      async (name) => {
        s.add(name, name === 'attach-MiBs' ? await throughput(a, '/tmp/big', bytes) : await throughput(r, hostFile, bytes));
        return true;
      },
      o.random,
    );
    await catMode(a);
    await catMode(r);
    await runShuffled(
      { 'attach-echo': o.keystrokes, 'raw-echo': o.keystrokes },
      async (name) => {
        s.add(name, await echoOnce(name === 'attach-echo' ? a : r));
        return true;
      },
      o.random,
    );
  } finally {
    for (const t of [a, r]) t.type('\x03'); // ctrl-c out of cat
    await new Promise((res) => setTimeout(res, 50)); // let it land before the pty goes
    a.close();
    r.close();
    rmSync(hostFile, { force: true });
  }
}

/** Every path once (the first exec, the first console: the screen mirror's worker), so the baseline holds what a used daemon keeps open. */
export async function warmUp(d: TestDaemon): Promise<void> {
  const warm = await d.create({});
  await execTrue(d, warm.id);
  const t = await attach(d, warm.id);
  t.close();
  await d.destroy(warm.id);
}
