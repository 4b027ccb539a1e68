// Loads the TOML config, applies command-line overrides, validates with zod.
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { configSchema, type Config } from './schema.js';
import { formatZodError } from '../vocab/errors.js';

export class ConfigError extends Error {}

export interface ConfigOverrides {
  state_dir?: string | undefined;
  socket?: string | undefined;
  listen?: string | undefined;
}

/** Keys of earlier versions that now live elsewhere: [old, new]. */
const MOVED: [string, string, string][] = [
  ['tmpfs', 'tmp_mb', 'limits.tmp_mb'],
  ['tmpfs', 'home_mb', 'limits.home_mb'],
  ['sessions', 'root_size_mb', 'limits.root_mb'],
];

function movedKey(raw: Record<string, unknown>): [string, string] | undefined {
  for (const [table, key, now] of MOVED) {
    const t = raw[table];
    if (t !== null && typeof t === 'object' && key in t) return [`${table}.${key}`, now];
  }
  return undefined;
}

export function parseConfig(text: string, source: string, overrides: ConfigOverrides = {}): Config {
  let raw: unknown;
  try {
    raw = text.trim() === '' ? {} : parseToml(text);
  } catch (e) {
    throw new ConfigError(`${source}: not valid TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  const merged = { ...(raw as Record<string, unknown>) };
  const moved = movedKey(merged);
  if (moved) throw new ConfigError(`${source}: '${moved[0]}' moved to '${moved[1]}' (every session limit's default is in [limits])`);
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) merged[k] = v;
  const result = configSchema.safeParse(merged);
  if (!result.success) throw new ConfigError(`${source}: ${formatZodError(result.error)}`);
  return result.data;
}

export function loadConfig(path: string | undefined, overrides: ConfigOverrides = {}): Config {
  if (!path) return parseConfig('', 'built-in defaults', overrides);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`${path}: cannot read config: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseConfig(text, path, overrides);
}
