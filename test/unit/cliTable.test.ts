// The CLI's command table drives its parser, its help and its completion:
// docker's command lines parse as docker's do, a usage error shows the one
// command's usage, and the completion scripts (bash, and zsh through its
// bashcompinit) complete from the same table.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLine, UsageError } from '../../src/cli/argv.js';
import { COMMANDS, keyOf, lookup } from '../../src/cli/commandTable.js';
import { completionScript } from '../../src/cli/completion.js';
import { envEntries } from '../../src/cli/envFlags.js';
import { commandHelp, overview } from '../../src/cli/help.js';

const cmd = (words: string) => {
  const l = lookup(words.split(' '));
  if (!('command' in l)) throw new Error(`no command ${words}`);
  return l;
};
const parse = (line: string[]) => {
  const l = lookup(line);
  if (!('command' in l)) throw new Error(`no command in ${line.join(' ')}`);
  return parseLine(l.command, l.rest);
};
const usageError = (line: string[]) => {
  try {
    parse(line);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error(`no usage error for ${line.join(' ')}`);
};

describe('the command table and its parser', () => {
  it('parses exec as docker does: -it grouped, the command after SESSION with or without --', () => {
    const p = parse(['session', 'exec', '-it', 'web', 'sh', '-c', 'echo -n hi']);
    expect([p.bool('interactive'), p.bool('tty')]).toEqual([true, true]);
    expect(p.args).toEqual(['web']);
    expect(p.trailing).toEqual(['sh', '-c', 'echo -n hi']);
    const dashed = parse(['session', 'exec', 'web', '--', 'ls', '-la']);
    expect([dashed.bool('interactive'), dashed.bool('tty'), dashed.trailing]).toEqual([false, false, ['ls', '-la']]);
    // A flag after the command belongs to the command.
    expect(parse(['session', 'exec', 'web', 'grep', '-i', 'x']).bool('interactive')).toBe(false);
  });

  it('takes -u, -w (and the older --cwd), -e in every spelling, --env-file, and a value glued to its short flag', () => {
    const p = parse(['session', 'exec', '-u', 'bob', '-w', '/srv', '-e', 'A=1', '-eB=2', '--env=C=3', '--env', 'D', '--env-file', 'f', 'web', 'id']);
    expect([p.str('user'), p.str('workdir'), p.list('env'), p.list('env-file')]).toEqual(['bob', '/srv', ['A=1', 'B=2', 'C=3', 'D'], ['f']]);
    expect(parse(['session', 'exec', '--cwd', '/tmp', 'web', 'pwd']).str('workdir')).toBe('/tmp');
    expect(parse(['session', 'exec', '-itubob', 'web', 'id']).str('user')).toBe('bob');
    expect(parse(['session', 'exec', '-itu', 'bob:staff', 'web', 'id']).str('user')).toBe('bob:staff');
  });

  it('resolves docker aliases and the longer of two commands', () => {
    expect(keyOf(cmd('session ls').command)).toBe('session list');
    expect(keyOf(cmd('session rm web').command)).toBe('session destroy');
    expect(keyOf(cmd('volume rm v').command)).toBe('volume remove');
    expect(keyOf(cmd('auth ls').command)).toBe('auth list');
    expect(keyOf(cmd('daemon reload').command)).toBe('daemon reload');
    expect(keyOf(cmd('daemon --config x').command)).toBe('daemon');
    expect(parse(['session', 'rm', '-f', 'web']).bool('force')).toBe(true);
  });

  it('answers --help and -h anywhere before the command to run, and not after it', () => {
    expect(parse(['session', 'exec', 'web', '--help']).help).toBe(true);
    expect(parse(['volume', 'create', '-h']).help).toBe(true);
    expect(parse(['session', 'exec', 'web', 'ls', '--help']).help).toBe(false);
  });

  it('shows the one command\'s usage with a usage error, not every command\'s', () => {
    for (const [line, first] of [
      [['session', 'exec', 'web'], 'missing COMMAND [ARG...]'],
      [['session', 'exec'], 'missing SESSION'],
      [['session', 'exec', '-z', 'web', 'x'], 'unknown flag -z'],
      [['session', 'show', 'a', 'b'], "unexpected argument 'b'"],
      [['session', 'create', '--memory'], '--memory needs a value: MB'],
      [['session', 'list', '--json=yes'], '--json takes no value'],
    ] as const) {
      const m = usageError([...line]);
      const lines = m.split('\n');
      expect(lines[0]).toBe(first);
      expect(lines[1]).toMatch(new RegExp(`^usage: enclave ${line[0]} ${line[1]} `));
      expect(lines).toHaveLength(3);
    }
  });

  it('documents every flag of every command in its help, and lists every command in the overview', () => {
    const all = overview();
    for (const c of COMMANDS.filter((x) => !x.hidden)) {
      expect(all).toContain(keyOf(c));
      const h = commandHelp(c);
      for (const f of c.flags) expect(h).toContain(`--${f.long}`);
    }
    // Every flag of the parser has help text, and short names are unique within a command.
    for (const c of COMMANDS) {
      expect(c.flags.every((f) => f.help.length > 5)).toBe(true);
      const shorts = c.flags.flatMap((f) => (f.short ? [f.short] : []));
      expect(new Set(shorts).size).toBe(shorts.length);
    }
  });
});

describe('env flags (docker exec -e, --env-file)', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'enclave-env-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('reads K=V verbatim, K from the environment (dropped when unset), files first, comments and blanks skipped', () => {
    const dir = tempDir();
    const file = join(dir, 'env');
    writeFileSync(file, '# a comment\n\n  SPACED=a b  \nQUOTED="kept"\nFROM_HERE\nUNSET_HERE_X\nA=file\n');
    process.env.FROM_HERE = 'here';
    delete process.env.UNSET_HERE_X;
    expect(envEntries([file], ['A=flag', 'FROM_HERE', 'UNSET_HERE_X'])).toEqual(['SPACED=a b  ', 'QUOTED="kept"', 'FROM_HERE=here', 'A=file', 'A=flag', 'FROM_HERE=here']);
  });

  it('refuses a bad name, a secret-looking name, and a missing file, saying where', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad'), 'OK=1\nNOT OK=2\n');
    expect(() => envEntries([join(dir, 'bad')], [])).toThrow(/--env-file .*bad:2: 'NOT OK' is not a variable name/);
    expect(() => envEntries([], ['1X=1'])).toThrow(/--env: '1X' is not a variable name/);
    expect(() => envEntries([], ['GITHUB_TOKEN=x'])).toThrow(/GITHUB_TOKEN/);
    expect(() => envEntries([join(dir, 'none')], [])).toThrow(/--env-file .*none: ENOENT/);
  });
});

/** COMPREPLY of the completion function for the words typed, in bash or in zsh (bashcompinit). */
function complete(shell: string, words: string[], cwd: string): string[] {
  const script = completionScript(shell)!;
  const file = join(cwd, `enclave.${shell}`);
  writeFileSync(file, script);
  const arr = words.map((w) => `'${w}'`).join(' ');
  // zsh: the function runs as bashcompinit's _bash_complete runs it (1-based words, COMP_CWORD = CURRENT - 1).
  const run =
    shell === 'bash'
      ? `source ${file}; COMP_WORDS=(${arr}); COMP_CWORD=${words.length - 1}; _enclave; printf '%s\\n' "\${COMPREPLY[@]}"`
      : // zsh's compgen leaves matching to compadd, which keeps what starts with PREFIX: done here by hand.
        `source ${file} >/dev/null 2>&1; rehash; PREFIX='${words.at(-1)}'; COMP_WORDS=(${arr}); COMP_CWORD=${words.length - 1}; _enclave; printf '%s\\n' "\${(M)COMPREPLY[@]:#\${PREFIX}*}"`;
  const r = spawnSync(shell, ['-c', run], { cwd, encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd } });
  if (r.status !== 0) throw new Error(`${shell}: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '');
}

const hasZsh = spawnSync('zsh', ['-c', 'true']).status === 0;

describe('completion scripts made from the table', () => {
  const dir = mkdtempSync(join(tmpdir(), 'enclave-complete-'));
  mkdirSync(join(dir, 'somedir'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(['bash', 'zsh'] as const)('%s completes commands, subcommands, aliases, flags and their values', { timeout: 60_000 }, (shell) => {
    // zsh is in .ci/setup's packages: missing, it fails rather than skips.
    if (shell === 'zsh') expect(hasZsh, 'zsh must be installed (apt-get install zsh; npm run setup does)').toBe(true);
    expect(complete(shell, ['enclave', 'ses'], dir)).toEqual(['session']);
    expect(complete(shell, ['enclave', 'session', 'e'], dir)).toEqual(['exec']);
    expect(complete(shell, ['enclave', 'daemon', 're'], dir)).toEqual(['reload']);
    expect(complete(shell, ['enclave', 'volume', 'r'], dir).sort()).toEqual(['remove', 'resize', 'rm']);
    const flags = complete(shell, ['enclave', 'session', 'exec', '-'], dir);
    for (const f of ['-i', '--interactive', '-t', '-u', '--user', '-w', '--workdir', '--cwd', '-e', '--env-file', '--socket']) expect(flags).toContain(f);
    expect(complete(shell, ['enclave', 'session', 'create', '--profile', ''], dir).sort()).toEqual(['strict', 'system', 'workspace']);
    expect(complete(shell, ['enclave', 'session', 'exec', '-w', 'some'], dir)).toEqual(['somedir']);
    // After SESSION comes a command of the session: completed from the command names here.
    expect(complete(shell, ['enclave', 'session', 'exec', '-it', 'web', 'printen'], dir)).toContain('printenv');
    expect(complete(shell, ['enclave', 'completion', ''], dir).sort()).toEqual(['bash', 'zsh']);
  });

  it('refuses a shell it has no script for', () => {
    expect(completionScript('fish')).toBeUndefined();
  });
});
