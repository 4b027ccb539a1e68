// The native contract (src/native/contract.gen.ts) is what the C headers
// say: the committed file is exactly what the generator makes of them now,
// the helper that was built from them prints the same table, and the
// control messages round-trip through the table-driven codec.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { helperPaths, repoRoot } from '../../src/native/addon.js';
import { parseHelperTable } from '../../src/native/steps.js';
import {
  AGENT_MAX_ID,
  AGENT_MAX_MSG,
  CAPS_KEEP_MAX,
  OPS,
  PHASES,
  STEP_EXIT_BASE,
  STEPS,
  VERBS,
  op,
  readOp,
  type MessageToDaemon,
  type OpName,
} from '../../src/native/contract.gen.js';
import { decodeToDaemon, decodeToInit, encodeMessage, framingRoom, payloadSize } from '../../src/native/control.js';
import pino from 'pino';
import { MAX_EXEC_AS_MESSAGE, MAX_EXEC_MESSAGE, SessionAgent } from '../../src/sessions/agent.js';
import { WORKSPACE_CAPS } from '../../src/isolation/profiles.js';

describe('the generated contract', () => {
  it('is what native/tools/gen-contract.mjs makes of the headers now (regenerate and commit it when they change)', () => {
    const fresh = execFileSync(process.execPath, [join(repoRoot, 'native', 'tools', 'gen-contract.mjs'), '--stdout'], { encoding: 'utf8' });
    const committed = readFileSync(join(repoRoot, 'src', 'native', 'contract.gen.ts'), 'utf8');
    expect(committed, 'src/native/contract.gen.ts is stale: run `npm run gen` and commit it').toBe(fresh);
  });

  it('agrees with the table the built helper prints (enclave-init --ops)', () => {
    const t = parseHelperTable(execFileSync(helperPaths.init, ['--ops'], { encoding: 'utf8', env: {} }));
    expect(t.phases).toEqual([...PHASES]);
    expect([...t.steps]).toEqual(STEPS.map((s, i) => [s, STEP_EXIT_BASE + i]));
    expect(t.ops).toEqual(Object.entries(OPS).map(([name, d]) => ({ name, args: d.args, phase: d.phase, step: d.step, flags: [...d.flags] })));
  });

  it('gives every op a constructor that tags its phase and encodes its arguments by kind, and a reader that names them', () => {
    for (const name of Object.keys(OPS) as OpName[]) {
      const ctor = name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
      expect(op, name).toHaveProperty(ctor);
    }
    expect(op.tmpfs('dev/shm', ['nosuid', 'nodev', 'noexec'], 'mode=1777')).toEqual({ phase: 'mount', op: 'tmpfs', args: ['dev/shm', 'nosuid,nodev,noexec', 'mode=1777'] });
    expect(op.volume('/v', [])).toEqual({ phase: 'parent', op: 'volume', args: ['/v', '-'] });
    expect(op.mkdir('run/enclave/auth', 0o700).args).toEqual(['run/enclave/auth', '0700']);
    expect(op.file('run/enclave/env/A', 0o400, 0, 0, 1).args).toEqual(['run/enclave/env/A', '0400', '0', '0', '1']);
    expect(op.seccomp(Buffer.from([6, 0, 0, 0, 0, 0, 0xff, 0x7f])).args).toEqual(['060000000000ff7f']);
    expect(op.rlimit('FSIZE', 'unlimited', 5).args).toEqual(['FSIZE', 'unlimited', '5']);
    expect(readOp(op.overlay('usr', 1), 'overlay')).toEqual({ at: 'usr', layer: 1 });
    expect(readOp(op.tmpfs('tmp', ['nosuid'], 'size=1'), 'tmpfs')).toEqual({ at: 'tmp', flags: ['nosuid'], data: 'size=1' });
    expect(readOp(op.overlay('usr', 1), 'root')).toBeUndefined();
    expect(readOp({ phase: 'mount', op: 'overlay', args: ['usr'] }, 'overlay')).toBeUndefined();
    expect(() => readOp({ phase: 'mount', op: 'overlay', args: ['usr', 'x'] }, 'overlay')).toThrow(RangeError);
  });

  it('keeps the workspace profile within the helper\'s ceiling', () => {
    const mask = WORKSPACE_CAPS.reduce((m, c) => m | (1n << BigInt(c.bit)), 0n);
    expect(mask & ~CAPS_KEEP_MAX).toBe(0n);
  });
});

describe('control messages through the verb table', () => {
  it('encode as the init reads them: the verb, the fields in order, a list as its count then its items', () => {
    const fields = encodeMessage({ verb: 'exec', id: 'a-1', tty: false, stdin: true, cols: 80, rows: 24, cwd: '/home', argv: ['sh', '-c', 'true'], env: ['A=b'] });
    expect(fields).toEqual(['exec', 'a-1', '0', '1', '80', '24', '/home', '3', 'sh', '-c', 'true', '1', 'A=b']);
    expect(decodeToInit(fields as string[])).toEqual({ verb: 'exec', id: 'a-1', tty: false, stdin: true, cols: 80, rows: 24, cwd: '/home', argv: ['sh', '-c', 'true'], env: ['A=b'] });
    expect(encodeMessage({ verb: 'write', id: 'a-2', dir: '/run/enclave/auth', leaf: 't', mode: 0o440, gid: 65000, content: Buffer.from('x') })).toEqual(['write', 'a-2', '/run/enclave/auth', 't', '440', '65000', Buffer.from('x')]);
    expect(encodeMessage({ verb: 'signal', id: 'a-1', signo: 15 })).toEqual(['signal', 'a-1', '15']);
  });

  it('decode what the init sends, and nothing outside a row: kinds, bounds, arity, direction', () => {
    const all: MessageToDaemon[] = [
      { verb: 'started', id: 'a-1', pid: 42 },
      { verb: 'failed', id: 'a-1', step: 'fork', errno: 11, detail: 'fork' },
      { verb: 'exited', id: 'a-1', code: -1, signal: 9 },
      { verb: 'written', id: 'a-1' },
      { verb: 'ending', code: 143 },
    ];
    for (const m of all) expect(decodeToDaemon(encodeMessage(m) as string[])).toEqual(m);
    for (const bad of [
      ['started', 'a-1', '1'], // a pid below 2
      ['started', 'a-1', '12345678901'], // eleven digits
      ['started', 'a-1'], // a field short
      ['started', 'a-1', '42', 'x'], // one too many
      ['exited', 'a-1', '256', '0'],
      ['exited', 'a-1', '0', '65'],
      ['exited', 'a-1', 'notanumber', '0'],
      ['ending', '128'],
      ['failed', 'a-1', 'x'.repeat(33), '1', 'd'],
      ['failed', 'a-1', 'fork', '11', 'd'.repeat(401)],
      ['written', ''],
      ['written', 'i'.repeat(AGENT_MAX_ID + 1)],
      ['exec', 'a-1', '0', '0', '80', '24', '/', '1', 'true', '0'], // a verb the init reads, not sends
      ['nonsense'],
      ['constructor'],
      [],
    ]) {
      expect(decodeToDaemon(bad), JSON.stringify(bad)).toBeUndefined();
    }
  });

  it('bound an exec so that the widest framing and the largest payload still fit AGENT_MAX_MSG', () => {
    expect(framingRoom('exec')).toBe(5 + (AGENT_MAX_ID + 1) + 2 + 2 + 5 + 4 + 7 + 7);
    expect(MAX_EXEC_MESSAGE).toBe(AGENT_MAX_MSG - framingRoom('exec'));
    const cwd = '/' + 'c'.repeat(100);
    const m = { verb: 'exec' as const, id: 'i'.repeat(AGENT_MAX_ID), tty: true, stdin: true, cols: 1000, rows: 500, cwd, argv: ['x'.repeat(MAX_EXEC_MESSAGE - (cwd.length + 1) - 1)], env: [] };
    expect(payloadSize(m)).toBe(MAX_EXEC_MESSAGE);
    const bytes = encodeMessage(m).reduce((n, f) => n + Buffer.byteLength(f) + 1, 0);
    expect(bytes).toBeLessThanOrEqual(AGENT_MAX_MSG);
    // One byte more is the caller's error, before anything is sent.
    const agent = new SessionAgent('/nonexistent/control', pino({ level: 'silent' }));
    const spec = { tty: true, stdin: true, cols: 1000, rows: 500, cwd, argv: [m.argv[0]!, ''], env: [], fds: [] };
    expect(() => agent.start(spec)).toThrow(`command, environment and cwd take ${MAX_EXEC_MESSAGE + 1} bytes; at most ${MAX_EXEC_MESSAGE} are allowed`);
    expect(Object.keys(VERBS)).toEqual(['exec', 'exec-as', 'signal', 'release', 'keep', 'quiesce', 'boot', 'write', 'started', 'failed', 'exited', 'written', 'ending', 'kept', 'ring', 'kept-done', 'quiet']);
  });

  it('bound an exec-as alike: its user and an empty cwd (the user\'s HOME) are payload, the longer verb is framing', () => {
    expect(framingRoom('exec-as')).toBe(framingRoom('exec') + 'exec-as'.length - 'exec'.length);
    expect(MAX_EXEC_AS_MESSAGE).toBe(AGENT_MAX_MSG - framingRoom('exec-as'));
    const user = 'bob:dev';
    const m = { verb: 'exec-as' as const, id: 'i'.repeat(AGENT_MAX_ID), tty: true, stdin: true, cols: 1000, rows: 500, cwd: '', user, argv: ['x'.repeat(MAX_EXEC_AS_MESSAGE - 1 - (user.length + 1) - 1)], env: [] };
    expect(payloadSize(m)).toBe(MAX_EXEC_AS_MESSAGE);
    expect(encodeMessage(m).reduce((n, f) => n + Buffer.byteLength(f) + 1, 0)).toBeLessThanOrEqual(AGENT_MAX_MSG);
    const agent = new SessionAgent('/nonexistent/control', pino({ level: 'silent' }));
    const spec = { tty: true, stdin: true, cols: 1000, rows: 500, user, argv: [m.argv[0]!, ''], env: [], fds: [] };
    expect(() => agent.start(spec)).toThrow(`command, environment and cwd take ${MAX_EXEC_AS_MESSAGE + 1} bytes; at most ${MAX_EXEC_AS_MESSAGE} are allowed`);
    // The init reads it as the daemon wrote it: the user verbatim, the empty cwd kept.
    expect(decodeToInit(encodeMessage({ ...m, argv: ['id'] }).map(String))).toEqual({ ...m, argv: ['id'] });
    // Without a user there is no HOME to choose in the session: root's cwd is the caller's to give.
    expect(() => agent.start({ tty: false, stdin: false, cols: 0, rows: 0, argv: ['id'], env: [], fds: [] })).toThrow('an exec as root needs its cwd');
  });
});
