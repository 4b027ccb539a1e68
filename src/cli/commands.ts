// Every `enclave` command that talks to the daemon or the host (loaded by
// main.ts once the command line is parsed against the table). Exit 0 ok,
// 1 error (one line on stderr), 2 usage; `session exec` exits with the
// remote command's code.
import { routeCommand } from './routeCommand.js';
import { ROUTES } from '../api/routes.js';
import { UsageError, type Parsed } from './argv.js';
import { authCommand } from './auth.js';
import { callRoute, socketPath } from './client.js';
import { keyOf } from './commandTable.js';
import { eventsCommand, uidOf } from './events.js';
import { intFlag, ref, sinceTime } from './flagValues.js';
import { json, table } from '../api/render.js';
import { sessionCommand } from './sessionCommands.js';
import { nodeCommand } from './node.js';
import { compressionFlag, volumeCommand } from './volume.js';

async function daemonReload(p: Parsed): Promise<number> {
  {
    const r = await callRoute(socketPath(p.str('socket')), ROUTES.daemonReload, {});
    const list = (keys: string[]) => (keys.length ? keys.join(', ') : 'none');
    process.stdout.write(`applied: ${list(r.applied)}\nneeds a restart: ${list(r.restart_needed)}\n`);
    return 0;
  }
}

async function daemon(p: Parsed): Promise<number> {
  const values = { config: p.str('config'), 'state-dir': p.str('state-dir'), socket: p.str('socket'), listen: p.str('listen'), cleanup: p.bool('cleanup') };
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
    d.reload().catch((e: Error) => d.log.error({ err: e.message }, 'SIGHUP: config not reloaded'));
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

async function doctor(p: Parsed): Promise<number> {
  const values = { json: p.bool('json'), config: p.str('config'), 'state-dir': p.str('state-dir'), socket: p.str('socket'), repair: p.bool('repair') };
  const { loadConfig } = await import('../config/load.js');
  const { stateChecks, repair } = await import('./doctorState.js');
  const config = loadConfig(values.config, { state_dir: values['state-dir'], socket: values.socket });
  const { confinable, rootChecks, runDoctor, viewChecks } = await import('./doctor.js');
  // --socket, else the socket of the --config given, else ENCLAVE_SOCKET, else the default.
  const checks = await runDoctor(socketPath(values.socket ?? (values.config ? config.socket : undefined)));
  checks.push(...rootChecks(config), ...viewChecks(config));
  if (config.cluster?.peer) checks.push(...(await (await import('./doctorFleet.js')).fleetChecks(config)));
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

function events(p: Parsed): Promise<number> {
  const user = p.str('user');
  const uid = user === undefined ? undefined : uidOf(user);
  if (user !== undefined && uid === undefined) throw new UsageError(`--user: '${user.slice(0, 60)}' is neither a uid nor a user of this host`);
  const session = p.str('session');
  const since = p.str('since');
  return eventsCommand({
    socket: socketPath(p.str('socket')),
    session: session ? ref(session, 'events') : undefined,
    since: since ? sinceTime(since) : undefined,
    limit: intFlag(p.str('limit'), 'limit'),
    action: p.str('action'),
    uid,
    reads: p.bool('reads'),
    json: p.bool('json'),
  });
}

/** `enclave __complete KIND`: names for the shell's completion, nothing on any error (it must never print one into a prompt). */
async function complete(p: Parsed): Promise<number> {
  const socket = socketPath(p.str('socket'));
  const kind = p.args[0];
  const names =
    kind === 'session'
      ? (await callRoute(socket, ROUTES.sessionList, { query: {} })).sessions.flatMap((s) => (s.name ? [s.name, s.id] : [s.id]))
      : kind === 'volume'
        ? (await callRoute(socket, ROUTES.volumeList)).volumes.map((v) => v.name)
        : kind === 'secret'
          ? (await callRoute(socket, ROUTES.authList, { query: {} })).secrets.map((s) => s.name)
          : [];
  process.stdout.write(names.map((n) => `${n}\n`).join(''));
  return 0;
}

function main(p: Parsed): Promise<number> {
  if (p.command.route) return routeCommand(p, p.command.route);
  const [group, sub] = p.command.words;
  switch (group) {
    case 'session':
      return sessionCommand(p);
    case 'daemon':
      return sub === 'reload' ? daemonReload(p) : daemon(p);
    case 'doctor':
      return doctor(p);
    case 'events':
      return events(p);
    case 'volume': {
      const json$ = p.command.flags.some((f) => f.long === 'json') && p.bool('json');
      const has = (f: string) => p.command.flags.some((x) => x.long === f);
      return volumeCommand(sub, [...p.args], {
        socket: socketPath(p.str('socket')),
        json: json$,
        size: has('size') ? intFlag(p.str('size'), 'size') : undefined,
        output: has('output') ? p.str('output') : undefined,
        input: has('input') ? p.str('input') : undefined,
        compression: has('compression') ? compressionFlag(p.str('compression')) : undefined,
      });
    }
    case 'auth': {
      const has = (f: string) => p.command.flags.some((x) => x.long === f);
      return authCommand(sub, [...p.args], { socket: socketPath(p.str('socket')), json: has('json') && p.bool('json'), shared: has('shared') && p.bool('shared'), all: has('all') && p.bool('all') });
    }
    case 'node':
      return nodeCommand(sub, [...p.args], { socket: socketPath(p.str('socket')), json: p.command.flags.some((f) => f.long === 'json') && p.bool('json') });
    case '__complete':
      return complete(p).catch(() => 0);
    default:
      throw new Error(`no handler for ${keyOf(p.command)}`);
  }
}

/** Run the command line and exit with its code. */
export function runCli(line: Parsed): void {
  main(line).then(
    (code) => {
      process.stdin.destroy();
      process.exitCode = code;
      // Let stdout drain, then leave even if a handle (stdin on a tty) lingers.
      process.stdout.write('', () => process.exit(code));
    },
    (e: unknown) => {
      const message = e instanceof Error ? e.message : String(e);
      process.stderr.write(`enclave: ${message.trimEnd()}\n`);
      process.exit(e instanceof Error && 'exitCode' in e && typeof e.exitCode === 'number' ? e.exitCode : 1);
    },
  );
}
