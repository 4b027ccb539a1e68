// `enclave doctor`: can sessions be confined on this host? Every check is a
// real probe, not a guess from version strings alone.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { dirname } from 'node:path';
import type { Config } from '../config/schema.js';
import { detectCgroupLayout } from '../isolation/cgroups.js';
import { findLxcfs, LXCFS_BINARY, lxcfsMounted, lxcfsPaths, notServing } from '../isolation/lxcfs.js';
import { addon, helperPaths } from '../native/addon.js';
import { ROUTES } from '../api/routes.js';
import { callRoute } from './client.js';

export interface Check {
  name: string;
  ok: boolean;
  /** A failed required check means sessions cannot be confined here. */
  required: boolean;
  detail: string;
}

function kernelAtLeast(major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release());
  if (!m) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

function helperCheck(name: string, path: string): Check {
  if (!existsSync(path)) return { name, ok: false, required: true, detail: `${path} is missing: run "npm ci" (builds native/)` };
  const st = statSync(path);
  // Root-owned and read-only: never writable or replaceable (CVE-2019-5736 class).
  if (st.uid !== 0 || (st.mode & 0o222) !== 0) {
    return { name, ok: false, required: true, detail: `${path} must be owned by root and read-only (mode ${(st.mode & 0o7777).toString(8)}, uid ${st.uid}); run "npm run build"` };
  }
  try {
    accessSync(path, constants.X_OK);
  } catch {
    return { name, ok: false, required: true, detail: `${path} is not executable` };
  }
  return { name, ok: true, required: true, detail: path };
}

export async function runDoctor(socket: string): Promise<Check[]> {
  const checks: Check[] = [];
  const root = process.getuid?.() === 0;
  checks.push({ name: 'root', ok: root, required: true, detail: root ? 'running as root' : 'the daemon and this probe need root' });
  checks.push({
    name: 'kernel',
    ok: kernelAtLeast(5, 11),
    required: true,
    detail: `${release()} (needs 5.11+: openat2, pidfd, close_range CLOEXEC, TIOCGPTPEER)`,
  });
  const init = helperCheck('helper enclave-init', helperPaths.init);
  checks.push(init);

  if (init.ok && root) {
    // The real probe: clone with every namespace flag a session uses.
    const p = spawnSync(helperPaths.init, ['--probe'], { encoding: 'utf8', timeout: 5000 });
    const ok = p.status === 0 && p.stdout.trim() === 'ok';
    checks.push({
      name: 'namespaces',
      ok,
      required: true,
      detail: ok ? 'user, pid, mount, net, uts, ipc, cgroup namespaces; capability drop; seccomp filter' : `cannot confine a session: ${(p.stdout || p.stderr || String(p.error ?? '')).trim().replace(/\t/g, ' ')}`,
    });
  }
  if (root) {
    // Bridge networking's firewall goes through libnftables in the daemon: a read-only command proves it loads and answers.
    const nft = await addon()
      .nftApply('list tables\n')
      .then(() => undefined, (e: Error) => e.message.trim());
    checks.push({ name: 'nftables', ok: nft === undefined, required: false, detail: nft ?? 'libnftables answers (bridge networking can be firewalled)' });
  }
  try {
    const layout = detectCgroupLayout();
    const v1 = [...layout.v1.keys()].sort().join(',');
    const ok = layout.mode === 'unified' ? layout.v2 !== null : layout.v1.has('pids') && layout.v1.has('memory');
    checks.push({
      name: 'cgroups',
      ok,
      required: true,
      detail: `${layout.mode}${v1 ? ` (v1: ${v1})` : ''}${layout.v2 ? ` (v2: ${layout.v2})` : ''}${ok ? '' : ': the pids and memory controllers are needed'}`,
    });
  } catch (e) {
    checks.push({ name: 'cgroups', ok: false, required: true, detail: `cannot read the cgroup layout: ${(e as Error).message}` });
  }
  try {
    const h = await callRoute(socket, ROUTES.health);
    checks.push({ name: 'daemon', ok: true, required: false, detail: `reachable at ${socket} (pid ${h.pid}, ${h.sessions} live sessions)` });
  } catch (e) {
    checks.push({ name: 'daemon', ok: false, required: false, detail: (e as Error).message });
  }
  return checks;
}

/** Nearest existing directory of a path (the state dir may not exist yet). */
function existingAncestor(path: string): string {
  let p = path;
  while (!existsSync(p) && p !== '/') p = dirname(p);
  return p;
}

/** The session root: a warning for the host's whole "/", a real idmap probe of each layer's filesystem. */
export function rootChecks(config: Config): Check[] {
  const rootfs = config.sessions.rootfs;
  if (rootfs === '/') {
    return [{ name: 'rootfs', ok: false, required: false, detail: 'sessions.rootfs is the host\'s whole "/": sessions read every world-readable host file and reach every world-writable UNIX socket; use "minimal" (the default) or a root directory' }];
  }
  const layers = rootfs === 'minimal' ? ['/usr', existingAncestor(config.state_dir)] : [rootfs];
  return layers.map((path) => {
    if (!existsSync(helperPaths.init) || process.getuid?.() !== 0) return { name: `idmap ${path}`, ok: false, required: true, detail: 'not probed: needs root and the helper' };
    const p = spawnSync(helperPaths.init, ['--probe-idmap', path], { encoding: 'utf8', timeout: 5000 });
    const ok = p.status === 0 && p.stdout.trim() === 'ok';
    const detail = ok ? `idmapped mounts work on ${path} (layers of the session root)` : `cannot idmap ${path} into a session (kernel 5.12+, and a filesystem that supports it: ext4, xfs, btrfs, tmpfs 6.3+): ${(p.stdout || p.stderr).trim().replace(/\t/g, ' ')}`;
    return { name: `idmap ${path}`, ok, required: true, detail };
  });
}

export function confinable(checks: Check[]): boolean {
  return checks.every((c) => c.ok || !c.required);
}

/**
 * What sessions are shown of themselves: lxcfs (required when
 * sessions.lxcfs is "required": creates are refused without it; with "on"
 * sessions are made with the host's numbers instead) and its state,
 * and the cpuset that makes a CPU limit a CPU count.
 */
export function viewChecks(config: Config): Check[] {
  const checks: Check[] = [];
  if (config.sessions.lxcfs === 'off') {
    checks.push({ name: 'lxcfs', ok: true, required: false, detail: 'sessions.lxcfs = "off": sessions read the kernel\'s /proc, with the host\'s memory, CPUs, uptime and load' });
  } else {
    const missing = [LXCFS_BINARY, '/dev/fuse'].filter((p) => !existsSync(p));
    const paths = lxcfsPaths(config.state_dir);
    const found = findLxcfs(paths);
    const why = found ? notServing(paths.mount) : undefined;
    const state = found
      ? why === undefined ? `serving on ${paths.mount} (pid ${found.pid})` : `pid ${found.pid} runs but does not serve: ${why} (the daemon replaces it at its next start)`
      : lxcfsMounted(paths.mount) ? `a dead lxcfs is still mounted on ${paths.mount} (the daemon replaces it at its next start)` : 'not running (the daemon starts it)';
    checks.push({
      name: 'lxcfs',
      ok: missing.length === 0,
      required: config.sessions.lxcfs === 'required',
      detail: missing.length
        ? `${missing.join(' and ')} missing: sessions ${config.sessions.lxcfs === 'required' ? 'cannot be made' : 'read the host\'s numbers in /proc'}; install the Debian package lxcfs (.ci/setup does), or set sessions.lxcfs = "off"`
        : state,
    });
  }
  try {
    const layout = detectCgroupLayout(config.cgroups.root);
    const ok = layout.mode === 'unified' ? layout.v2 !== null : layout.v1.has('cpuset');
    checks.push({ name: 'cpu count', ok, required: false, detail: ok ? 'a session runs on ceil(cpu_percent / 100) CPUs of its own cpuset (nproc tells its limit)' : 'no cpuset controller: nproc in a session counts the host\'s CPUs' });
  } catch (e) {
    checks.push({ name: 'cpu count', ok: false, required: false, detail: (e as Error).message });
  }
  return checks;
}
