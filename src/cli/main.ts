#!/usr/bin/env node
// The `enclave` command's entry: help and an unknown command are answered
// from the usage text alone; anything else loads the commands (zod, the
// clients) first. Keeps `enclave --help` at the cost of Node's own start.
import { USAGE } from './usage.js';

/** The top-level commands that commands.ts dispatches (its switch). */
const COMMANDS = new Set(['session', 'daemon', 'doctor', 'events', 'volume', 'auth']);

const argv = process.argv.slice(2);
const cmd = argv[0] === '--socket' ? argv[2] : argv[0];
if (cmd === undefined || cmd === 'help' || cmd === '--help' || cmd === '-h') {
  process.stdout.write(USAGE, () => process.exit(cmd === undefined ? 2 : 0));
} else if (!COMMANDS.has(cmd)) {
  process.stderr.write(`enclave: unknown command '${cmd}'\n\n${USAGE.trimEnd()}\n`, () => process.exit(2));
} else {
  const { runCli } = await import('./commands.js');
  runCli(argv);
}
