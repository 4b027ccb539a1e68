// The caller boundary on the host side: nothing a caller sends as a command's
// environment may take effect in, or even reach the environment of, a
// process running on the host. It is data, applied inside the session only.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, TestDaemon } from './harness.js';

/** A library whose constructor leaves a file in `markDir` wherever it is loaded. */
function buildMarkerLibrary(dir: string, markDir: string): string {
  const src = join(dir, 'marker.c');
  writeFileSync(
    src,
    `#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
  char p[512];
  snprintf(p, sizeof p, "${markDir}/loaded-%d", getpid());
  int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd >= 0) { dprintf(fd, "uid=%d\\n", getuid()); close(fd); }
}
`,
  );
  const lib = join(dir, 'libmarker.so');
  execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-o', lib, src]);
  return lib;
}

/** Host PIDs whose environment holds `needle` and that live in the host's PID namespace. */
function hostProcessesWithEnv(needle: string): string[] {
  const hostNs = readlinkSync('/proc/self/ns/pid');
  const found: string[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (!readFileSync(`/proc/${e}/environ`).includes(needle)) continue;
      if (readlinkSync(`/proc/${e}/ns/pid`) === hostNs) found.push(`${e} ${readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ')}`);
    } catch {
      /* exited, or a kernel thread */
    }
  }
  return found;
}

describe.skipIf(!isRoot)('caller environment never reaches the host (root)', () => {
  const d = new TestDaemon();
  let lib: string;
  let libDir: string;
  let marks: string;

  beforeAll(async () => {
    await d.start();
    libDir = join(d.dir, 'lib');
    marks = join(d.dir, 'marks');
    mkdirSync(libDir, { recursive: true });
    mkdirSync(marks, { recursive: true });
    lib = buildMarkerLibrary(libDir, marks);
    await d.create({ name: 'envy', network: 'none' });
  });
  afterAll(async () => {
    await d.cleanup();
  });
  beforeEach(() => {
    for (const f of readdirSync(marks)) rmSync(join(marks, f));
  });

  it.each([
    ['LD_PRELOAD', { LD_PRELOAD: '@lib' }],
    ['LD_LIBRARY_PATH', { LD_LIBRARY_PATH: '@dir', LD_PRELOAD: 'libmarker.so' }],
    ['LD_AUDIT', { LD_AUDIT: '@lib' }],
  ])('the marker library works: loaded on the host through %s it leaves its mark', (_what, env) => {
    const resolved = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replace('@dir', libDir).replace('@lib', lib)]));
    execFileSync('/bin/true', [], { env: resolved, stdio: 'ignore' });
    expect(readdirSync(marks).length).toBe(1);
  });

  it.each([
    ['LD_PRELOAD with a path', [`LD_PRELOAD=${'@lib'}`]],
    ['LD_PRELOAD searched through LD_LIBRARY_PATH', ['LD_LIBRARY_PATH=@dir', 'LD_PRELOAD=libmarker.so']],
    ['LD_AUDIT', ['LD_AUDIT=@lib']],
  ])('%s never loads into a host process', async (_what, env) => {
    const args = env.flatMap((e) => ['--env', e.replace('@dir', libDir).replace('@lib', lib)]);
    const r = await d.cli(['session', 'exec', 'envy', ...args, '--', 'sh', '-c', 'echo ran']);
    expect(r.stdout).toBe('ran\n');
    expect(readdirSync(marks)).toEqual([]);
  });

  it('a library the session wrote, named through a host path into its root, never loads on the host', async () => {
    const s = await d.show('envy');
    // Copy the library into the session's /tmp, then name it as the host sees it.
    const bytes = readFileSync(lib);
    const w = await d.cli(['session', 'exec', '-i', 'envy', '--', 'sh', '-c', 'cat > /tmp/libmine.so'], bytes);
    expect(w.code).toBe(0);
    const viaHost = `/proc/${s.init_pid}/root/tmp/libmine.so`;
    expect(existsSync(viaHost)).toBe(true);
    const r = await d.cli(['session', 'exec', 'envy', '--env', `LD_PRELOAD=${viaHost}`, '--', 'true']);
    expect(r.code).toBe(0);
    expect(readdirSync(marks)).toEqual([]);
  });

  it('hands the environment to the command inside the session, and to no host process', async () => {
    const canary = `ENCLAVE_CANARY_${d.tag}`;
    const running = d.cli([
      'session', 'exec', 'envy',
      '--env', `${canary}=1`, '--env', 'GCONV_PATH=/nonexistent', '--env', `LD_LIBRARY_PATH=${libDir}`,
      '--', 'sh', '-c', `echo "$${canary} $GCONV_PATH"; sleep 1.5`,
    ]);
    // While the command runs, look at every process on the host.
    let seenInside = false;
    let onHost: string[] = [];
    for (let i = 0; i < 100 && !seenInside; i++) {
      await new Promise((r) => setTimeout(r, 20));
      onHost = [...onHost, ...hostProcessesWithEnv(`${canary}=1`)];
      const hostNs = readlinkSync('/proc/self/ns/pid');
      seenInside = readdirSync('/proc').some((e) => {
        try {
          return /^\d+$/.test(e) && readFileSync(`/proc/${e}/environ`).includes(`${canary}=1`) && readlinkSync(`/proc/${e}/ns/pid`) !== hostNs;
        } catch {
          return false;
        }
      });
    }
    onHost = [...onHost, ...hostProcessesWithEnv(`${canary}=1`)];
    const r = await running;
    expect(r.stdout).toBe('1 /nonexistent\n');
    expect(seenInside).toBe(true);
    expect(onHost).toEqual([]);
  });
});

describe.skipIf(!isRoot)("the daemon's controlling terminal never reaches a session (root)", () => {
  // Started by hand in a terminal, as an administrator would.
  const d = new TestDaemon({ terminal: true });
  beforeAll(async () => {
    await d.start();
    await d.create({ name: 'notty', network: 'none' });
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('the daemon does run with a controlling terminal', () => {
    // Field 7 of /proc/PID/stat: the controlling terminal's device number.
    const fields = readFileSync(`/proc/${d.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    expect(Number(fields[4])).not.toBe(0);
  });

  it('logs one readable line per event on its terminal (pino-pretty), not JSON', () => {
    const log = d.log();
    expect(log).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \S*INFO\S*: \S*listening/m);
    expect(log).not.toMatch(/^\{"level":/m);
  });

  it('an exec\'d command has no controlling terminal: /dev/tty fails with ENXIO', async () => {
    const r = await d.sh('notty', 'awk \'{print $7}\' /proc/self/stat; exec 3<>/dev/tty && echo OPENED');
    expect(r.stdout).toBe('0\n');
    expect(r.stderr).toMatch(/\/dev\/tty: No such device or address/);
    expect(r.code).not.toBe(0);
  });

  it('with --tty its controlling terminal is the session\'s own pty', async () => {
    const r = await d.cli(['session', 'exec', '--tty', 'notty', '--', 'sh', '-c', 'tty; exec 3<>/dev/tty && echo OPENED']);
    expect(r.stdout).toMatch(/^\/dev\/pts\/\d+\r?\nOPENED\r?\n$/);
  });
});
