// A command line against its row of the command table: flags (long, short,
// grouped shorts like -it, --flag=value), arguments, and for exec-like
// commands the command to run, which starts at the first word after the
// arguments (docker's rule: options go before it; `--` is optional).
import { GLOBAL_FLAGS, keyOf, type CommandSpec, type FlagSpec } from './commandTable.js';
import { usageLine } from './help.js';

/** Exit code 2; with a command, its usage line and where to read more follow the message. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string, command?: CommandSpec) {
    super(command ? `${message}\nusage: ${usageLine(command)}\nSee 'enclave ${keyOf(command)} --help'.` : message);
  }
}

export class Parsed {
  constructor(
    readonly command: CommandSpec,
    private readonly values: ReadonlyMap<string, string | true | string[]>,
    readonly args: readonly string[],
    /** The command to run (exec), when the command takes one. */
    readonly trailing: readonly string[],
    readonly help: boolean,
  ) {}

  private known(long: string): void {
    // A handler that reads a flag its row does not declare is a bug in the table, not the caller's mistake.
    if (!this.command.flags.some((f) => f.long === long) && !GLOBAL_FLAGS.some((f) => f.long === long)) throw new Error(`${keyOf(this.command)} has no flag --${long}`);
  }
  str(long: string): string | undefined {
    this.known(long);
    const v = this.values.get(long);
    return typeof v === 'string' ? v : undefined;
  }
  bool(long: string): boolean {
    this.known(long);
    return this.values.get(long) === true;
  }
  list(long: string): string[] {
    this.known(long);
    const v = this.values.get(long);
    return Array.isArray(v) ? v : [];
  }
  has(long: string): boolean {
    this.known(long);
    return this.values.has(long);
  }
}

const variadic = (name: string) => name.endsWith('...');

/** Parse `rest` (the words after the command's own) against its row. */
export function parseLine(command: CommandSpec, rest: readonly string[]): Parsed {
  const flags: readonly FlagSpec[] = [...command.flags, ...GLOBAL_FLAGS];
  const values = new Map<string, string | true | string[]>();
  const args: string[] = [];
  let trailing: string[] = [];
  const set = (f: FlagSpec, v: string | true) => {
    if (f.long === 'help') throw new HelpRequest();
    if (f.multiple && typeof v === 'string') values.set(f.long, [...((values.get(f.long) as string[] | undefined) ?? []), v]);
    else values.set(f.long, v);
  };
  const wantsMore = () => command.args.length > args.length || variadic(command.args.at(-1)?.name ?? '');
  try {
    for (let i = 0; i < rest.length; i++) {
      const a = rest[i]!;
      if (a === '--') {
        if (command.trailing) trailing = rest.slice(i + 1);
        else args.push(...rest.slice(i + 1));
        break;
      }
      if (a.startsWith('--')) {
        const eq = a.indexOf('=');
        const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
        const f = flags.find((x) => x.long === name || x.aliases?.includes(name));
        if (!f) throw new UsageError(`unknown flag --${name.slice(0, 60)}`, command);
        if (!f.value) {
          if (eq >= 0) throw new UsageError(`--${name} takes no value`, command);
          set(f, true);
          continue;
        }
        const v = eq >= 0 ? a.slice(eq + 1) : rest[++i];
        if (v === undefined) throw new UsageError(`--${name} needs a value: ${f.value}`, command);
        set(f, v);
        continue;
      }
      if (a.startsWith('-') && a.length > 1) {
        // Grouped shorts: -it; a short that takes a value ends the group (-wDIR or -w DIR).
        for (let j = 1; j < a.length; j++) {
          const f = flags.find((x) => x.short === a[j]);
          if (!f) throw new UsageError(`unknown flag -${a[j]}${a.length > 2 ? ` (in ${a.slice(0, 20)})` : ''}`, command);
          if (!f.value) {
            set(f, true);
            continue;
          }
          const v = j + 1 < a.length ? a.slice(j + 1) : rest[++i];
          if (v === undefined) throw new UsageError(`-${f.short} needs a value: ${f.value}`, command);
          set(f, v);
          break;
        }
        continue;
      }
      if (command.trailing && !wantsMore()) {
        trailing = rest.slice(i);
        break;
      }
      args.push(a);
    }
  } catch (e) {
    if (e instanceof HelpRequest) return new Parsed(command, values, args, trailing, true);
    throw e;
  }
  const required = command.args.filter((x) => !x.optional && !variadic(x.name));
  if (args.length < required.length) throw new UsageError(`missing ${required[args.length]!.name}`, command);
  if (!variadic(command.args.at(-1)?.name ?? '') && args.length > command.args.length) throw new UsageError(`unexpected argument '${args[command.args.length]!.slice(0, 80)}'`, command);
  if (command.trailing && trailing.length === 0) throw new UsageError(`missing ${command.trailing.name}`, command);
  return new Parsed(command, values, args, trailing, false);
}

class HelpRequest extends Error {}
