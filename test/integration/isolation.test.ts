// Two live sessions on a real kernel: each claim of isolation, checked from
// inside and from the host.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Session } from '../../src/api/schemas.js';
import { isRoot, TestDaemon } from './harness.js';

describe.skipIf(!isRoot)('session isolation (root)', () => {
  const d = new TestDaemon();
  let a: Session;
  let b: Session;

  beforeAll(async () => {
    await d.start();
    a = await d.create({ name: 'iso-a' });
    b = await d.create({ name: 'iso-b' });
    await d.create({ name: 'iso-strict', profile: 'strict' });
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('keeps /tmp and /home private to each session', async () => {
    const w = await d.sh('iso-a', 'echo secret-a > /tmp/a.txt && echo home-a > /home/a.txt && cat /tmp/a.txt /home/a.txt');
    expect(w.stdout).toBe('secret-a\nhome-a\n');
    expect(w.code).toBe(0);
    const r = await d.sh('iso-b', 'ls -A /tmp /home; test -e /tmp/a.txt || echo no-tmp; test -e /home/a.txt || echo no-home');
    expect(r.stdout).toContain('no-tmp');
    expect(r.stdout).toContain('no-home');
    expect(r.stdout).not.toContain('a.txt');
  });

  it('shows each session only its own processes, with its init as PID 1', async () => {
    const r = await d.sh('iso-a', 'cat /proc/1/cmdline | tr "\\0" " "; echo; ls /proc | grep -E "^[0-9]+$" | sort -n | tr "\\n" " "');
    const [cmdline, pids] = r.stdout.split('\n');
    expect(cmdline).toContain('enclave-init');
    const seen = pids!.trim().split(' ').map(Number);
    expect(seen[0]).toBe(1);
    // init, the shell, ls, grep, sort, tr: a handful, not the host's hundreds.
    expect(seen.length).toBeLessThan(10);
    expect(seen).not.toContain(d.pid);
    const other = await d.sh('iso-b', 'sleep 0.2 & ls /proc | grep -cE "^[0-9]+$"');
    expect(Number(other.stdout.trim())).toBeLessThan(10);
  });

  it('gives each session its own hostname and leaves the host one alone', async () => {
    const ha = await d.sh('iso-a', 'hostname');
    const hb = await d.sh('iso-b', 'hostname');
    expect(ha.stdout.trim()).toBe('iso-a');
    expect(hb.stdout.trim()).toBe('iso-b');
    expect(hostname()).not.toBe('iso-a');
    expect(readFileSync('/proc/sys/kernel/hostname', 'utf8').trim()).toBe(hostname());
  });

  it('mounts /run/enclave/auth and /run/enclave/env as separate empty 0700 noexec tmpfs', async () => {
    const script = [
      'for m in /run/enclave/auth /run/enclave/env; do',
      '  stat -c "%n %a %u" $m; ls -A $m | wc -l;',
      '  awk -v m=$m \'$2==m {print $3, $4}\' /proc/self/mounts;',
      'done',
    ].join('\n');
    for (const s of ['iso-a', 'iso-b']) {
      const r = await d.sh(s, script);
      const lines = r.stdout.trim().split('\n');
      expect(lines[0]).toBe('/run/enclave/auth 700 0');
      expect(lines[1]).toBe('0');
      expect(lines[2]).toMatch(/^tmpfs rw,nosuid,nodev,noexec/);
      expect(lines[3]).toBe('/run/enclave/env 700 0');
      expect(lines[4]).toBe('0');
      expect(lines[5]).toMatch(/^tmpfs rw,nosuid,nodev,noexec/);
    }
    await d.sh('iso-a', 'echo token > /run/enclave/auth/t && echo v > /run/enclave/env/e');
    const r = await d.sh('iso-b', 'ls -A /run/enclave/auth /run/enclave/env | grep -c -E "^(t|e)$" || true');
    expect(r.stdout.trim()).toBe('0');
    // noexec: a script written there cannot run.
    const x = await d.sh('iso-a', 'printf "#!/bin/sh\\necho ran\\n" > /run/enclave/env/x; chmod +x /run/enclave/env/x; /run/enclave/env/x');
    expect(x.stdout).not.toContain('ran');
    expect(x.code).toBe(126);
  });

  it('has /home 0755 and /tmp 1777 owned by the session root, nosuid and nodev', async () => {
    const r = await d.sh('iso-a', 'stat -c "%n %a %u %g" /home /tmp; awk \'$2=="/home"||$2=="/tmp" {print $2, $4}\' /proc/self/mounts');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('/home 755 0 0');
    expect(lines[1]).toBe('/tmp 1777 0 0');
    for (const l of lines.slice(2)) expect(l).toMatch(/nosuid,nodev/);
  });

  it('keeps the root read-only under the strict profile', async () => {
    const r = await d.sh('iso-strict', 'touch /usr/enclave-probe 2>&1; echo rc=$?; mount 2>/dev/null | awk \'$3=="/" {print $6}\'; awk \'$2=="/" {print $4}\' /proc/self/mounts');
    expect(r.stdout).toMatch(/Read-only file system/);
    expect(r.stdout).toContain('rc=1');
    expect(r.stdout).toMatch(/^ro,/m);
  });

  it('cannot reach the daemon state dir, the SQLite file or host processes', async () => {
    const db = join(d.stateDir, 'enclave.db');
    const r = await d.sh('iso-a', `ls -A ${d.stateDir} | wc -l; cat ${db} >/dev/null 2>&1 && echo READ-DB; test -S ${d.socket} && echo SOCKET; kill -0 ${d.pid} 2>/dev/null && echo SEES-DAEMON; ls -A /root | wc -l; echo done`);
    expect(r.stdout).toBe('0\n0\ndone\n');
  });

  it('maps an exclusive ID range per session, disjoint between sessions', async () => {
    const ma = await d.sh('iso-a', 'cat /proc/self/uid_map /proc/self/gid_map');
    const mb = await d.sh('iso-b', 'cat /proc/self/uid_map');
    const parse = (s: string) => s.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
    const [ua, ga] = parse(ma.stdout);
    const [ub] = parse(mb.stdout);
    expect(ua).toEqual([0, a.id_range!.host_base, a.id_range!.size]);
    expect(ga).toEqual(ua);
    expect(ub).toEqual([0, b.id_range!.host_base, b.id_range!.size]);
    const [, baseA, sizeA] = ua!;
    const [, baseB, sizeB] = ub!;
    expect(baseA! + sizeA! <= baseB! || baseB! + sizeB! <= baseA!).toBe(true);
    // setgroups: allowed under workspace (the default), denied under strict.
    expect((await d.sh('iso-a', 'cat /proc/self/setgroups')).stdout.trim()).toBe('allow');
    expect((await d.sh('iso-strict', 'cat /proc/self/setgroups')).stdout.trim()).toBe('deny');
  });

  it("runs the session's processes as its range's IDs on the host", async () => {
    const status = readFileSync(`/proc/${a.init_pid}/status`, 'utf8');
    expect(status).toMatch(new RegExp(`^Uid:\\s+${a.id_range!.host_base}\\s+${a.id_range!.host_base}\\s`, 'm'));
    expect(status).toMatch(new RegExp(`^Gid:\\s+${a.id_range!.host_base}\\s`, 'm'));
    // A command started by exec: find it through the session's cgroup.
    const running = d.sh('iso-b', 'sleep 3');
    const findSleeper = () => {
      const procs = d.cgroupDirs(b.id).flatMap((dir) => readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean));
      return [...new Set(procs)].find((p) => {
        try {
          return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'sleep';
        } catch {
          return false;
        }
      });
    };
    let sleeper = findSleeper();
    for (let i = 0; i < 500 && !sleeper; i++) {
      await new Promise((r) => setTimeout(r, 10));
      sleeper = findSleeper();
    }
    expect(sleeper).toBeDefined();
    expect(readFileSync(`/proc/${sleeper}/status`, 'utf8')).toMatch(new RegExp(`^Uid:\\s+${b.id_range!.host_base}\\s`, 'm'));
    await running;
  });

  it('gives each session its own network namespace', async () => {
    const na = await d.sh('iso-a', 'readlink /proc/self/ns/net');
    const nb = await d.sh('iso-b', 'readlink /proc/self/ns/net');
    const host = readFileSync('/proc/self/net/dev', 'utf8'); // the host's interfaces
    expect(na.stdout).toMatch(/^net:\[\d+\]$/m);
    expect(na.stdout).not.toBe(nb.stdout);
    const { readlinkSync } = await import('node:fs');
    expect(na.stdout.trim()).not.toBe(readlinkSync('/proc/self/ns/net'));
    const links = await d.sh('iso-a', 'ls /sys/class/net | tr "\\n" " "');
    expect(links.stdout.trim().split(' ').sort()).toEqual(['eth0', 'lo']);
    expect(host).toContain(d.bridge); // the host side has the bridge; the session does not
  });
});
