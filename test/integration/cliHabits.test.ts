// docker's command lines against a real daemon: exec -i/-t/-it, -w, -e,
// --env-file, an optional `--`, aliases, list --json in the API's shape, the
// version, per-command help, and completion of a real daemon's names.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn as spawnPty } from 'node-pty';
import { enclaveCommand, isRoot, TestDaemon } from './harness.js';
import { repoRoot } from '../../src/native/addon.js';

describe.skipIf(!isRoot)('docker-style CLI habits (root)', () => {
  const d = new TestDaemon();
  const dir = mkdtempSync(join(tmpdir(), 'enclave-habits-'));
  beforeAll(async () => {
    await d.start();
    await d.create({ name: 'hab' });
  });
  afterAll(async () => {
    await d.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends stdin only with -i, as docker exec does', async () => {
    // Without -i the command reads an empty stdin at once, whatever is piped in.
    const without = await d.cli(['session', 'exec', 'hab', 'sh', '-c', 'cat; echo end'], 'PIPED\n');
    expect(without.stdout).toBe('end\n');
    const withI = await d.cli(['session', 'exec', '-i', 'hab', 'sh', '-c', 'cat; echo end'], 'PIPED\n');
    expect(withI.stdout).toBe('PIPED\nend\n');
  });

  it('takes the command after SESSION with or without --, and its own flags stay its own', async () => {
    expect((await d.cli(['session', 'exec', 'hab', 'echo', '-n', 'no-dashes'])).stdout).toBe('no-dashes');
    expect((await d.cli(['session', 'exec', 'hab', '--', 'echo', '-n', 'dashes'])).stdout).toBe('dashes');
    expect((await d.cli(['session', 'exec', 'hab', 'sh', '-c', 'echo "$0 $1"', '-i', '-t'])).stdout).toBe('-i -t\n');
  });

  it('-w, -e (K=V and K from here) and --env-file as docker reads them, -e winning over the file', async () => {
    const envFile = join(dir, 'app.env');
    writeFileSync(envFile, '# settings\nMODE=file\nGREETING=hello world\n\n  INDENTED=yes\nFROM_CALLER\n');
    const r = await d.cliEnv(['session', 'exec', '-w', '/tmp', '--env-file', envFile, '-e', 'MODE=flag', '-e', 'FROM_CALLER', 'hab', 'sh', '-c', 'pwd; echo "$MODE|$GREETING|$INDENTED|$FROM_CALLER"'], { FROM_CALLER: 'caller-value' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('/tmp\nflag|hello world|yes|caller-value\n');
    // The older spelling of -w still works.
    expect((await d.cli(['session', 'exec', '--cwd', '/home', 'hab', 'pwd'])).stdout).toBe('/home\n');
  });

  it('-u runs as a user of the session, in its HOME unless -w; with -t too', async () => {
    expect((await d.sh('hab', 'useradd -m -u 1500 bob')).code).toBe(0);
    expect((await d.cli(['session', 'exec', '-u', 'bob', 'hab', 'sh', '-c', 'id -un; id -u; echo "$HOME"; pwd'])).stdout).toBe('bob\n1500\n/home/bob\n/home/bob\n');
    expect((await d.cli(['session', 'exec', '-u', '1500', '-w', '/tmp', 'hab', 'pwd'])).stdout).toBe('/tmp\n');
    const tty = await d.cli(['session', 'exec', '-t', '-u', 'bob', 'hab', 'sh', '-c', 'id -un; stat -c %U "$(tty)"']);
    expect(tty.stdout.replace(/\r/g, '')).toBe('bob\nbob\n');
    const nobody = await d.cli(['session', 'exec', '-u', 'nosuchuser', 'hab', 'true']);
    expect(nobody.code).toBe(126);
    expect(nobody.stderr).toMatch(/no user 'nosuchuser' in the session's \/etc\/passwd/);
  });

  it('-it runs an interactive command in a terminal; typed input reaches it', async () => {
    const p = spawnPty(...enclaveCommand(['session', 'exec', '-it', 'hab', 'sh', '-c', 'test -t 0 && echo tty-yes; read line; echo "got:$line"']), { name: 'xterm', cols: 80, rows: 24, env: { ...process.env, ENCLAVE_SOCKET: d.socket } });
    let out = '';
    p.onData((s) => (out += s));
    const exited = new Promise<number>((r) => p.onExit(({ exitCode }) => r(exitCode)));
    for (const deadline = Date.now() + 15_000; !out.includes('tty-yes'); ) {
      if (Date.now() > deadline) throw new Error(`no prompt: ${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    p.write('typed-words\r');
    expect(await exited).toBe(0);
    expect(out).toContain('got:typed-words');
  });

  it('gives a usage error with only that command\'s usage, and per-command help', async () => {
    const r = await d.cli(['session', 'exec', '--bogus', 'hab', 'true']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("enclave: unknown flag --bogus\nusage: enclave session exec [OPTIONS] SESSION COMMAND [ARG...]\nSee 'enclave session exec --help'.\n");
    const help = await d.cli(['session', 'exec', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: enclave session exec /);
    expect(help.stdout).not.toContain('volume create');
    expect((await d.cli(['help', 'session', 'exec'])).stdout).toBe(help.stdout);
    const version = await d.cli(['--version']);
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    expect(version.stdout).toBe(`enclave ${pkg.version}\n`);
  });

  it('list --json has the API\'s shape; ls, rm and -q work as docker\'s', async () => {
    await d.create({ name: 'hab-gone' });
    const listed = JSON.parse((await d.cli(['session', 'ls', '--json'])).stdout) as { sessions: { name: string; id: string }[] };
    expect(listed.sessions.map((s) => s.name).sort()).toEqual(['hab', 'hab-gone']);
    const ids = (await d.cli(['session', 'ls', '-q'])).stdout.trim().split('\n').sort();
    expect(ids).toEqual(listed.sessions.map((s) => s.id).sort());
    expect((await d.cli(['session', 'rm', '-f', 'hab-gone'])).code).toBe(0);
    expect(JSON.parse((await d.cli(['session', 'ls', '--json'])).stdout).sessions).toHaveLength(1);
    expect(JSON.parse((await d.cli(['volume', 'ls', '--json'])).stdout)).toEqual({ volumes: [] });
  });

  it('completes session names from the daemon in bash', async () => {
    const script = join(dir, 'enclave.bash');
    writeFileSync(script, (await d.cli(['completion', 'bash'])).stdout);
    // `enclave` on PATH as the shell would find it: a wrapper for this build.
    const bin = join(dir, 'bin');
    spawnSync('mkdir', ['-p', bin]);
    writeFileSync(join(bin, 'enclave'), `#!/bin/sh\nexec ${enclaveCommand([]).flat().join(' ')} "$@"\n`, { mode: 0o755 });
    const r = spawnSync('bash', ['-c', `source ${script}; COMP_WORDS=(enclave session exec h); COMP_CWORD=3; _enclave; printf '%s\\n' "\${COMPREPLY[@]}"`], {
      encoding: 'utf8',
      env: { PATH: `${bin}:${process.env.PATH ?? ''}`, ENCLAVE_SOCKET: d.socket },
    });
    expect(r.stdout.split('\n').filter(Boolean)).toEqual(['hab']);
  });
});
