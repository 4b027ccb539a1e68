// The native front end's parser against the Node CLI's (src/cli/argv.ts),
// line by line over a seeded corpus of command lines made from the command
// table: a line the Node CLI refuses (a usage error) or answers with help
// must go to it; a line the front end answers itself must make exactly the
// request the Node CLI's parse of it says. (Its output against a real daemon:
// test/integration/front.test.ts.)
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FRONT, frontBuilt, rng } from './fixtures/front.js';
import { parseLine, type Parsed } from '../../src/cli/argv.js';
import { COMMANDS, GLOBAL_FLAGS, keyOf, lookup } from '../../src/cli/commandTable.js';
import { DEFAULT_DETACH_KEYS, parseDetachKeys } from '../../src/cli/attachClient.js';

const ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', ENCLAVE_FRONT: 'explain', HERE: 'x y' };

/** Every byte but A-Z a-z 0-9 - _ . ~ as %XX, as the front end encodes (and the daemon's URLSearchParams decodes). */
const enc = (s: string) => [...Buffer.from(s)].map((b) => (/[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');

/** The request the Node CLI makes for a parsed line of a command the front end answers (src/cli/sessionCommands.ts). */
function expected(p: Parsed): string {
  const key = keyOf(p.command);
  const ref = p.args[0] ?? '';
  const json = p.command.flags.some((f) => f.long === 'json') && p.bool('json');
  switch (key) {
    case 'session list':
      return `front GET /v1/sessions?${p.bool('all') ? 'all=1&' : ''}format=${json ? 'pretty' : p.bool('quiet') ? 'ids' : 'text'}`;
    case 'session show':
      return `front GET /v1/sessions/${enc(ref)}?format=${json ? 'pretty' : 'text'}`;
    case 'session stop':
    case 'session start':
      return `front POST /v1/sessions/${enc(ref)}/${key.split(' ')[1]}?format=${json ? 'pretty' : 'text'}`;
    case 'session destroy':
      return `front DELETE /v1/sessions/${enc(ref)}${p.bool('force') ? '?force=1' : ''}`;
    case 'session attach':
      keysOk(p);
      return `front WEBSOCKET /v1/sessions/${enc(ref)}/attach?role=${p.bool('ro') ? 'ro' : 'rw'}`;
    case 'session exec': {
      if (p.bool('tty')) keysOk(p);
      const env = p.list('env').flatMap((kv) => (kv.includes('=') ? [kv] : kv in ENV ? [`${kv}=${ENV[kv as keyof typeof ENV]}`] : []));
      const q = [...p.trailing.map((c) => `command=${enc(c)}`), ...env.map((e) => `env=${enc(e)}`), ...(p.has('workdir') ? [`cwd=${enc(p.str('workdir')!)}`] : []), `stdin=${p.bool('interactive') ? 1 : 0}`, ...(p.bool('tty') ? ['tty=1'] : [])];
      return `front WEBSOCKET /v1/sessions/${enc(ref)}/exec?${q.join('&')}`;
    }
  }
  throw new Error(`the front end answered ${key}`);
}

/** The front end answers attach and exec -t only with detach keys the Node CLI takes (it says what is wrong with the others). */
function keysOk(p: Parsed): void {
  parseDetachKeys(p.str('detach-keys') ?? DEFAULT_DETACH_KEYS);
}

const VALUES = ['/tmp', '/a b', 'A=1', 'HERE', 'NOT_HERE', 'GH_TOKEN=x', '1X=2', 'x&y=z+%', '', 'ctrl-a,d', ' Ctrl-P , ctrl-Q', 'ctrl-1', 'ctrl-p,,q', 'x'];
const WORDS = ['web', 's-0123456789', '0:web', 'Bad Name', '-', 'ls', '-l', '--', 'sh', '-c', 'echo "a b"', 'héllo'];

function corpus(n: number): string[][] {
  const random = rng(27);
  const pick = <T,>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const front = COMMANDS.filter((c) => c.front);
  const lines: string[][] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 10 === 9 ? pick(COMMANDS) : pick(front);
    const last = c.aliases?.length && random() < 0.3 ? pick(c.aliases) : c.words.at(-1)!;
    const line = [...c.words.slice(0, -1), last];
    const flags = [...c.flags, ...GLOBAL_FLAGS];
    for (let k = Math.floor(random() * (i % 3 === 0 ? 3 : 7)); k > 0; k--) {
      const r = random();
      if (r < 0.45) {
        const f = pick(flags);
        const short = f.short && random() < 0.5;
        const name = short ? `-${f.short}` : `--${f.aliases?.length && random() < 0.3 ? pick(f.aliases) : f.long}`;
        if (!f.value) line.push(random() < 0.05 ? `${name}=1` : name);
        else if (!short && random() < 0.4) line.push(`${name}=${pick(VALUES)}`);
        else if (short && random() < 0.3) line.push(`${name}${pick(VALUES)}`);
        else line.push(name, pick(VALUES));
      } else if (r < 0.5) line.push(pick(['--nope', '-Z', '-it', '-ai', '-qa', '--json=1']));
      else line.push(pick(WORDS));
    }
    // A third of the lines end with what the command needs (SESSION, a command to run), so many parse.
    if (i % 3 === 0) line.push(...c.args.filter((x) => !x.optional).map(() => pick(['web', 's-0123456789'])), ...(c.trailing ? ['sh', '-c', pick(WORDS)] : []));
    lines.push(line);
  }
  return lines;
}

describe.skipIf(!frontBuilt())('the front end parses as the Node CLI does', () => {
  it('never answers a line the Node CLI refuses, and answers the rest with the request the Node CLI would make', { timeout: 60_000 }, () => {
    let answered = 0;
    const lines = corpus(600);
    for (const line of lines) {
      let parsed: Parsed | undefined;
      try {
        const found = lookup(line);
        if ('command' in found) {
          const p = parseLine(found.command, found.rest);
          if (!p.help) parsed = p;
        }
      } catch {
        parsed = undefined;
      }
      const r = spawnSync(FRONT, line, { env: ENV, encoding: 'utf8' });
      expect(r.status, line.join(' ')).toBe(0);
      const said = r.stdout.trim();
      if (parsed === undefined) expect(said, `${JSON.stringify(line)}: the Node CLI refuses it`).toBe('node');
      else if (said !== 'node') {
        answered++;
        expect(said, JSON.stringify(line)).toBe(expected(parsed));
      }
    }
    // The corpus is not all refusals: a good share is the front end's own.
    expect(answered).toBeGreaterThan(lines.length / 8);
  });
});
