// `enclave session ...`: each command of the table's session group, from its
// parsed line to the API call and the output.
import { createSessionRequest } from '../api/schemas.js';
import { ROUTES } from '../api/routes.js';
import { formatZodError } from '../vocab/errors.js';
import { FLAG_OF as LIMIT_FLAG_OF, LIMITS } from '../vocab/limits.js';
import { UsageError, type Parsed } from './argv.js';
import { callRoute, callText, routePath, socketPath } from './client.js';
import { readSshKey, secretFlags } from './createFlags.js';
import { envEntries } from './envFlags.js';
import { durationSeconds, intFlag, parsePublish, ref, session$ } from './flagValues.js';
import { json, sessionDetails, stateLine } from '../api/render.js';
import { compressionFlag, parseVolumeFlag } from './volume.js';

const FLAG_OF: Record<string, string> = { ...LIMIT_FLAG_OF, env: '--env', auth: '--auth', env_tokens: '--env-token', publish: '--publish', network: '--network', name: '--name', profile: '--profile', init: '--init', volumes: '--volume', idle_timeout_s: '--idle-timeout', ssh_key: '--ssh-key', secret_users: '--auth/--env-token NAME:USERS' };

async function create(p: Parsed, socket: string): Promise<number> {
  const from = p.str('from');
  if (p.bool('no-settings') && from === undefined) throw new UsageError('session create: --no-settings goes with --from');
  const env = envEntries(p.list('env-file'), p.list('env'));
  const network = p.str('network');
  if (network !== undefined && network !== 'bridge' && network !== 'none') throw new UsageError(`--network: '${network}' is not one of bridge, none`);
  const publish = p.list('publish').map(parsePublish);
  const volumes = p.list('volume').map(parseVolumeFlag);
  const auth = p.list('auth');
  const tokens = p.list('env-token');
  const idle = p.str('idle-timeout');
  const sshKey = p.str('ssh-key');
  const body = Object.fromEntries(
    Object.entries({
      name: p.str('name'),
      ...Object.fromEntries(LIMITS.map((r) => [r.key, intFlag(p.str(r.flag), r.flag)])),
      profile: p.str('profile'),
      init: p.str('init'),
      network,
      publish: publish.length ? publish : undefined,
      console: p.bool('console') || undefined,
      env: env.length ? env : undefined,
      ...secretFlags(auth.length ? auth : undefined, tokens.length ? tokens : undefined),
      volumes: volumes.length ? volumes : undefined,
      idle_timeout_s: idle === undefined ? undefined : durationSeconds(idle, '--idle-timeout'),
      ssh_key: sshKey === undefined ? undefined : readSshKey(sshKey),
    }).filter(([, v]) => v !== undefined),
  );
  const checked = createSessionRequest.safeParse(body);
  if (!checked.success) {
    const msg = formatZodError(checked.error).replace(/'(\w+)'/g, (m: string, f: string) => (FLAG_OF[f] ? FLAG_OF[f] : m));
    throw new UsageError(`session create: ${msg}`);
  }
  let s;
  if (from === undefined) s = await callRoute(socket, ROUTES.sessionCreate, { body: checked.data, ...(p.bool('no-wait') ? { query: { no_wait: '1' } } : {}) });
  else {
    // The snapshot's settings, volumes and files; the flags win over its settings.
    const { createFrom } = await import('./restore.js');
    s = await createFrom(socket, from, checked.data, !p.bool('no-settings'));
  }
  process.stdout.write(p.bool('json') ? json(s) : `${s.id}\n`);
  return 0;
}

/** docker exec: -i sends stdin, -t gives a terminal, -u/-w/-e/--env-file; the command follows SESSION. */
async function exec(p: Parsed, socket: string): Promise<number> {
  const id = ref(p.args[0], 'exec');
  const env = envEntries(p.list('env-file'), p.list('env'));
  const target = { command: [...p.trailing], env, cwd: p.str('workdir'), user: p.str('user') };
  if (p.bool('tty')) {
    const { runAttachClient, DEFAULT_DETACH_KEYS } = await import('./attachClient.js');
    return runAttachClient({ socket, session: id, readOnly: false, detachKeys: p.str('detach-keys') ?? DEFAULT_DETACH_KEYS, input: p.bool('interactive'), exec: target });
  }
  if (p.has('detach-keys')) throw new UsageError('session exec: --detach-keys goes with -t', p.command);
  const { runExecClient } = await import('./execClient.js');
  return runExecClient({ socket, session: id, ...target, stdin: p.bool('interactive') ? process.stdin : undefined });
}

export async function sessionCommand(p: Parsed): Promise<number> {
  const socket = socketPath(p.str('socket'));
  const sub = p.command.words[1]!;
  const json$ = p.command.flags.some((f) => f.long === 'json') && p.bool('json');
  switch (sub) {
    case 'create':
      return create(p, socket);
    case 'exec':
      return exec(p, socket);
    case 'list': {
      const all = p.bool('all') ? ('1' as const) : undefined;
      if (json$) process.stdout.write(json(await callRoute(socket, ROUTES.sessionList, { query: { all } })));
      // The table (or the ids) as the daemon renders it: a reply sized for it, the same text the front end prints.
      else process.stdout.write(await callText(socket, routePath(ROUTES.sessionList, { query: { all, format: p.bool('quiet') ? 'ids' : 'text' } })));
      return 0;
    }
    case 'show': {
      const s = await callRoute(socket, ROUTES.sessionShow, session$(ref(p.args[0], sub)));
      process.stdout.write(json$ ? json(s) : sessionDetails(s));
      return 0;
    }
    case 'stop':
    case 'start': {
      const s = await callRoute(socket, sub === 'stop' ? ROUTES.sessionStop : ROUTES.sessionStart, session$(ref(p.args[0], sub)));
      process.stdout.write(json$ ? json(s) : stateLine(s));
      return 0;
    }
    case 'destroy': {
      const id = ref(p.args[0], sub);
      const timeout = intFlag(p.str('timeout'), 'timeout');
      if (p.bool('force') && timeout !== undefined) throw new UsageError('enclave session destroy: --force (SIGKILL at once) and --timeout exclude each other');
      if (timeout !== undefined && timeout > 3600) throw new UsageError(`--timeout: ${timeout} is more than 3600 seconds`);
      await callRoute(socket, ROUTES.sessionDestroy, { ...session$(id), query: { force: p.bool('force') ? '1' : undefined, timeout } });
      return 0;
    }
    case 'stats': {
      const id = p.args[0] === undefined ? undefined : ref(p.args[0], sub);
      const { statsCommand } = await import('./reports.js');
      return statsCommand(socket, id, { watch: p.bool('watch'), json: json$ });
    }
    case 'logs': {
      const { logsCommand } = await import('./reports.js');
      return logsCommand(socket, ref(p.args[0], sub), p.bool('follow'));
    }
    case 'refresh-auth': {
      const r = await callRoute(socket, ROUTES.refreshAuth, session$(ref(p.args[0], sub)));
      if (json$) process.stdout.write(json(r));
      else {
        process.stdout.write(r.refreshed.length ? `refreshed ${r.refreshed.join(', ')} in ${r.id}\n` : `${r.id} declared no secrets the store still has\n`);
        if (r.missing.length) process.stdout.write(`no longer in the store (the session keeps its copy): ${r.missing.join(', ')}\n`);
      }
      return 0;
    }
    case 'snapshot': {
      const id = ref(p.args[0], sub);
      const output = p.str('output');
      if (!output) throw new UsageError('enclave session snapshot: -o FILE is required', p.command);
      const { takeSnapshot } = await import('./snapshot.js');
      await takeSnapshot(socket, id, output, compressionFlag(p.str('compression')), p.bool('with-volumes'));
      return 0;
    }
    case 'publish': {
      const s = await callRoute(socket, ROUTES.portPublish, { ...session$(ref(p.args[0], sub)), body: parsePublish(p.args[1]!) });
      process.stdout.write(json$ ? json(s) : s.network.published.map((x) => `${x.host_ip}:${x.host_port} -> ${x.session_port}/tcp\n`).join(''));
      return 0;
    }
    case 'unpublish': {
      const id = ref(p.args[0], sub);
      const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5})$/.exec(p.args[1]!);
      if (!m) throw new UsageError(`enclave session unpublish: '${p.args[1]!.slice(0, 60)}' is not [127.0.0.1:]HOSTPORT`);
      await callRoute(socket, ROUTES.portUnpublish, { params: { session: id, port: `${m[1] ?? '127.0.0.1'}:${m[2]}` } });
      return 0;
    }
    case 'attach': {
      const { runAttachClient, DEFAULT_DETACH_KEYS } = await import('./attachClient.js');
      return runAttachClient({ socket, session: ref(p.args[0], sub), readOnly: p.bool('ro'), detachKeys: p.str('detach-keys') ?? DEFAULT_DETACH_KEYS, input: true });
    }
    case 'cp': {
      const { parseSide, runCopy } = await import('./copy.js');
      const [src, dst] = p.args.map((a) => {
        const side = parseSide(a);
        if (typeof side === 'string') throw new UsageError(`enclave session cp: ${side}`);
        return side;
      });
      return runCopy({ socket, src: src!, dst: dst!, archive: p.bool('archive') });
    }
    default:
      throw new Error(`no handler for session ${sub}`);
  }
}
