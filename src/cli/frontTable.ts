// The command table as a C header for the native front end
// (native/src/front.c): every command's words, aliases, arguments and flags,
// the global flags, which commands the front end answers itself (`front` in
// the table), and the session reference patterns it checks before it does.
// native/tools/gen-front.mjs writes it to native/src/front_table.gen.h
// (npm run gen); test/unit/frontTable.test.ts fails when the committed header
// is not what the table gives now. So the parser, the help, the completion
// and the front end all read one table.
import { ATTACH_PROTOCOL, Channel } from '../api/protocol.js';
import { DEFAULT_SOCKET } from '../client/transport.js';
import { SECRET_LOOKING, SESSION_ID, SESSION_NAME } from '../vocab/names.js';
import { COMMANDS, GLOBAL_FLAGS, keyOf, type CommandSpec, type FlagSpec } from './commandTable.js';
import { ENV_NAME } from './envFlags.js';
import { DEFAULT_DETACH_KEYS, DETACHED_MESSAGE } from './attachClient.js';
import { ALT_SCREENS, CSI_Q, DEC_DEFAULTS, KEYPAD_NORMAL, MAX_CARRY, SGR_RESET } from './terminalModes.js';

/** A C string literal; the table holds ASCII only, and anything else is a mistake worth a failed build. */
function str(s: string): string {
  if (!/^[\x20-\x7e]*$/.test(s)) throw new Error(`front table: '${s}' is not printable ASCII`);
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** A C string literal of terminal bytes: ESC (as \033, always three digits), CR and LF escaped, the rest printable ASCII. */
function bytes(s: string): string {
  str(s.replace(/[\x1b\r\n]/g, ''));
  const esc: Record<string, string> = { '\x1b': '\\033', '\r': '\\r', '\n': '\\n', '\\': '\\\\', '"': '\\"' };
  return `"${[...s].map((c) => esc[c] ?? c).join('')}"`;
}

/** FT_SESSION_EXEC for "session exec". */
const hotName = (c: CommandSpec) => `FT_${keyOf(c).replace(/[^a-z0-9]+/gi, '_').toUpperCase()}`;

function flagRows(name: string, flags: readonly FlagSpec[], out: string[]): void {
  flags.forEach((f, i) => {
    if (f.aliases?.length) out.push(`static const char *const ${name}_alias_${i}[] = {${f.aliases.map(str).join(', ')}, NULL};`);
  });
  const rows = flags.map((f, i) => `  {${str(f.long)}, ${f.short ? `'${f.short}'` : '0'}, ${f.value ? 1 : 0}, ${f.multiple ? 1 : 0}, ${f.aliases?.length ? `${name}_alias_${i}` : 'NULL'}},`);
  out.push(`static const struct ft_flag ${name}[] = {`, ...(rows.length ? rows : ['  {NULL, 0, 0, 0, NULL},']), '};');
}

export function frontHeader(): string {
  const out: string[] = [
    '/* Generated from src/cli/commandTable.ts by native/tools/gen-front.mjs (npm run gen): do not edit. */',
    '#ifndef ENCLAVE_FRONT_TABLE_H',
    '#define ENCLAVE_FRONT_TABLE_H',
    '#include <stddef.h>',
    '',
    'struct ft_flag {',
    '  const char *name;',
    '  char short_name;',
    '  unsigned char takes_value;',
    '  unsigned char multiple;',
    '  const char *const *aliases; /* NULL-terminated, or NULL */',
    '};',
    '',
    '/* The commands the front end answers (0: always the Node CLI). */',
    'enum ft_hot {',
    '  FT_COLD = 0,',
    ...COMMANDS.filter((c) => c.front).map((c) => `  ${hotName(c)},`),
    '};',
    '',
    'struct ft_command {',
    '  const char *key;',
    '  const char *words[3];',
    '  size_t nwords;',
    '  const char *const *aliases; /* of the last word; NULL-terminated, or NULL */',
    '  const struct ft_flag *flags;',
    '  size_t nflags;',
    '  size_t nargs;',
    '  size_t nrequired;',
    '  unsigned char variadic; /* the last argument takes the rest */',
    '  unsigned char trailing; /* a command to run follows the arguments */',
    '  enum ft_hot hot;',
    '};',
    '',
  ];
  flagRows('ft_global_flags', GLOBAL_FLAGS, out);
  out.push(`#define FT_NGLOBAL_FLAGS ${GLOBAL_FLAGS.length}`, '');
  COMMANDS.forEach((c, i) => {
    if (c.words.length > 2) throw new Error(`front table: ${keyOf(c)} has more than two words`);
    if (c.aliases?.length) out.push(`static const char *const ft_cmd_alias_${i}[] = {${c.aliases.map(str).join(', ')}, NULL};`);
    flagRows(`ft_cmd_flags_${i}`, c.flags, out);
  });
  out.push('', 'static const struct ft_command ft_commands[] = {');
  COMMANDS.forEach((c, i) => {
    const variadic = c.args.at(-1)?.name.endsWith('...') ?? false;
    const required = c.args.filter((a) => !a.optional && !a.name.endsWith('...')).length;
    const words = [...c.words.map(str), 'NULL'].join(', ');
    out.push(
      `  {${str(keyOf(c))}, {${words}}, ${c.words.length}, ${c.aliases?.length ? `ft_cmd_alias_${i}` : 'NULL'}, ft_cmd_flags_${i}, ${c.flags.length}, ${c.args.length}, ${required}, ${variadic ? 1 : 0}, ${c.trailing ? 1 : 0}, ${c.front ? hotName(c) : 'FT_COLD'}},`,
    );
  });
  out.push(
    '};',
    `#define FT_NCOMMANDS ${COMMANDS.length}`,
    '',
    '/* The socket without --socket or ENCLAVE_SOCKET (src/client/transport.ts). */',
    `#define FT_DEFAULT_SOCKET ${str(DEFAULT_SOCKET)}`,
    '',
    '/* A session reference the front end passes on as it is (POSIX extended regexes, from src/vocab/names.ts); any other goes to the Node CLI. */',
    `#define FT_SESSION_ID_RE ${str(SESSION_ID.source)}`,
    `#define FT_SESSION_NAME_RE ${str(SESSION_NAME.source)}`,
    '',
    '/* -e NAME[=VALUE]: a name it passes on (src/cli/envFlags.ts), and names that look like secrets (src/vocab/names.ts, case-insensitive): those go to the Node CLI, which refuses them. */',
    `#define FT_ENV_NAME_RE ${str(ENV_NAME.source)}`,
    `static const char *const ft_secret_looking[] = {${SECRET_LOOKING.map((r) => {
      if (r.flags !== 'i') throw new Error(`front table: ${r} is not a plain case-insensitive pattern`);
      return str(r.source);
    }).join(', ')}, NULL};`,
    '',
    '/* attach and exec -t (native/src/front_tty.c): the terminal modes a program may leave switched on, each with its default (1 = set),',
    ' * followed through the output and switched back on every way out, as src/cli/terminalModes.ts does for the Node CLI. */',
    'struct ft_dec_mode {',
    '  int mode;',
    '  int on_by_default;',
    '};',
    `static const struct ft_dec_mode ft_dec_modes[] = {${[...DEC_DEFAULTS].map(([m, on]) => `{${m}, ${on ? 1 : 0}}`).join(', ')}};`,
    `#define FT_NDEC_MODES ${DEC_DEFAULTS.size}`,
    '/* Switched off first, in this order: the main screen\'s modes are what the rest restores. */',
    `static const int ft_alt_screens[] = {${ALT_SCREENS.join(', ')}};`,
    `#define FT_NALT_SCREENS ${ALT_SCREENS.length}`,
    `#define FT_CSI_Q ${bytes(CSI_Q)}`,
    `#define FT_MODES_MAX_CARRY ${MAX_CARRY}`,
    `#define FT_KEYPAD_NORMAL ${bytes(KEYPAD_NORMAL)}`,
    `#define FT_SGR_RESET ${bytes(SGR_RESET)}`,
    '/* The attach protocol and its channels (src/api/protocol.ts); the detach keys without --detach-keys, and what a detach prints once the terminal is restored (src/cli/attachClient.ts). */',
    `#define FT_ATTACH_PROTOCOL ${str(ATTACH_PROTOCOL)}`,
    ...Object.entries(Channel).map(([name, n]) => `#define FT_CH_${name.toUpperCase()} ${n}`),
    `#define FT_DEFAULT_DETACH_KEYS ${str(DEFAULT_DETACH_KEYS)}`,
    `#define FT_DETACHED_MESSAGE ${bytes(DETACHED_MESSAGE)}`,
    '',
    '#endif',
    '',
  );
  return out.join('\n');
}
