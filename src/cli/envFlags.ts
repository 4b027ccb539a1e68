// -e/--env and --env-file as docker reads them: K=V as given, K alone takes
// its value from this process's environment (and is left out when unset),
// an env file is read as the caller, one K=V or K per line, # comments and
// blank lines skipped, leading whitespace dropped, the value kept verbatim.
// Files come first and -e wins over them. Secrets have their own path.
import { readFileSync, statSync } from 'node:fs';
import { looksSecret, SECRET_ENV_HINT } from '../vocab/names.js';
import { UsageError } from './argv.js';

/** Larger env files are refused: they would not fit one exec message (src/sessions/agent.ts) anyway. */
const MAX_ENV_FILE = 1024 * 1024;
/** A variable name -e and --env-file take (also the native front end's: native/src/front_table.gen.h). */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function entry(raw: string, where: string): string | undefined {
  const eq = raw.indexOf('=');
  const name = eq < 0 ? raw : raw.slice(0, eq);
  if (!ENV_NAME.test(name)) throw new UsageError(`${where}: '${name.slice(0, 60)}' is not a variable name (letters, digits, _; not starting with a digit)`);
  if (looksSecret(name)) throw new UsageError(`${where}: ${name} ${SECRET_ENV_HINT}`);
  if (eq >= 0) return raw;
  const value = process.env[name];
  return value === undefined ? undefined : `${name}=${value}`;
}

function fileEntries(path: string): string[] {
  let text: string;
  try {
    if (statSync(path).size > MAX_ENV_FILE) throw new UsageError(`--env-file ${path}: larger than ${MAX_ENV_FILE} bytes`);
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--env-file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'cannot read it'}`);
  }
  const out: string[] = [];
  text.split('\n').forEach((line, i) => {
    const l = line.replace(/\r$/, '').trimStart();
    if (l === '' || l.startsWith('#')) return;
    const e = entry(l, `--env-file ${path}:${i + 1}`);
    if (e !== undefined) out.push(e);
  });
  return out;
}

/** The K=V entries to send, env files first, then -e in order (a later one wins in the session). */
export function envEntries(files: readonly string[], values: readonly string[]): string[] {
  const out = files.flatMap(fileEntries);
  for (const v of values) {
    const e = entry(v, '--env');
    if (e !== undefined) out.push(e);
  }
  return out;
}
