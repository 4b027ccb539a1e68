// `docker run --rm IMAGE true` inside a system session against the same on
// a dockerd of the host, interleaved in one shuffled schedule (bench.ts's
// --docker N). Both dockerds run alike: storage driver vfs, no bridge, no
// iptables, no IP forwarding, so both containers get only their own
// loopback, and the difference is what confinement costs (the session's
// user namespace, seccomp, delegated cgroups, its overlay root). Each run is
// timed by the shell that starts it (date +%s%N around `docker run`), so the
// exec into the session is not counted.
//
// The host's dockerd is the benchmark's own: its socket, data, exec root and
// pidfile in the run's directory, its containers' cgroups under a parent of
// its own. Without a bridge and iptables it adds no link or rule to the
// host; when it has stopped, the benchmark removes its cgroups and any mount
// left in its directory, then checks that the host's links, ruleset, cgroups
// and mounts are as before, and fails (after cleaning) if not.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TestDaemon } from '../test/integration/harness.js';
import { addon } from '../src/native/addon.js';
import { runShuffled, type Samples } from './schedule.js';

const DOCKERD = '/usr/sbin/dockerd';
const BUSYBOX = '/bin/busybox';
/** The same flags inside and on the host: no network of Docker's, nothing in the host's ruleset. */
const FLAGS = ['--storage-driver', 'vfs', '--bridge', 'none', '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false', '--userland-proxy=false'];
/** One timed `docker run --rm bb true`: prints its nanoseconds, or fails. */
const TIMED = 't0=$(date +%s%N); docker run --rm bb true || exit 1; t1=$(date +%s%N); echo $((t1 - t0))';

const host = (cmd: string, args: string[], env?: NodeJS.ProcessEnv) => execFileSync(cmd, args, { encoding: 'utf8', env: env ?? process.env });

const cmdline = (pid: string): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
};

/** What a dockerd of the host could leave: links, Docker's rules, cgroups named docker or ours, mounts in its directory, its processes (dockerd, containerd, shims). */
function hostState(dir: string, cgroupParent: string): { links: string[]; rules: string[]; cgroups: string[]; mounts: string[]; procs: string[] } {
  const cg: string[] = [];
  for (const h of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
    for (const n of ['docker', cgroupParent]) if (existsSync(join('/sys/fs/cgroup', h, n))) cg.push(join(h, n));
  }
  return {
    links: host('ip', ['-o', 'link', 'show']).split('\n').filter((l) => /^\d+: (docker|br-)/.test(l)),
    rules: host('nft', ['list', 'ruleset']).split('\n').filter((l) => /DOCKER|docker0/.test(l)),
    cgroups: cg,
    mounts: readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(` ${dir}`)),
    procs: readdirSync('/proc').filter((e) => /^\d+$/.test(e) && cmdline(e).includes(dir)),
  };
}

/** Every cgroup below `name` in each hierarchy, deepest first (the containers' have ended). */
function removeCgroups(name: string): void {
  const rm = (p: string): void => {
    for (const e of readdirSync(p, { withFileTypes: true })) if (e.isDirectory()) rm(join(p, e.name));
    rmdirSync(p);
  };
  // cpu and cpuacct are links to cpu,cpuacct on v1: each hierarchy once.
  for (const h of readdirSync('/sys/fs/cgroup')) if (!lstatSync(join('/sys/fs/cgroup', h)).isSymbolicLink() && existsSync(join('/sys/fs/cgroup', h, name))) rm(join('/sys/fs/cgroup', h, name));
}

/** The host containers' shims re-parent to this process (the harness makes it a child subreaper) and end as zombies: reap them. */
function reapShims(): void {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = /^\d+ \((containerd-shim[^)]*)\) Z (\d+)/.exec(readFileSync(`/proc/${e}/stat`, 'utf8'));
      if (m && Number(m[2]) === process.pid) addon().reapChild(Number(e));
    } catch {
      /* gone */
    }
  }
}

async function waitFor(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`bench: ${what} did not happen within 60 s`);
}

/** `rounds` timed runs inside a system session and as many on the host, shuffled together. */
export async function benchContainers(d: TestDaemon, s: Samples, rounds: number, random: () => number): Promise<void> {
  if (!existsSync(DOCKERD) || !existsSync(BUSYBOX)) throw new Error(`--docker needs ${DOCKERD} and ${BUSYBOX} (apt-get install docker.io busybox-static)`);
  const dir = join(d.dir, 'host-docker');
  const cgroupParent = `enclave-bench-${d.runId}`;
  const before = hostState(dir, cgroupParent);
  mkdirSync(join(dir, 'img', 'bin'), { recursive: true });
  host('cp', [BUSYBOX, join(dir, 'img', 'bin', 'busybox')]);
  host('ln', ['-s', 'busybox', join(dir, 'img', 'bin', 'true')]);
  const tar = execFileSync('tar', ['-C', join(dir, 'img'), '-c', '.'], { maxBuffer: 64 << 20 });

  const env = { ...process.env, DOCKER_HOST: `unix://${join(dir, 'docker.sock')}` };
  let dockerd: ChildProcess | undefined;
  let session = '';
  try {
    const made = await d.create({ name: 'bench-docker', profile: 'system', memory_mb: 1024, root_mb: 1024 });
    session = made.id;
    const up = await d.sh(
      session,
      `(dockerd ${FLAGS.join(' ')} > /var/log/dockerd.log 2>&1 &); i=0; until docker info > /dev/null 2>&1; do i=$((i+1)); [ $i -lt 600 ] || { tail -5 /var/log/dockerd.log; exit 1; }; sleep 0.1; done; docker import - bb > /dev/null && echo up`,
      tar,
    );
    if (up.stdout !== 'up\n') throw new Error(`bench: dockerd in the session: ${up.stdout}${up.stderr}`);

    const log = openSync(join(dir, 'dockerd.log'), 'a');
    dockerd = spawn(
      DOCKERD,
      [...FLAGS, '--host', env.DOCKER_HOST, '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'), '--pidfile', join(dir, 'dockerd.pid'), '--cgroup-parent', `/${cgroupParent}`, '--containerd-namespace', `enclave-bench`],
      { stdio: ['ignore', log, log] },
    );
    await waitFor('the host dockerd answering', () => {
      try {
        execFileSync('docker', ['info'], { env, stdio: 'ignore' });
        return true;
      } catch {
        return dockerd?.exitCode !== null ? Promise.reject(new Error(`bench: the host dockerd exited: ${readFileSync(join(dir, 'dockerd.log'), 'utf8').slice(-1000)}`)) : false;
      }
    });
    execFileSync('docker', ['import', '-', 'bb'], { input: tar, env, stdio: ['pipe', 'ignore', 'inherit'] });

    const inside = async () => {
      const r = await d.sh(session, TIMED);
      if (r.code !== 0) throw new Error(`bench: docker run in the session: ${r.stderr}`);
      return Number(r.stdout) / 1e6;
    };
    const onHost = () => Number(host('sh', ['-c', TIMED], env)) / 1e6;
    await inside(); // warm-up, unmeasured
    onHost();
    await runShuffled(
      { 'docker-session': rounds, 'docker-host': rounds },
      async (name) => {
        s.add(name, name === 'docker-session' ? await inside() : onHost());
        return true;
      },
      random,
    );
  } finally {
    if (session) await d.destroy(session).catch(() => undefined);
    const proc = dockerd;
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    }
    reapShims();
    // Its containerd ends with it; what it left in the kernel goes now.
    for (const m of hostState(dir, cgroupParent).mounts.map((l) => l.split(' ')[4]!).reverse()) execFileSync('umount', ['-l', m]);
    if (existsSync('/sys/fs/cgroup')) removeCgroups(cgroupParent);
    rmSync(dir, { recursive: true, force: true });
  }
  const after = hostState(dir, cgroupParent);
  if (JSON.stringify(after) !== JSON.stringify(before)) throw new Error(`bench: the host dockerd left something behind: ${JSON.stringify({ before, after })}`);
}
