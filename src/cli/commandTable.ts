// The one table of `enclave` commands: their words, arguments, flags and
// help. The parser (argv.ts), the help (help.ts) and the bash and zsh
// completion scripts (completion.ts) are all made from it, so a flag added
// here is parsed, documented and completed at once. Plain data and the limit
// table only: `enclave --help` and completion load it without zod.
import { LIMITS } from '../vocab/limitTable.js';
import type { RouteName } from '../api/routes.js';

/** What a value or an argument completes to. */
export type Complete = 'session' | 'volume' | 'secret' | 'file' | 'dir' | 'command' | readonly string[];

export interface FlagSpec {
  /** The long name, without dashes. */
  long: string;
  /** A one-letter short form (docker's where docker has one). */
  short?: string;
  /** Other long names accepted for it (older spellings). */
  aliases?: readonly string[];
  /** Present when the flag takes a value: its metavariable in help. */
  value?: string;
  /** May be given more than once (a list). */
  multiple?: true;
  help: string;
  complete?: Complete;
}

export interface ArgSpec {
  name: string;
  optional?: true;
  complete?: Complete;
}

export interface CommandSpec {
  /** The words that name it: ['session', 'exec']. */
  words: readonly string[];
  /** Other spellings of its last word (docker's ls, rm). */
  aliases?: readonly string[];
  /** One line, for the command list. */
  summary: string;
  args: readonly ArgSpec[];
  flags: readonly FlagSpec[];
  /** After its arguments, the rest of the line is a command to run (docker exec's COMMAND [ARG...]); `--` is optional. */
  trailing?: { name: string; complete?: Complete };
  /** More lines for `enclave help COMMAND`. */
  details?: string;
  /** Not listed in help (completion's own helper). */
  hidden?: true;
  /**
   * The native front end (native/src/front.c) answers it itself when it knows
   * every flag given; any other line goes to this Node CLI. Its header
   * (native/src/front_table.gen.h) is generated from this table.
   */
  front?: true;
  /**
   * The command is one call of this route (src/cli/routeCommand.ts): its
   * arguments fill the path's parameters in order, its flags the query (GET)
   * or the body, and it prints the reply (`key: value` lines, or --json).
   */
  route?: RouteName;
}

/** Accepted before the command and by every command. */
export const GLOBAL_FLAGS: readonly FlagSpec[] = [
  { long: 'socket', value: 'PATH', help: "the daemon's socket (default $ENCLAVE_SOCKET, else /run/enclave/enclave.sock)", complete: 'file' },
  { long: 'help', short: 'h', help: 'this help' },
];

const SESSION: ArgSpec = { name: 'SESSION', complete: 'session' };
const JSON_FLAG: FlagSpec = { long: 'json', help: 'the API reply as JSON' };
const ENV: FlagSpec = { long: 'env', short: 'e', value: 'K=V', multiple: true, help: 'set a variable (K alone: its value here, as docker does); secrets go through --auth/--env-token' };
const ENV_FILE: FlagSpec = { long: 'env-file', value: 'FILE', multiple: true, help: "variables from a file, docker's format: K=V or K per line, # comments", complete: 'file' };
const COMPRESSION: FlagSpec = { long: 'compression', value: 'zstd|none', help: 'zstd (default) or none', complete: ['zstd', 'none'] };
const DURATION = 'DURATION: 30s, 10m, 2h, 1d; 0 never';

const sessionCmd = (word: string, rest: Omit<CommandSpec, 'words'>): CommandSpec => ({ words: ['session', word], ...rest });

export const COMMANDS: readonly CommandSpec[] = [
  {
    words: ['daemon'],
    summary: 'run the daemon (as root; systemd runs it from the unit)',
    args: [],
    flags: [
      { long: 'config', value: 'FILE', help: 'the config file (TOML)', complete: 'file' },
      { long: 'state-dir', value: 'DIR', help: 'where its database and sessions live', complete: 'dir' },
      { long: 'listen', value: '127.0.0.1:PORT', help: 'also serve the API and the dashboard on this TCP address (token sign-in)' },
      { long: 'cleanup', help: 'remove the bridge and nftables table (no live sessions) and exit' },
    ],
  },
  { words: ['daemon', 'reload'], summary: 'the daemon reads its config file again (also SIGHUP): prints the keys applied and those that need a restart', args: [], flags: [] },
  {
    words: ['session', 'create'],
    summary: 'make a session and start it',
    args: [],
    flags: [
      { long: 'name', value: 'NAME', help: 'its name (unique among yours)' },
      ...LIMITS.map((r): FlagSpec => ({ long: r.flag, value: r.meta, help: `${r.what} (default ${r.default}${r.unit === 'MiB' ? ' MiB' : r.unit === '%' ? '%' : ''})` })),
      { long: 'profile', value: 'PROFILE', help: 'workspace (default: writable root, a container-like capability set), strict, or system (full capabilities over its own namespaces: Docker, nested namespaces, TUN; only where a rule grants it)', complete: ['workspace', 'strict', 'system'] },
      { long: 'init', value: 'INIT', help: 'systemd: boot systemd inside as the init of its own PID namespace (system profile only)', complete: ['systemd'] },
      { long: 'network', value: 'MODE', help: 'bridge (default: its own address on the host bridge) or none', complete: ['bridge', 'none'] },
      { long: 'publish', short: 'p', value: '[127.0.0.1:]HOSTPORT:PORT', multiple: true, help: 'forward a host port to the session' },
      { long: 'volume', short: 'v', value: 'NAME:/PATH[:ro]', multiple: true, help: 'mount a volume', complete: 'volume' },
      ENV,
      ENV_FILE,
      { long: 'auth', value: '[UID:]PROVIDER[:USER,...]', multiple: true, help: "a stored provider token as a file under /run/enclave/auth (:USER,...: users inside who may read it too, group secret-NAME)", complete: 'secret' },
      { long: 'env-token', value: '[UID:]NAME[:USER,...]', multiple: true, help: 'a stored env token as the variable NAME', complete: 'secret' },
      { long: 'console', help: 'start its console shell now (else at the first attach)' },
      { long: 'from', value: 'SNAPSHOT', help: 'restore a snapshot: its files and its settings (a flag wins over them)', complete: 'file' },
      { long: 'no-settings', help: 'with --from: the files only' },
      { long: 'idle-timeout', value: 'DURATION', help: `stop it after this long unused (${DURATION})` },
      { long: 'ssh-key', value: 'FILE.pub', help: "root's authorized key: sshd on port 22 inside (publish it: -p 2222:22)", complete: 'file' },
      { long: 'no-wait', help: 'in a fleet: refuse at once when no node has room (else it is pending until one has)' },
      JSON_FLAG,
    ],
  },
  sessionCmd('list', { front: true, aliases: ['ls'], summary: 'your sessions', args: [], flags: [{ long: 'all', short: 'a', help: "everyone's, if you may see them" }, { long: 'quiet', short: 'q', help: 'ids only' }, { long: 'json', help: 'the API reply: {"sessions": [...]}' }] }),
  sessionCmd('show', { front: true, aliases: ['inspect'], summary: 'one session in detail', args: [SESSION], flags: [JSON_FLAG] }),
  sessionCmd('exec', {
    front: true,
    summary: 'run a command in a session (docker exec)',
    args: [SESSION],
    trailing: { name: 'COMMAND [ARG...]', complete: 'command' },
    flags: [
      { long: 'interactive', short: 'i', help: "keep stdin open: send this terminal's or pipe's input to the command" },
      { long: 'tty', short: 't', help: 'a terminal for the command (-it for an interactive shell)' },
      { long: 'user', short: 'u', value: 'USER[:GROUP]', help: "run as this user of the session (a name or uid, from the session's /etc/passwd)" },
      { long: 'workdir', short: 'w', aliases: ['cwd'], value: 'DIR', help: "start in DIR (default: the user's HOME)", complete: 'dir' },
      ENV,
      ENV_FILE,
      { long: 'detach-keys', value: 'KEYS', help: 'with -t: keys that leave the command running (default ctrl-p,ctrl-q)' },
    ],
    details: 'The command follows SESSION (options go before it); a `--` before the command is optional.\nExits with the command\'s code.',
  }),
  sessionCmd('cp', {
    summary: 'copy files between a session and the host (docker cp)',
    args: [{ name: 'SRC', complete: 'file' }, { name: 'DST', complete: 'file' }],
    flags: [{ long: 'archive', short: 'a', help: "keep owners (the host's into the session, the session's onto the host: root)" }],
    details: 'One of SRC and DST is SESSION:/PATH (SESSION an ID, NAME or UID:NAME); - is a tar on stdout or stdin.\nDirectories are copied recursively, symlinks as symlinks.',
  }),
  sessionCmd('attach', {
    front: true,
    summary: "its console in this terminal (detach with ctrl-p ctrl-q)",
    args: [SESSION],
    flags: [{ long: 'ro', help: 'watch only' }, { long: 'detach-keys', value: 'KEYS', help: 'keys that detach (default ctrl-p,ctrl-q)' }],
  }),
  sessionCmd('stop', { front: true, summary: 'end its processes, store its root layer and /home (name, address, ports, volumes and secrets stay)', args: [SESSION], flags: [JSON_FLAG] }),
  sessionCmd('start', { front: true, summary: 'run a stopped session again from what stop stored', args: [SESSION], flags: [JSON_FLAG] }),
  sessionCmd('destroy', {
    front: true,
    aliases: ['rm'],
    summary: 'remove a session, running or stopped, with its stored files',
    args: [SESSION],
    flags: [
      { long: 'force', short: 'f', help: 'SIGKILL at once' },
      { long: 'timeout', value: 'SECONDS', help: 'SIGKILL after this long (default sessions.stop_grace_ms)' },
    ],
    details: 'Its processes get SIGTERM (and SIGHUP to its terminals), then SIGKILL.',
  }),
  sessionCmd('stats', {
    summary: 'CPU, memory, tasks, network and disk use, from the kernel',
    args: [{ ...SESSION, optional: true }],
    flags: [{ long: 'watch', help: 'redraw every second until Ctrl-C (with --json: one line per reading)' }, JSON_FLAG],
    details: 'Without SESSION: every running session you may see.',
  }),
  sessionCmd('logs', { summary: "the console's output as text (escape sequences stripped)", args: [SESSION], flags: [{ long: 'follow', short: 'f', help: 'stream new output until Ctrl-C' }] }),
  sessionCmd('refresh-auth', { summary: 'rewrite its secret files from the store', args: [SESSION], flags: [JSON_FLAG] }),
  sessionCmd('snapshot', {
    summary: 'its writable root layer, /home and settings to a file, while it runs (frozen)',
    args: [SESSION],
    flags: [{ long: 'output', short: 'o', value: 'FILE', help: 'where to write it (required)', complete: 'file' }, COMPRESSION, { long: 'with-volumes', help: "its volumes' contents too" }],
  }),
  sessionCmd('publish', { summary: 'forward a host port to a running session', args: [SESSION, { name: '[127.0.0.1:]HOSTPORT:PORT' }], flags: [JSON_FLAG] }),
  sessionCmd('unpublish', { summary: 'stop forwarding a host port', args: [SESSION, { name: '[127.0.0.1:]HOSTPORT' }], flags: [] }),
  { words: ['volume', 'create'], summary: 'an ext4 image of MB (the quota), loop-mounted on the host', args: [{ name: 'NAME' }], flags: [{ long: 'size', value: 'MB', help: 'its size' }, JSON_FLAG] },
  { words: ['volume', 'list'], aliases: ['ls'], summary: 'your volumes, their sizes and used bytes', args: [], flags: [{ long: 'json', help: 'the API reply: {"volumes": [...]}' }] },
  { words: ['volume', 'show'], aliases: ['inspect'], summary: 'one volume', args: [{ name: 'NAME', complete: 'volume' }], flags: [JSON_FLAG] },
  { words: ['volume', 'remove'], aliases: ['rm'], summary: 'remove a volume (refused while a live session mounts it)', args: [{ name: 'NAME', complete: 'volume' }], flags: [] },
  { words: ['volume', 'resize'], summary: 'grow a volume, online; never shrinks', args: [{ name: 'NAME', complete: 'volume' }], flags: [{ long: 'size', value: 'MB', help: 'the new size (required)' }, JSON_FLAG] },
  {
    words: ['volume', 'export'],
    summary: "its contents as a tar (refused while a session may write it)",
    args: [{ name: 'NAME', complete: 'volume' }],
    flags: [{ long: 'output', short: 'o', value: 'FILE', help: 'where to write it (required)', complete: 'file' }, COMPRESSION],
  },
  {
    words: ['volume', 'import'],
    summary: 'a new volume from such an archive (FILE read as you), unpacked in a helper session',
    args: [{ name: 'NAME' }, { name: 'FILE', optional: true, complete: 'file' }],
    flags: [{ long: 'input', short: 'i', value: 'FILE', help: 'the archive (instead of the FILE argument)', complete: 'file' }, { long: 'size', value: 'MB', help: 'its size, within your budget' }, JSON_FLAG],
  },
  { words: ['auth', 'set'], summary: 'store a secret: the value from stdin (a hidden prompt on a terminal)', args: [{ name: 'NAME', complete: 'secret' }], flags: [{ long: 'shared', help: '(root) others may use it as 0:NAME' }, JSON_FLAG] },
  { words: ['auth', 'list'], aliases: ['ls'], summary: 'your secrets (names and versions, never values)', args: [], flags: [{ long: 'all', short: 'a', help: "everyone's, if you may see them" }, { long: 'json', help: 'the API reply: {"secrets": [...]}' }] },
  { words: ['auth', 'remove'], aliases: ['rm'], summary: 'remove a secret (sessions keep their copy until destroyed)', args: [{ name: 'NAME', complete: 'secret' }], flags: [JSON_FLAG] },
  { words: ['node', 'list'], aliases: ['ls'], summary: "the fleet's nodes: state (ready, cordoned, unreachable), sessions, capacity", args: [], flags: [{ long: 'json', help: 'the API reply: {"node": ..., "nodes": [...]}' }] },
  { words: ['node', 'cordon'], summary: 'place no new sessions on a node (those it runs stay)', args: [{ name: 'NODE' }], flags: [] },
  { words: ['node', 'uncordon'], summary: 'place new sessions on a node again', args: [{ name: 'NODE' }], flags: [] },
  { words: ['node', 'remove'], aliases: ['rm'], summary: 'remove a node that is gone for good from the fleet (not registered, nothing placed on it)', args: [{ name: 'NODE' }], flags: [{ long: 'json', help: 'the API reply: {"node": ..., "lost": N}' }] },
  { words: ['node', 'drain'], summary: 'cordon a node, move its stopped sessions to other nodes, and list the sessions still on it', args: [{ name: 'NODE' }], flags: [{ long: 'json', help: 'the API reply: {"node": ..., "sessions": [...]}' }] },
  {
    words: ['events'],
    summary: 'the audit trail, one line per event',
    args: [],
    flags: [
      { long: 'session', value: 'SESSION', help: 'only this session', complete: 'session' },
      { long: 'since', value: 'TIME', help: 'ISO 8601, or 30s, 10m, 2h, 7d ago' },
      { long: 'limit', value: 'N', help: 'at most N events' },
      { long: 'action', value: 'ACTION', help: 'an action or a family (session.*)' },
      { long: 'user', value: 'USER', help: 'a uid or user name' },
      { long: 'reads', help: 'allowed reads too' },
      JSON_FLAG,
    ],
  },
  {
    words: ['doctor'],
    summary: 'host checks, database integrity, orphans, lock holders',
    args: [],
    flags: [
      { long: 'config', value: 'FILE', help: 'the config file', complete: 'file' },
      { long: 'state-dir', value: 'DIR', help: 'the state dir', complete: 'dir' },
      { long: 'repair', help: 'remove the orphans it lists, nothing else' },
      JSON_FLAG,
    ],
  },
  { words: ['help'], summary: 'help for a command: enclave help session exec', args: [{ name: 'COMMAND...', optional: true }], flags: [] },
  { words: ['completion'], summary: 'the shell completion script: source <(enclave completion bash)', args: [{ name: 'SHELL', complete: ['bash', 'zsh'] }], flags: [] },
  { words: ['whoami'], summary: 'who the daemon takes you for: uid, gids, and whether by the socket or a token', args: [], flags: [{ long: 'json', help: 'the API reply as JSON' }], route: 'whoami' },
  { words: ['version'], summary: "enclave's version", args: [], flags: [] },
  // Completion's own helper: names of your sessions, volumes or secrets, one per line.
  { words: ['__complete'], summary: 'names for completion', args: [{ name: 'KIND', complete: ['session', 'volume', 'secret'] }], flags: [], hidden: true },
];

/** A command's key: its words joined by a space ("session exec"). */
export const keyOf = (c: CommandSpec): string => c.words.join(' ');

/** Groups: words that only lead to commands ("session", "volume", "auth"). */
export function groups(): Map<string, CommandSpec[]> {
  const out = new Map<string, CommandSpec[]>();
  for (const c of COMMANDS) {
    if (c.words.length < 2 || c.hidden) continue;
    const g = c.words.slice(0, -1).join(' ');
    out.set(g, [...(out.get(g) ?? []), c]);
  }
  return out;
}

export type Lookup = { command: CommandSpec; rest: string[] } | { group: string; word: string | undefined };

/**
 * The command the words name (aliases taken), and the arguments after it.
 * The longest match wins: `daemon reload` over `daemon`.
 */
export function lookup(words: readonly string[]): Lookup {
  let best: { command: CommandSpec; used: number } | undefined;
  for (const c of COMMANDS) {
    const n = c.words.length;
    if (words.length < n || (best && best.used >= n)) continue;
    const match = c.words.every((w, i) => words[i] === w || (i === n - 1 && c.aliases?.includes(words[i]!)));
    if (match) best = { command: c, used: n };
  }
  if (best) return { command: best.command, rest: words.slice(best.used) };
  const g = words[0] ?? '';
  return { group: groups().has(g) ? g : '', word: groups().has(g) ? words[1] : words[0] };
}
