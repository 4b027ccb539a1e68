// Every `enclave` command (loaded by main.ts once the command is known).
// Exit 0 ok, 1 error (one line on stderr), 2 usage; `session exec` exits
// with the remote command's code.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { z } from 'zod';
import { formatZodError } from '../vocab/errors.js';
import { createSessionRequest, sessionRef } from '../api/schemas.js';
import { ROUTES } from '../api/routes.js';
import { looksSecret, SECRET_ENV_HINT } from '../vocab/names.js';
import { FLAG_OF as LIMIT_FLAG_OF, LIMITS } from '../vocab/limits.js';
import { authCommand } from './auth.js';
import { eventsCommand, uidOf } from './events.js';
import { readSshKey, secretFlags } from './createFlags.js';
import { callRoute, CliError, socketPath } from './client.js';
import { json, sessionDetails, sessionTable, table } from './output.js';
import { compressionFlag, parseVolumeFlag, volumeCommand } from './volume.js';
import { USAGE } from './usage.js';

class UsageError extends CliError {
  constructor(message: string) {
    super(message, 2);
  }
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, positionals = true) {
  try {
    return parseArgs({ args, options: { socket: { type: 'string' }, ...options }, allowPositionals: positionals, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]}\n\n${USAGE}`);
  }
}

function ref(value: string | undefined, cmd: string): string {
  if (!value) throw new UsageError(`enclave session ${cmd}: missing session ID or NAME`);
  const r = sessionRef.safeParse(value);
  if (!r.success) throw new UsageError(`enclave session ${cmd}: '${value}' is neither a session id (s-xxxxxxxxxx), a valid name, nor UID:NAME`);
  return value;
}

const session$ = (id: string) => ({ params: { session: id } });

function intFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = z.coerce.number().int().safeParse(value);
  if (!n.success || !/^\d+$/.test(value)) throw new UsageError(`--${flag}: '${value}' is not a whole number`);
  return n.data;
}

/** 127.0.0.1:8080:80 (or 8080:80, on 127.0.0.1). */
function parsePublish(spec: string): { host_ip: string; host_port: number; session_port: number } {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})$/.exec(spec);
  if (!m) throw new UsageError(`--publish: '${spec}' is not [127.0.0.1:]HOSTPORT:SESSIONPORT`);
  return { host_ip: m[1] ?? '127.0.0.1', host_port: Number(m[2]), session_port: Number(m[3]) };
}

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/** A duration flag: 30s, 10m, 2h, 1d, or 0 (never). */
function durationSeconds(v: string, flag: string): number {
  if (v === '0') return 0;
  const m = /^(\d{1,7})([smhd])$/.exec(v);
  if (!m) throw new UsageError(`${flag}: '${v.slice(0, 40)}' is not a duration like 30s, 10m, 2h, 1d (or 0 for never)`);
  return Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS];
}

/** --since: an ISO 8601 time, or a duration ago (30s, 10m, 2h, 7d). */
function sinceTime(v: string): string {
  const m = /^(\d+)([smhd])$/.exec(v);
  if (m) return new Date(Date.now() - Number(m[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[m[2] as 's' | 'm' | 'h' | 'd']).toISOString();
  if (!Number.isNaN(Date.parse(v)) && /^\d{4}-\d{2}-\d{2}T/.test(v)) return new Date(v).toISOString();
  throw new UsageError(`--since: '${v}' is neither an ISO 8601 time (2026-12-02T10:00:00Z) nor a duration like 30s, 10m, 2h, 7d`);
}

/** --env K=V values, checked before they are sent: secrets have their own path. */
function envFlags(values: string[] | undefined): string[] {
  for (const e of values ?? []) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(e)) throw new UsageError(`--env: '${e}' is not NAME=VALUE`);
    const name = e.slice(0, e.indexOf('='));
    if (looksSecret(name)) throw new UsageError(`--env: ${name} ${SECRET_ENV_HINT}`);
  }
  return values ?? [];
}

const FLAG_OF: Record<string, string> = { ...LIMIT_FLAG_OF, env: '--env', auth: '--auth', env_tokens: '--env-token', publish: '--publish', network: '--network', name: '--name', profile: '--profile', volumes: '--volume', idle_timeout_s: '--idle-timeout', ssh_key: '--ssh-key', secret_users: '--auth/--env-token NAME:USERS' };

/** Every limit of the table is a string flag of session create. */
const LIMIT_OPTIONS = Object.fromEntries(LIMITS.map((r) => [r.flag, { type: 'string' as const }]));

async function session(sub: string | undefined, rest: string[]): Promise<number> {
  switch (sub) {
    case 'create': {
      const { values } = parse(
        rest,
        {
          name: { type: 'string' },
          ...LIMIT_OPTIONS,
          profile: { type: 'string' },
          network: { type: 'string' },
          publish: { type: 'string', multiple: true },
          console: { type: 'boolean' },
          env: { type: 'string', multiple: true },
          auth: { type: 'string', multiple: true },
          'env-token': { type: 'string', multiple: true },
          volume: { type: 'string', multiple: true },
          from: { type: 'string' },
          'idle-timeout': { type: 'string' },
          'no-settings': { type: 'boolean' },
          'ssh-key': { type: 'string' },
          json: { type: 'boolean' },
        },
        false,
      );
      if (values['no-settings'] && values.from === undefined) throw new UsageError('session create: --no-settings goes with --from');
      const env = envFlags(values.env);
      if (values.network !== undefined && values.network !== 'bridge' && values.network !== 'none') {
        throw new UsageError(`--network: '${values.network}' is not one of bridge, none`);
      }
      const publish = (values.publish ?? []).map(parsePublish);
      const volumes = (values.volume ?? []).map(parseVolumeFlag);
      const body = Object.fromEntries(
        Object.entries({
          name: values.name,
          ...Object.fromEntries(LIMITS.map((r) => [r.key, intFlag((values as Record<string, string | undefined>)[r.flag], r.flag)])),
          profile: values.profile,
          network: values.network,
          publish: publish.length ? publish : undefined,
          console: values.console,
          env: env.length ? env : undefined,
          ...secretFlags(values.auth, values['env-token']),
          volumes: volumes.length ? volumes : undefined,
          idle_timeout_s: values['idle-timeout'] === undefined ? undefined : durationSeconds(values['idle-timeout'], '--idle-timeout'),
          ssh_key: values['ssh-key'] === undefined ? undefined : readSshKey(values['ssh-key']),
        }).filter(([, v]) => v !== undefined),
      );
      const checked = createSessionRequest.safeParse(body);
      if (!checked.success) {
        const msg = formatZodError(checked.error).replace(/'(\w+)'/g, (m: string, f: string) => (FLAG_OF[f] ? FLAG_OF[f] : m));
        throw new UsageError(`session create: ${msg}`);
      }
      let s;
      if (values.from === undefined) s = await callRoute(socketPath(values.socket), ROUTES.sessionCreate, { body: checked.data });
      else {
        // The snapshot's settings, volumes and files; the flags win over its settings.
        const { createFrom } = await import('./restore.js');
        s = await createFrom(socketPath(values.socket), values.from, checked.data, !values['no-settings']);
      }
      process.stdout.write(values.json ? json(s) : `${s.id}\n`);
      return 0;
    }
    case 'list': {
      const { values } = parse(rest, { all: { type: 'boolean' }, json: { type: 'boolean' } }, false);
      const r = await callRoute(socketPath(values.socket), ROUTES.sessionList, { query: values.all ? { all: '1' } : {} });
      process.stdout.write(values.json ? json(r.sessions) : sessionTable(r.sessions));
      return 0;
    }
    case 'show': {
      const { values, positionals } = parse(rest, { json: { type: 'boolean' } });
      const id = ref(positionals[0], 'show');
      const s = await callRoute(socketPath(values.socket), ROUTES.sessionShow, session$(id));
      process.stdout.write(values.json ? json(s) : sessionDetails(s));
      return 0;
    }
    case 'stop':
    case 'start': {
      const { values, positionals } = parse(rest, { json: { type: 'boolean' } });
      const id = ref(positionals[0], sub);
      const s = await callRoute(socketPath(values.socket), sub === 'stop' ? ROUTES.sessionStop : ROUTES.sessionStart, session$(id));
      process.stdout.write(values.json ? json(s) : `${s.id} ${s.state}\n`);
      return 0;
    }
    case 'destroy': {
      const { values, positionals } = parse(rest, { force: { type: 'boolean' }, timeout: { type: 'string' } });
      const id = ref(positionals[0], 'destroy');
      const timeout = intFlag(values.timeout, 'timeout');
      if (values.force && timeout !== undefined) throw new UsageError('enclave session destroy: --force (SIGKILL at once) and --timeout exclude each other');
      if (timeout !== undefined && timeout > 3600) throw new UsageError(`--timeout: ${timeout} is more than 3600 seconds`);
      await callRoute(socketPath(values.socket), ROUTES.sessionDestroy, { ...session$(id), query: { force: values.force ? '1' : undefined, timeout } });
      return 0;
    }
    case 'stats': {
      const { values, positionals } = parse(rest, { watch: { type: 'boolean' }, json: { type: 'boolean' } });
      const id = positionals[0] === undefined ? undefined : ref(positionals[0], 'stats');
      const { statsCommand } = await import('./reports.js');
      return statsCommand(socketPath(values.socket), id, { watch: values.watch ?? false, json: values.json ?? false });
    }
    case 'logs': {
      const { values, positionals } = parse(rest, { follow: { type: 'boolean', short: 'f' } });
      const id = ref(positionals[0], 'logs');
      const { logsCommand } = await import('./reports.js');
      return logsCommand(socketPath(values.socket), id, values.follow ?? false);
    }
    case 'refresh-auth': {
      const { values, positionals } = parse(rest, { json: { type: 'boolean' } });
      const id = ref(positionals[0], 'refresh-auth');
      const r = await callRoute(socketPath(values.socket), ROUTES.refreshAuth, session$(id));
      if (values.json) process.stdout.write(json(r));
      else {
        process.stdout.write(r.refreshed.length ? `refreshed ${r.refreshed.join(', ')} in ${r.id}
` : `${r.id} declared no secrets the store still has
`);
        if (r.missing.length) process.stdout.write(`no longer in the store (the session keeps its copy): ${r.missing.join(', ')}
`);
      }
      return 0;
    }
    case 'snapshot': {
      const { values, positionals } = parse(rest, { output: { type: 'string', short: 'o' }, compression: { type: 'string' }, 'with-volumes': { type: 'boolean' } });
      const id = ref(positionals[0], 'snapshot');
      if (!values.output) throw new UsageError('enclave session snapshot: -o FILE is required');
      const { takeSnapshot } = await import('./snapshot.js');
      await takeSnapshot(socketPath(values.socket), id, values.output, compressionFlag(values.compression), values['with-volumes'] ?? false);
      return 0;
    }
    case 'publish': {
      const { values, positionals } = parse(rest, { json: { type: 'boolean' } });
      const id = ref(positionals[0], 'publish');
      if (!positionals[1]) throw new UsageError('enclave session publish: missing [127.0.0.1:]HOSTPORT:SESSIONPORT');
      const s = await callRoute(socketPath(values.socket), ROUTES.portPublish, { ...session$(id), body: parsePublish(positionals[1]) });
      process.stdout.write(values.json ? json(s) : s.network.published.map((p) => `${p.host_ip}:${p.host_port} -> ${p.session_port}/tcp\n`).join(''));
      return 0;
    }
    case 'unpublish': {
      const { values, positionals } = parse(rest, {});
      const id = ref(positionals[0], 'unpublish');
      const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5})$/.exec(positionals[1] ?? '');
      if (!m) throw new UsageError(`enclave session unpublish: '${positionals[1] ?? ''}' is not [127.0.0.1:]HOSTPORT`);
      const addr = `${m[1] ?? '127.0.0.1'}:${m[2]}`;
      await callRoute(socketPath(values.socket), ROUTES.portUnpublish, { params: { session: id, port: addr } });
      return 0;
    }
    case 'attach': {
      const { values, positionals } = parse(rest, { ro: { type: 'boolean' }, 'detach-keys': { type: 'string' } });
      const id = ref(positionals[0], 'attach');
      const { runAttachClient } = await import('./attachClient.js');
      return runAttachClient({ socket: socketPath(values.socket), session: id, readOnly: values.ro ?? false, detachKeys: values['detach-keys'] ?? 'ctrl-p,ctrl-q' });
    }
    case 'cp': {
      const { values, positionals } = parse(rest, { archive: { type: 'boolean', short: 'a' } });
      if (positionals.length !== 2) throw new UsageError('enclave session cp: give SRC and DST, one of them SESSION:/PATH, e.g. enclave session cp web:/etc/hosts ./hosts');
      const { parseSide, runCopy } = await import('./copy.js');
      const [src, dst] = positionals.map((p) => {
        const side = parseSide(p);
        if (typeof side === 'string') throw new UsageError(`enclave session cp: ${side}`);
        return side;
      });
      return runCopy({ socket: socketPath(values.socket), src: src!, dst: dst!, archive: values.archive ?? false });
    }
    case 'exec': {
      const dash = rest.indexOf('--');
      if (dash < 0) throw new UsageError('enclave session exec: put the command after "--", e.g. enclave session exec S -- ls -la');
      const { values, positionals } = parse(rest.slice(0, dash), { env: { type: 'string', multiple: true }, cwd: { type: 'string' }, tty: { type: 'boolean' } });
      const id = ref(positionals[0], 'exec');
      if (positionals.length > 1) throw new UsageError(`enclave session exec: unexpected '${positionals[1]}' before "--"`);
      const command = rest.slice(dash + 1);
      if (command.length === 0) throw new UsageError('enclave session exec: no command after "--"');
      envFlags(values.env);
      if (values.tty) {
        const { runAttachClient } = await import('./attachClient.js');
        return runAttachClient({ socket: socketPath(values.socket), session: id, readOnly: false, detachKeys: 'ctrl-p,ctrl-q', exec: { command, env: values.env ?? [], cwd: values.cwd } });
      }
      const { runExecClient } = await import('./execClient.js');
      return runExecClient({ socket: socketPath(values.socket), session: id, command, env: values.env ?? [], cwd: values.cwd });
    }
    default:
      throw new UsageError(sub ? `unknown session command '${sub}'\n\n${USAGE}` : USAGE);
  }
}

async function daemon(rest: string[]): Promise<number> {
  if (rest[0] === 'reload') {
    const { values } = parse(rest.slice(1), {}, false);
    const r = await callRoute(socketPath(values.socket), ROUTES.daemonReload, {});
    const list = (keys: string[]) => (keys.length ? keys.join(', ') : 'none');
    process.stdout.write(`applied: ${list(r.applied)}\nneeds a restart: ${list(r.restart_needed)}\n`);
    return 0;
  }
  const { values } = parse(rest, { config: { type: 'string' }, 'state-dir': { type: 'string' }, listen: { type: 'string' }, cleanup: { type: 'boolean' } }, false);
  const { loadConfig } = await import('../config/load.js');
  const { startDaemon, cleanupHost } = await import('../daemon/main.js');
  const overrides = { state_dir: values['state-dir'], socket: values.socket, listen: values.listen };
  const config = loadConfig(values.config, overrides);
  if (values.cleanup) {
    const lxcfs = await cleanupHost(config);
    process.stdout.write(`removed bridge ${config.network.bridge} and nftables table inet ${config.network.table}\n`);
    for (const line of lxcfs) process.stdout.write(`${line}\n`);
    return 0;
  }
  const d = await startDaemon(config, () => loadConfig(values.config, overrides));
  process.on('SIGHUP', () => {
    try {
      d.reload();
    } catch (e) {
      d.log.error({ err: (e as Error).message }, 'SIGHUP: config not reloaded');
    }
  });
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      d.log.info({ signal: sig }, 'signal received');
      resolve();
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  await d.stop();
  return 0;
}

async function doctor(rest: string[]): Promise<number> {
  const { values } = parse(rest, { json: { type: 'boolean' }, config: { type: 'string' }, 'state-dir': { type: 'string' }, repair: { type: 'boolean' } }, false);
  const { loadConfig } = await import('../config/load.js');
  const { stateChecks, repair } = await import('./doctorState.js');
  const config = loadConfig(values.config, { state_dir: values['state-dir'], socket: values.socket });
  const { confinable, rootChecks, runDoctor, viewChecks } = await import('./doctor.js');
  // --socket, else the socket of the --config given, else ENCLAVE_SOCKET, else the default.
  const checks = await runDoctor(socketPath(values.socket ?? (values.config ? config.socket : undefined)));
  checks.push(...rootChecks(config), ...viewChecks(config));
  const state = stateChecks(config);
  checks.push(...state.checks);
  const ok = confinable(checks);
  let left: string[] = [];
  if (values.repair) left = repair(config, state.orphans);
  if (values.json) process.stdout.write(json({ confinable: ok, checks, ...(values.repair ? { repaired: state.orphans.length - left.length, left } : {}) }));
  else {
    process.stdout.write(table(['CHECK', 'RESULT', 'DETAIL'], checks.map((c) => [c.name, c.ok ? 'ok' : c.required ? 'FAIL' : 'warn', c.detail])));
    process.stdout.write(ok ? 'sessions can be confined on this host\n' : 'sessions CANNOT be confined on this host\n');
    if (values.repair) {
      for (const o of state.orphans) if (!left.includes(`${o.kind} ${o.ref}`)) process.stdout.write(`removed orphan ${o.kind} ${o.ref}\n`);
      for (const l of left) process.stdout.write(`could not remove ${l}\n`);
      if (state.orphans.length === 0) process.stdout.write('nothing to repair\n');
    }
  }
  return ok && left.length === 0 ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
  // --socket may also come before the command.
  const args = [...argv];
  const globalSocket = args[0] === '--socket' ? (args.splice(0, 2)[1] ?? '') : undefined;
  if (globalSocket !== undefined) process.env.ENCLAVE_SOCKET = globalSocket;
  const [cmd, ...rest] = args;
  switch (cmd) {
    case 'session':
      return session(rest[0], rest.slice(1));
    case 'daemon':
      return daemon(rest);
    case 'doctor':
      return doctor(rest);
    case 'events': {
      const { values } = parse(rest, { session: { type: 'string' }, since: { type: 'string' }, limit: { type: 'string' }, action: { type: 'string' }, user: { type: 'string' }, reads: { type: 'boolean' }, json: { type: 'boolean' } }, false);
      const uid = values.user === undefined ? undefined : uidOf(values.user);
      if (values.user !== undefined && uid === undefined) throw new UsageError(`--user: '${values.user}' is neither a uid nor a user of this host`);
      return eventsCommand({
        socket: socketPath(values.socket),
        session: values.session ? ref(values.session, 'events') : undefined,
        since: values.since ? sinceTime(values.since) : undefined,
        limit: intFlag(values.limit, 'limit'),
        action: values.action,
        uid,
        reads: values.reads ?? false,
        json: values.json ?? false,
      });
    }
    case 'volume': {
      const { values, positionals } = parse(rest.slice(1), { json: { type: 'boolean' }, size: { type: 'string' }, output: { type: 'string', short: 'o' }, input: { type: 'string', short: 'i' }, compression: { type: 'string' } });
      return volumeCommand(rest[0], positionals, {
        socket: socketPath(values.socket),
        json: values.json ?? false,
        size: intFlag(values.size, 'size'),
        output: values.output,
        input: values.input,
        compression: compressionFlag(values.compression),
      });
    }
    case 'auth': {
      const { values, positionals } = parse(rest.slice(1), { json: { type: 'boolean' }, shared: { type: 'boolean' }, all: { type: 'boolean' } });
      return authCommand(rest[0], positionals, { socket: socketPath(values.socket), json: values.json ?? false, shared: values.shared, all: values.all ?? false });
    }
    default:
      throw new UsageError(`unknown command '${cmd}'\n\n${USAGE}`);
  }
}

/** Run the command line and exit with its code. */
export function runCli(argv: string[]): void {
  main(argv).then(
    (code) => {
      process.stdin.destroy();
      process.exitCode = code;
      // Let stdout drain, then leave even if a handle (stdin on a tty) lingers.
      process.stdout.write('', () => process.exit(code));
    },
    (e: unknown) => {
      const message = e instanceof Error ? e.message : String(e);
      process.stderr.write(`enclave: ${message.trimEnd()}\n`);
      process.exit(e instanceof CliError ? e.exitCode : 1);
    },
  );
}
