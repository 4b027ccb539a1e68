// `enclave auth set|list|remove` and the value prompt. A value is read from
// stdin only (never argv or the environment, which other users can see in
// /proc): on a terminal, a prompt that does not echo; from a pipe, the bytes
// as given, less one trailing newline (so `echo "$T" | enclave auth set X` works).
import { ROUTES } from '../api/routes.js';
import { valueProblem } from '../vocab/names.js';
import { secretRef } from '../vocab/names.js';
import { callRoute, CliError } from './client.js';
import { json, table } from '../api/render.js';

const refs = (ss: { id: string; name: string | null }[]) => ss.map((s) => (s.name ? `${s.name} (${s.id})` : s.id)).join(', ');

function promptHidden(prompt: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    const typed: number[] = [];
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    const done = (e?: CliError) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (e) reject(e);
      else resolve(Buffer.from(typed));
    };
    const onData = (chunk: Buffer) => {
      for (const b of chunk) {
        if (b === 0x0d || b === 0x0a) return done();
        if (b === 0x03) return done(new CliError('cancelled', 130));
        if (b === 0x04 && typed.length === 0) return done(new CliError('no value given'));
        if (b === 0x7f || b === 0x08) typed.pop();
        else typed.push(b);
      }
    };
    stdin.on('data', onData);
  });
}

async function readValue(name: string): Promise<Buffer> {
  if (process.stdin.isTTY) return promptHidden(`value for ${name} (not echoed): `);
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const all = Buffer.concat(chunks);
  return all.length > 0 && all[all.length - 1] === 0x0a ? all.subarray(0, all.length - 1) : all;
}

function checkedName(raw: string | undefined, cmd: string): string {
  if (!raw) throw new CliError(`enclave auth ${cmd}: missing NAME (a provider like github, or an env token like OPENAI_API_KEY)`, 2);
  const r = secretRef.safeParse(raw);
  if (!r.success) throw new CliError(`enclave auth ${cmd}: '${raw.slice(0, 130)}' ${r.error.issues[0]?.message ?? 'is not a secret name'}`, 2);
  return r.data;
}

export async function authCommand(sub: string | undefined, positionals: string[], opts: { socket: string; json: boolean; shared?: boolean | undefined; all: boolean }): Promise<number> {
  switch (sub) {
    case 'set': {
      const name = checkedName(positionals[0], 'set');
      const value = await readValue(name);
      const problem = valueProblem(value);
      if (problem) throw new CliError(`enclave auth set ${name}: ${problem}`);
      const s = await callRoute(opts.socket, ROUTES.authSet, { params: { secret: name }, body: { value_base64: value.toString('base64'), ...(opts.shared ? { shared: true } : {}) } });
      if (opts.json) process.stdout.write(json(s));
      else {
        process.stdout.write(`${s.created ? 'set' : 'rotated'} ${s.name} (${s.kind === 'provider' ? 'provider token' : 'env token'}, version ${s.version}${s.shared ? ', shared: others use it as ' + `${s.owner_uid}:${s.name}` : ''})\n`);
        if (s.stale_sessions.length > 0) {
          process.stdout.write(`still holding the old value: ${refs(s.stale_sessions)}\n  update them with: enclave session refresh-auth SESSION\n`);
        }
      }
      return 0;
    }
    case 'list': {
      const r = await callRoute(opts.socket, ROUTES.authList, { query: opts.all ? { all: '1' } : {} });
      if (opts.json) process.stdout.write(json(r));
      else
        process.stdout.write(
          table(
            ['NAME', 'OWNER', 'KIND', 'SHARED', 'VERSION', 'SET', 'ROTATED', 'USED BY'],
            r.secrets.map((s) => [s.name, `uid ${s.owner_uid}`, s.kind, s.shared ? 'yes' : 'no', String(s.version), s.set_at, s.rotated_at ?? '-', String(s.used_by)]),
          ),
        );
      return 0;
    }
    case 'remove': {
      const name = checkedName(positionals[0], 'remove');
      const s = await callRoute(opts.socket, ROUTES.authRemove, { params: { secret: name } });
      if (opts.json) process.stdout.write(json(s));
      else {
        process.stdout.write(`removed ${s.name}\n`);
        if (s.still_held_by.length > 0) process.stdout.write(`sessions that keep their copy until destroyed: ${refs(s.still_held_by)}\n`);
      }
      return 0;
    }
    default:
      throw new Error(`no handler for auth ${sub ?? ''}`);
  }
}

