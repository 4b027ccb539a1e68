import { describe, expect, it } from 'vitest';
import { buildSpec, relativeToRoot, serializeSpec, SpecError, validateSpec, type SessionPlan } from '../../src/isolation/spec.js';
import { rangeForSlot, rangesOverlap } from '../../src/isolation/idRange.js';

const plan: SessionPlan = {
  hostname: 'web-1',
  ids: { hostBase: 165536, size: 65536 },
  cgroupProcs: ['/sys/fs/cgroup/pids/enclave/s-0000000001/cgroup.procs'],
  newroot: '/var/lib/enclave/newroot',
  rootfs: '/',
  masks: ['/var/lib/enclave', '/run/enclave', '/root', '/root/'],
  home: { bytes: 512 * 1024 * 1024, inodes: 65536 },
  tmp: { bytes: 256 * 1024 * 1024, inodes: 1000 },
  secrets: { bytes: 1024 * 1024, inodes: 256 },
  rlimits: [
    { name: 'NOFILE', soft: 4096, hard: 4096 },
    { name: 'CORE', soft: 0, hard: 0 },
    { name: 'FSIZE', soft: 'unlimited', hard: 'unlimited' },
  ],
  seccomp: '/var/lib/enclave/seccomp.bpf',
  sysMasks: ['/sys/devices/system/cpu/cpu0/thermal_throttle'],
  files: [{ source: '/var/lib/enclave/sessions/s-0000000001/resolv.conf', target: '/etc/resolv.conf' }],
  network: { hostIf: 've-0000000001', mac: '02:00:0a:c8:00:05', mtu: 1500, bridge: 'enclave0', address: '10.200.0.5', prefix: 32, gateway: '10.200.0.1' },
};

const find = (spec: readonly (readonly string[])[], op: string, target?: string) => spec.filter((d) => d[0] === op && (target === undefined || d[1] === target));

describe('session spec', () => {
  const spec = buildSpec(plan);

  it('starts with the version line and maps the exclusive range for uid and gid', () => {
    expect(spec[0]).toEqual(['enclave-spec', '1']);
    expect(find(spec, 'uid_map')).toEqual([['uid_map', '0', '165536', '65536']]);
    expect(find(spec, 'gid_map')).toEqual([['gid_map', '0', '165536', '65536']]);
  });

  it('masks each host path once, relative to the new root', () => {
    expect(find(spec, 'mask').map((d) => d[1])).toEqual(['root', 'run/enclave', 'var/lib/enclave']);
  });

  it('mounts /home 0755 and /tmp 1777 nosuid,nodev with size and inode caps owned by session root', () => {
    expect(find(spec, 'tmpfs', 'home')).toEqual([['tmpfs', 'home', 'nosuid,nodev', 'mode=0755,size=536870912,nr_inodes=65536,uid=0,gid=0']]);
    expect(find(spec, 'tmpfs', 'tmp')).toEqual([['tmpfs', 'tmp', 'nosuid,nodev', 'mode=1777,size=268435456,nr_inodes=1000,uid=0,gid=0']]);
  });

  it('mounts the secret tmpfs 0700 noexec, after creating their mount points in a fresh /run', () => {
    const ops = spec.map((d) => `${d[0]} ${d[1]}`);
    for (const m of ['run/enclave/auth', 'run/enclave/env']) {
      expect(find(spec, 'tmpfs', m)).toEqual([['tmpfs', m, 'nosuid,nodev,noexec', 'mode=0700,size=1048576,nr_inodes=256,uid=0,gid=0']]);
      expect(ops.indexOf(`mkdir ${m}`)).toBeGreaterThan(ops.indexOf('tmpfs run'));
      expect(ops.indexOf(`tmpfs ${m}`)).toBeGreaterThan(ops.indexOf(`mkdir ${m}`));
    }
  });

  it('gives a minimal /dev: the usual nodes, a private devpts, shm, mqueue', () => {
    expect(find(spec, 'bind_dev').map((d) => d[1])).toEqual(['dev/null', 'dev/zero', 'dev/full', 'dev/random', 'dev/urandom', 'dev/tty']);
    expect(find(spec, 'devpts')).toEqual([['devpts', 'dev/pts', 'newinstance,ptmxmode=0666,mode=0620']]);
    expect(find(spec, 'symlink', 'pts/ptmx')).toEqual([['symlink', 'pts/ptmx', 'dev/ptmx']]);
    expect(find(spec, 'proc')).toEqual([['proc', 'proc']]);
  });

  it('masks the runc/Docker path lists after /proc and /sys are mounted, and makes the read-only list read-only', () => {
    const ops = spec.map((d) => `${d[0]} ${d[1]}`);
    const masked = find(spec, 'proc_mask').map((d) => d[1]);
    expect(masked).toEqual(expect.arrayContaining(['proc/kcore', 'proc/keys', 'proc/timer_list', 'proc/sched_debug', 'proc/interrupts', 'sys/firmware', 'sys/devices/virtual/powercap', 'sys/devices/system/cpu/cpu0/thermal_throttle']));
    expect(find(spec, 'readonly').map((d) => d[1])).toEqual(['proc/bus', 'proc/fs', 'proc/irq', 'proc/sys', 'proc/sysrq-trigger']);
    const first = Math.min(...spec.flatMap((d, i) => (d[0] === 'proc_mask' || d[0] === 'readonly' ? [i] : [])));
    expect(first).toBeGreaterThan(ops.indexOf('sysfs sys'));
  });

  it('ends with the rlimits and the seccomp program', () => {
    expect(find(spec, 'rlimit')).toEqual([
      ['rlimit', 'NOFILE', '4096', '4096'],
      ['rlimit', 'CORE', '0', '0'],
      ['rlimit', 'FSIZE', 'unlimited', 'unlimited'],
    ]);
    expect(spec[spec.length - 1]).toEqual(['seccomp', '/var/lib/enclave/seccomp.bpf']);
  });

  it('plans the veth (parent side) and eth0 (session side), and binds the generated files', () => {
    expect(find(spec, 'veth')).toEqual([['veth', 've-0000000001', 'eth0', '02:00:0a:c8:00:05', '1500', 'enclave0']]);
    expect(find(spec, 'ipv4')).toEqual([['ipv4', 'eth0', '10.200.0.5', '32', '10.200.0.1']]);
    expect(find(spec, 'bind_file')).toEqual([['bind_file', '/var/lib/enclave/sessions/s-0000000001/resolv.conf', 'etc/resolv.conf']]);
    const none = buildSpec({ ...plan, network: undefined });
    expect(find(none, 'veth')).toEqual([]);
    expect(find(none, 'ipv4')).toEqual([]);
    expect(() => buildSpec({ ...plan, network: { ...plan.network!, hostIf: 'a-name-longer-than-ifnamsiz' } })).toThrow(/IFNAMSIZ/);
  });

  it('serializes one tab-separated directive per line', () => {
    const text = serializeSpec(spec);
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n')[0]).toBe('enclave-spec\t1');
    expect(text.trim().split('\n')).toHaveLength(spec.length);
  });

  it('refuses targets that climb out, absolute targets and field separators', () => {
    expect(() => validateSpec([['enclave-spec', '1'], ['hostname', 'a'], ['tmpfs', '../etc', 'nosuid', 'x']])).toThrow(SpecError);
    expect(() => validateSpec([['enclave-spec', '1'], ['hostname', 'a'], ['mkdir', '/etc', '0755']])).toThrow(SpecError);
    expect(() => validateSpec([['enclave-spec', '1'], ['hostname', 'a'], ['mkdir', 'a\tb', '0755']])).toThrow(SpecError);
    expect(() => buildSpec({ ...plan, hostname: 'Bad_Host' })).toThrow(/hostname/);
    expect(() => buildSpec({ ...plan, masks: ['relative'] })).toThrow(/absolute/);
  });

  it('normalizes host paths', () => {
    expect(relativeToRoot('/var//lib/../lib/enclave/')).toBe('var/lib/enclave');
    expect(relativeToRoot('/')).toBe('');
  });
});

describe('ID ranges', () => {
  const pool = { base: 100000, size: 65536, slots: 4 };
  it('gives each slot an exclusive range', () => {
    const ranges = [0, 1, 2, 3].map((s) => rangeForSlot(pool, s));
    expect(ranges[1]).toEqual({ hostBase: 165536, size: 65536 });
    for (const a of ranges) for (const b of ranges) if (a !== b) expect(rangesOverlap(a, b)).toBe(false);
  });
  it('refuses slots outside the pool', () => {
    expect(() => rangeForSlot(pool, 4)).toThrow(RangeError);
    expect(() => rangeForSlot(pool, -1)).toThrow(RangeError);
  });
});
