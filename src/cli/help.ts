// Help made from the command table: the list of commands, and one command's
// usage with its options.
import { COMMANDS, GLOBAL_FLAGS, keyOf, type CommandSpec, type FlagSpec } from './commandTable.js';

/** enclave session exec [OPTIONS] SESSION COMMAND [ARG...] */
export function usageLine(c: CommandSpec): string {
  const args = c.args.map((a) => (a.optional ? `[${a.name}]` : a.name));
  return ['enclave', ...c.words, ...(c.flags.length ? ['[OPTIONS]'] : []), ...args, ...(c.trailing ? [c.trailing.name] : [])].join(' ');
}

function flagLines(flags: readonly FlagSpec[]): string[] {
  const left = flags.map((f) => `${f.short ? `-${f.short}, ` : '    '}--${f.long}${f.value ? ` ${f.value}` : ''}`);
  const width = Math.min(44, Math.max(...left.map((l) => l.length)) + 2);
  return flags.map((f, i) => {
    const notes = [...(f.multiple ? ['repeatable'] : []), ...(f.aliases?.length ? [`also --${f.aliases.join(', --')}`] : [])];
    const help = `${f.help}${notes.length ? ` (${notes.join('; ')})` : ''}`;
    const l = left[i]!;
    return l.length + 2 > width ? `  ${l}\n  ${' '.repeat(width)}${help}` : `  ${l.padEnd(width)}${help}`;
  });
}

/** `enclave help session exec` and `enclave session exec --help`. */
export function commandHelp(c: CommandSpec): string {
  const lines = [`usage: ${usageLine(c)}`, '', c.summary];
  if (c.aliases?.length) lines.push(`Also: ${c.aliases.map((a) => ['enclave', ...c.words.slice(0, -1), a].join(' ')).join(', ')}`);
  if (c.details) lines.push('', c.details);
  if (c.flags.length) lines.push('', 'Options:', ...flagLines(c.flags));
  lines.push('', 'Global options:', ...flagLines(GLOBAL_FLAGS));
  return `${lines.join('\n')}\n`;
}

/** `enclave --help`: every command with its one line. */
export function overview(): string {
  const shown = COMMANDS.filter((c) => !c.hidden);
  const names = shown.map((c) => `${keyOf(c)}${c.aliases?.length ? ` (${c.aliases.join(', ')})` : ''}`);
  const width = Math.max(...names.map((n) => n.length)) + 3;
  const lines = ['usage: enclave [--socket PATH] COMMAND [OPTIONS] [ARGS]', '', 'Commands:'];
  let group = '';
  shown.forEach((c, i) => {
    if (c.words[0] !== group && i > 0) lines.push('');
    group = c.words[0]!;
    lines.push(`  ${names[i]!.padEnd(width)}${c.summary}`);
  });
  lines.push(
    '',
    "Run 'enclave help COMMAND' or 'enclave COMMAND --help' for a command's options; 'enclave --version' for the version.",
    "A SESSION is an id, one of your names, or another owner's UID:NAME; so are volume and secret NAMEs.",
    'The socket is --socket, else $ENCLAVE_SOCKET, else /run/enclave/enclave.sock.',
  );
  return `${lines.join('\n')}\n`;
}
