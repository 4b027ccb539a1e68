#!/usr/bin/env node
// The `enclave` command's entry. The command line is parsed here against the
// command table (argv.ts); help, the version and completion scripts are
// answered from the table alone, and only a command that talks to the
// daemon loads the rest (zod, the clients): `enclave --help` costs Node's
// own start and little more.
import { readFileSync } from 'node:fs';
import { parseLine, UsageError } from './argv.js';
import { groups, keyOf, lookup } from './commandTable.js';
import { commandHelp, overview, usageLine } from './help.js';

function version(): string {
  const pkg: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const v = typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string' ? pkg.version : 'unknown';
  return `enclave ${v}\n`;
}

function out(text: string, code: number): void {
  process.stdout.write(text, () => process.exit(code));
}

function fail(e: unknown): void {
  const message = e instanceof Error ? e.message : String(e);
  const code = e instanceof Error && 'exitCode' in e && typeof e.exitCode === 'number' ? e.exitCode : 1;
  process.stderr.write(`enclave: ${message.trimEnd()}\n`, () => process.exit(code));
}

/** `enclave help WORDS...`: that command's help, a group's commands, or the overview. */
function help(words: readonly string[]): string {
  if (words.length === 0) return overview();
  const found = lookup(words);
  if ('command' in found && found.rest.length === 0) return commandHelp(found.command);
  const members = groups().get(words[0]!);
  if (words.length === 1 && members) return `${members.map((c) => `  ${usageLine(c)}\n      ${c.summary}`).join('\n')}\n\nRun 'enclave help ${words[0]} COMMAND' for one of them.\n`;
  throw new UsageError(`no command '${words.join(' ').slice(0, 80)}': see 'enclave --help'`);
}

function main(argv: string[]): void {
  const args = [...argv];
  // --socket may also come before the command.
  if (args[0] === '--socket' || args[0]?.startsWith('--socket=')) {
    const [flag] = args.splice(0, 1);
    const value = flag!.includes('=') ? flag!.slice(flag!.indexOf('=') + 1) : args.splice(0, 1)[0];
    if (!value) throw new UsageError('--socket needs a value: PATH');
    process.env.ENCLAVE_SOCKET = value;
  }
  const first = args[0];
  if (first === undefined) return void process.stderr.write(overview(), () => process.exit(2));
  if (first === '--help' || first === '-h') return out(overview(), 0);
  if (first === '--version') return out(version(), 0);
  const found = lookup(args);
  if (!('command' in found)) {
    if (found.group && found.word === undefined) throw new UsageError(`'enclave ${found.group}' needs a command:\n${help([found.group]).trimEnd()}`);
    if (found.group && (found.word === '--help' || found.word === '-h')) return out(help([found.group]), 0);
    const what = found.group ? `${found.group} command '${(found.word ?? '').slice(0, 60)}'` : `command '${(found.word ?? '').slice(0, 60)}'`;
    throw new UsageError(`unknown ${what}: see 'enclave ${found.group ? `help ${found.group}` : '--help'}'`);
  }
  const line = parseLine(found.command, found.rest);
  if (line.help) return out(commandHelp(found.command), 0);
  switch (keyOf(found.command)) {
    case 'help':
      return out(help(line.args), 0);
    case 'version':
      return out(version(), 0);
    case 'completion': {
      void import('./completion.js').then(({ completionScript }) => {
        const script = completionScript(line.args[0]!);
        if (script === undefined) fail(new UsageError(`completion: '${line.args[0]!.slice(0, 40)}' is not one of bash, zsh`, found.command));
        else out(script, 0);
      }, fail);
      return;
    }
  }
  // A load that never settles (seen once in CI: one fs read of the chunk never
  // completed, the process idle for good) ends in one line, not a hang.
  const stuck = setTimeout(() => fail(new Error(`loading the command module did not finish within ${LOAD_MS / 1000} s; run the command again`)), LOAD_MS);
  void import('./commands.js').then(({ runCli }) => {
    clearTimeout(stuck);
    return runCli(line);
  }, fail);
}

const LOAD_MS = 20_000;

// Whoever reads stdout went away (`enclave session exec web yes | head -1`):
// end with 1, no stack trace; the daemon then ends the command (the front end does the same).
process.stdout.on('error', () => process.exit(1));

try {
  main(process.argv.slice(2));
} catch (e) {
  fail(e);
}



