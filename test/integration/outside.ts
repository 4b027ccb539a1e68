// A host outside Enclave for the root suite: a network namespace behind a
// veth from the host, with its own /30. Sessions reach it the way they reach
// the internet (routed and masqueraded by the host). Named after the test
// daemon's tag, so sweepEarlierRuns() removes what a killed run left.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

export class OutsideHost {
  readonly ns: string;
  readonly hostEnd: string;
  readonly ip: string;
  readonly hostSideIp: string;
  private readonly procs: ChildProcess[] = [];

  /** One per test daemon (its tag): the names are what the sweep looks for. */
  constructor(tag: string) {
    this.ns = `eo-${tag}`;
    this.hostEnd = `eoh${tag}`;
    const net = `198.18.${parseInt(tag.slice(0, 2), 16)}`;
    this.ip = `${net}.2`;
    this.hostSideIp = `${net}.1`;
  }

  up(): void {
    sh('ip', ['netns', 'add', this.ns]);
    sh('ip', ['link', 'add', this.hostEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns]);
    sh('ip', ['addr', 'add', `${this.hostSideIp}/30`, 'dev', this.hostEnd]);
    sh('ip', ['link', 'set', this.hostEnd, 'up']);
    sh('ip', ['-n', this.ns, 'addr', 'add', `${this.ip}/30`, 'dev', 'eth0']);
    sh('ip', ['-n', this.ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', this.ns, 'link', 'set', 'lo', 'up']);
  }

  /** `node -e script ...args` inside the namespace; it is killed by down(). */
  node(script: string, args: string[] = []): ChildProcess {
    const p = spawn('ip', ['netns', 'exec', this.ns, process.execPath, '-e', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.procs.push(p);
    return p;
  }

  /** Resolves once the process prints a line equal to `line`. */
  static waitForLine(p: ChildProcess, line: string, ms = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`no '${line}' within ${ms} ms: ${err}`)), ms);
      p.stderr!.on('data', (c: Buffer) => (err += c.toString()));
      p.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.split('\n').includes(line)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  down(): void {
    for (const p of this.procs) p.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', this.ns], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', this.hostEnd], { stdio: 'ignore' });
  }
}
