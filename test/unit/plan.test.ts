// The session plan: what buildPlan decides, and that the C side (the op
// table in native/src/ops.h, through `enclave-init --check`) agrees with it
// op for op. No root needed: --check validates without executing.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { parseConfig } from '../../src/config/load.js';
import { planFor, type HostFacts } from '../../src/sessions/planning.js';
import { buildPlan, LXCFS_FILES, MASK_DATA, MASKED_PATHS, READONLY_PATHS, parseStoredPlan, PlanError, relativeToRoot, serializePlan, type LayeredRoot, type PlanInputs, type SessionPlan } from '../../src/isolation/plan.js';
import { rangeForSlot, rangesOverlap } from '../../src/isolation/idRange.js';
import { helperPaths } from '../../src/native/addon.js';
import { helperTable } from '../../src/native/steps.js';
import { archForNode, compileSeccomp, serializeBpf } from '../../src/isolation/bpf.js';
import { capabilityMask, DROPPED_CAPS, setgroupsFor, SYSTEM_CAPS, WORKSPACE_CAPS } from '../../src/isolation/profiles.js';
import { CAPS_SYSTEM } from '../../src/native/contract.gen.js';
import { policyFor } from '../../src/isolation/seccompPolicy.js';

const inputs: PlanInputs = {
  hostname: 'web-1',
  ids: { hostBase: 165536, size: 65536 },
  cgroups: ['/sys/fs/cgroup/pids/enclave/s-0000000001'],
  newroot: '/var/lib/enclave/newroot',
  root: { kind: 'host', rootfs: '/', masks: ['/var/lib/enclave', '/run/enclave', '/root', '/root/'] },
  capabilities: '0',
  setgroups: 'deny',
  control: '/var/lib/enclave/sessions/s-0000000001/control',
  home: { bytes: 512 * 1024 * 1024, inodes: 65536 },
  tmp: { bytes: 256 * 1024 * 1024, inodes: 1000 },
  secrets: { bytes: 1024 * 1024, inodes: 256 },
  rlimits: [
    { name: 'NOFILE', soft: 4096, hard: 4096 },
    { name: 'CORE', soft: 0, hard: 0 },
    { name: 'FSIZE', soft: 'unlimited', hard: 'unlimited' },
  ],
  seccomp: serializeBpf(compileSeccomp(archForNode())),
  sysMasks: ['/sys/devices/system/cpu/cpu0/thermal_throttle'],
  files: [{ source: '/var/lib/enclave/sessions/s-0000000001/resolv.conf', target: '/etc/resolv.conf' }],
  network: { hostIf: 've-0000000001', mac: '02:00:0a:c8:00:05', mtu: 1500, bridge: 'enclave0', address: '10.200.0.5', prefix: 32, gateway: '10.200.0.1' },
};

const find = (plan: SessionPlan, op: string, first?: string) => plan.ops.filter((o) => o.op === op && (first === undefined || o.args[0] === first)).map((o) => o.args);
const at = (plan: SessionPlan, op: string, first?: string) => plan.ops.findIndex((o) => o.op === op && (first === undefined || o.args[0] === first));

function check(input: Buffer | string): { ok: boolean; out: string } {
  const r = spawnSync(helperPaths.init, ['--check'], { input, encoding: 'utf8', env: {} });
  return { ok: r.status === 0 && r.stdout === 'ok\n', out: r.stdout };
}

describe('session plan', () => {
  const plan = buildPlan(inputs);

  it('is accepted whole by enclave-init --check, with and without networking', () => {
    expect(check(serializePlan(plan))).toEqual({ ok: true, out: 'ok\n' });
    expect(check(serializePlan(buildPlan({ ...inputs, network: undefined })))).toEqual({ ok: true, out: 'ok\n' });
  });

  it('uses only ops of the C op table, each in its phase and with its arity', () => {
    const table = new Map(helperTable().ops.map((o) => [o.name, o]));
    expect(helperTable().phases).toEqual(['host', 'parent', 'net', 'mount', 'final', 'exec']);
    for (const o of plan.ops) {
      const def = table.get(o.op);
      expect(def, o.op).toBeDefined();
      expect(o.phase).toBe(def!.phase);
      expect(o.args).toHaveLength(def!.args.length);
    }
    for (const def of table.values()) if (def.flags.includes('required')) expect(at(plan, def.name), def.name).toBeGreaterThanOrEqual(0);
  });

  it('maps the exclusive range for uid and gid, with setgroups denied between them', () => {
    expect(find(plan, 'uid-map')).toEqual([['0', '165536', '65536']]);
    expect(find(plan, 'gid-map')).toEqual([['0', '165536', '65536']]);
    expect(at(plan, 'setgroups')).toBeGreaterThan(at(plan, 'uid-map'));
    expect(at(plan, 'gid-map')).toBeGreaterThan(at(plan, 'setgroups'));
  });

  it('hides each host path once, relative to the new root, and binds the control socket on the host', () => {
    expect(find(plan, 'hide').map((a) => a[0])).toEqual(['root', 'run/enclave', 'var/lib/enclave']);
    expect(find(plan, 'control')).toEqual([[inputs.control]]);
  });

  it('mounts /home 0755 and /tmp 1777 nosuid,nodev with size and inode caps owned by session root', () => {
    expect(find(plan, 'tmpfs', 'home')).toEqual([['home', 'nosuid,nodev', 'mode=0755,size=536870912,nr_inodes=65536,uid=0,gid=0']]);
    expect(find(plan, 'tmpfs', 'tmp')).toEqual([['tmp', 'nosuid,nodev', 'mode=1777,size=268435456,nr_inodes=1000,uid=0,gid=0']]);
  });

  it('mounts the secret tmpfs 0700 noexec, after creating their mount points in a fresh /run', () => {
    for (const m of ['run/enclave/auth', 'run/enclave/env']) {
      expect(find(plan, 'tmpfs', m)).toEqual([[m, 'nosuid,nodev,noexec', 'mode=0700,size=1048576,nr_inodes=256,uid=0,gid=0']]);
      expect(at(plan, 'mkdir', m)).toBeGreaterThan(at(plan, 'tmpfs', 'run'));
      expect(at(plan, 'tmpfs', m)).toBeGreaterThan(at(plan, 'mkdir', m));
    }
  });

  it('gives a minimal /dev: the usual nodes, a private devpts, shm, mqueue', () => {
    expect(find(plan, 'bind-dev').map((a) => a[0])).toEqual(['dev/null', 'dev/zero', 'dev/full', 'dev/random', 'dev/urandom', 'dev/tty']);
    expect(find(plan, 'devpts')).toEqual([['dev/pts', 'nosuid,noexec', 'newinstance,ptmxmode=0666,mode=0620']]);
    expect(find(plan, 'symlink', 'pts/ptmx')).toEqual([['pts/ptmx', 'dev/ptmx']]);
    expect(find(plan, 'proc')).toEqual([['proc', 'nosuid,nodev,noexec']]);
  });

  it('says every mount\'s flags and every mask\'s tmpfs: /proc nosuid,nodev,noexec, /sys read-only too, mqueue, masks and hidden paths an empty 0555 tmpfs', () => {
    expect(find(plan, 'sysfs')).toEqual([['sys', 'ro,nosuid,nodev,noexec']]);
    expect(find(plan, 'mqueue')).toEqual([['dev/mqueue', 'nosuid,nodev,noexec']]);
    expect(MASK_DATA).toBe('size=4k,nr_inodes=1,mode=0555');
    for (const o of [...find(plan, 'mask'), ...find(plan, 'hide')]) expect(o[1], o[0]).toBe(MASK_DATA);
    expect(find(plan, 'mask').length).toBeGreaterThan(0);
  });

  it('masks the runc/Docker path lists after /proc and /sys are mounted, and makes the read-only list read-only', () => {
    expect(find(plan, 'mask').map((a) => a[0])).toEqual(expect.arrayContaining(['proc/kcore', 'proc/keys', 'sys/firmware', 'sys/devices/system/cpu/cpu0/thermal_throttle']));
    expect(find(plan, 'readonly').map((a) => a[0])).toEqual(['proc/bus', 'proc/fs', 'proc/irq', 'proc/sys', 'proc/sysrq-trigger']);
    expect(at(plan, 'mask')).toBeGreaterThan(at(plan, 'sysfs'));
  });

  it('ends with hostname, rlimits, no capabilities and the seccomp program itself', () => {
    expect(find(plan, 'rlimit')).toEqual([['NOFILE', '4096', '4096'], ['CORE', '0', '0'], ['FSIZE', 'unlimited', 'unlimited']]);
    expect(find(plan, 'capabilities')).toEqual([['0']]);
    const last = plan.ops[plan.ops.length - 1]!;
    expect(last.op).toBe('seccomp');
    expect(Buffer.from(last.args[0]!, 'hex')).toEqual(inputs.seccomp);
  });

  it('plans the veth (parent side) and eth0 (session side), and binds the generated files', () => {
    expect(find(plan, 'veth')).toEqual([['ve-0000000001', 'eth0', '02:00:0a:c8:00:05', '1500', 'enclave0']]);
    expect(find(plan, 'ipv4')).toEqual([['eth0', '10.200.0.5', '32', '10.200.0.1']]);
    expect(find(plan, 'bind-file')).toEqual([['/var/lib/enclave/sessions/s-0000000001/resolv.conf', 'etc/resolv.conf']]);
    const none = buildPlan({ ...inputs, network: undefined });
    expect(find(none, 'veth')).toEqual([]);
    expect(find(none, 'ipv4')).toEqual([]);
  });

  it('round-trips through the stored form, and refuses a corrupt one by name', () => {
    expect(parseStoredPlan(JSON.stringify(plan), 'session s-1')).toEqual(plan);
    expect(() => parseStoredPlan('{"version":2,"ops":[]}', 'session s-1')).toThrow(/session s-1: stored plan is malformed/);
    expect(() => parseStoredPlan('nope', 'session s-1')).toThrow(/not JSON/);
  });

  it('refuses bad hostnames, relative host paths and field separators before the helper sees them', () => {
    expect(() => buildPlan({ ...inputs, hostname: 'Bad_Host' })).toThrow(/hostname/);
    expect(() => buildPlan({ ...inputs, root: { kind: 'host', rootfs: '/', masks: ['relative'] } })).toThrow(/absolute/);
    expect(() => buildPlan({ ...inputs, files: [{ source: '/a\tb', target: '/etc/x' }] })).toThrow(PlanError);
  });

  const injected = {
    files: [
      { path: '/run/enclave/auth/github.token', mode: 0o400 },
      { path: '/run/enclave/env/OPENAI_API_KEY', mode: 0o400 },
    ],
    env: [{ name: 'GIT_TERMINAL_PROMPT', value: '0' }, { name: 'EMPTY', value: '' }, { name: 'GIT_CONFIG_VALUE_0', value: `!f() { printf 'a=%s\\n' "$(cat '/x')"; }; f` }],
    envFiles: [{ name: 'GITHUB_TOKEN', path: '/run/enclave/auth/github.token' }],
  };

  it('writes secret files into the secret mounts as blobs, and sets the environment after seccomp', () => {
    const p = buildPlan({ ...inputs, injected });
    expect(find(p, 'file')).toEqual([
      ['run/enclave/auth/github.token', '0400', '0', '0', '0'],
      ['run/enclave/env/OPENAI_API_KEY', '0400', '0', '0', '1'],
    ]);
    expect(at(p, 'file')).toBeGreaterThan(at(p, 'tmpfs', 'run/enclave/env'));
    expect(p.ops.slice(at(p, 'seccomp') + 1).map((o) => [o.phase, o.op, ...o.args])).toEqual([
      ['exec', 'env', 'GIT_TERMINAL_PROMPT', '0'],
      ['exec', 'env', 'EMPTY', ''],
      ['exec', 'env', 'GIT_CONFIG_VALUE_0', injected.env[2]!.value],
      ['exec', 'env-file', 'GITHUB_TOKEN', '/run/enclave/auth/github.token'],
    ]);
    // The values are not in the plan: only in the blobs beside it.
    expect(JSON.stringify(p)).not.toContain('ghp_');
    expect(check(serializePlan(p, [Buffer.from('ghp_x'), Buffer.from('sk\tline\n')]))).toEqual({ ok: true, out: 'ok\n' });
  });

  it('refuses a secret file outside the secret mounts', () => {
    expect(() => buildPlan({ ...inputs, injected: { ...injected, files: [{ path: '/etc/passwd', mode: 0o400 }] } })).toThrow(/not a file directly in/);
    expect(() => buildPlan({ ...inputs, injected: { ...injected, files: [{ path: '/run/enclave/auth/../x', mode: 0o400 }] } })).toThrow(PlanError);
  });

  it('normalizes host paths', () => {
    expect(relativeToRoot('/var//lib/../lib/enclave/')).toBe('var/lib/enclave');
    expect(relativeToRoot('/')).toBe('');
  });
});

describe('enclave-init --check refuses what the op table does not allow', () => {
  const good = serializePlan(buildPlan(inputs)).toString();
  const lines = good.trimEnd().split('\n');
  const withLines = (edit: (l: string[]) => string[]) => edit([...lines]).join('\n') + '\n';
  const cases: [string, string][] = [
    ['no header', withLines((l) => l.slice(1))],
    ['an unknown op', withLines((l) => [...l.slice(0, 2), 'host\tchroot\t/', ...l.slice(2)])],
    ['an op in the wrong phase', withLines((l) => l.map((x) => x.replace(/^mount\tproc\t/, 'final\tproc\t')))],
    ['phases out of order', withLines((l) => [...l.slice(0, -2), 'host\thide\tetc', ...l.slice(-2)])],
    ['a wrong arity', withLines((l) => l.map((x) => (x.startsWith('parent\tuid-map') ? 'parent\tuid-map\t0\t1' : x)))],
    ['a target that climbs out', withLines((l) => l.map((x) => x.replace('mount\ttmpfs\thome\t', 'mount\ttmpfs\t../home\t')))],
    ['an absolute target', withLines((l) => l.map((x) => x.replace('mount\tmkdir\tdev/pts\t', 'mount\tmkdir\t/dev/pts\t')))],
    ['an interface name longer than IFNAMSIZ', withLines((l) => l.map((x) => x.replace('ve-0000000001', 'a-name-longer-than-ifnamsiz')))],
    ['a second uid map', withLines((l) => l.flatMap((x) => (x.startsWith('parent\tuid-map') ? [x, x] : [x])))],
    ['no seccomp program', withLines((l) => [...l.slice(0, -2), l[l.length - 1]!])],
    ['a malformed seccomp program', withLines((l) => l.map((x) => (x.startsWith('final\tseccomp') ? 'final\tseccomp\tabc' : x)))],
    ['an op after seccomp', withLines((l) => [...l.slice(0, -1), 'final\thostname\tx', l[l.length - 1]!])],
    ['a capability past the ceiling (CAP_SYS_ADMIN)', withLines((l) => l.map((x) => (x.startsWith('final\tcapabilities') ? 'final\tcapabilities\t200000' : x)))],
    ['a capability past the ceiling (CAP_NET_RAW)', withLines((l) => l.map((x) => (x.startsWith('final\tcapabilities') ? 'final\tcapabilities\t2000' : x)))],
    ['an overlay without a layered root', withLines((l) => [...l.slice(0, 2), ...l.slice(2).flatMap((x) => (x.startsWith('mount\ttmpfs\thome') ? ['mount\toverlay\tusr\t0', x] : [x]))])],
    ['a file op naming a blob that is not there', withLines((l) => [...l.slice(0, -2), 'mount\tfile\trun/enclave/env/X\t0400\t0\t0\t0', ...l.slice(-2)])],
    ['an exec-phase op before the set-up ends', withLines((l) => [...l.slice(0, -2), 'exec\tenv\tA\tb', ...l.slice(-2)])],
    ['a set-up op after an exec-phase op', withLines((l) => [...l.slice(0, -1), 'exec\tenv\tA\tb', 'final\thostname\tx', l[l.length - 1]!])],
    ['an env op with a bad variable name', withLines((l) => [...l.slice(0, -1), 'exec\tenv\t1A\tb', l[l.length - 1]!])],
    ['an env-file op with a relative path', withLines((l) => [...l.slice(0, -1), 'exec\tenv-file\tA\trun/enclave/env/A', l[l.length - 1]!])],
    ['blob lengths that do not match', good.replace(/\nend\n$/, '\nend\t5\n') + 'abc'],
    ['no end line', withLines((l) => l.slice(0, -1))],
  ];
  it.each(cases)('refuses %s', (_, text) => {
    const r = spawnSync(helperPaths.init, ['--check'], { input: text, encoding: 'utf8', env: {} });
    expect(r.stdout).toMatch(/^error\tplan\t22\t/);
    expect(r.status).toBe(helperTable().steps.get('plan'));
  });

  it('accepts a file op with its content as a blob', () => {
    const plan = buildPlan(inputs);
    plan.ops.splice(plan.ops.findIndex((o) => o.phase === 'final'), 0, { phase: 'mount', op: 'file', args: ['run/enclave/env/FOO', '0400', '0', '0', '0'] });
    expect(check(serializePlan(plan, [Buffer.from('secret value\n')])).ok).toBe(true);
  });
});

describe('what a session is shown of itself: lxcfs\'s files and its own cgroups', () => {
  const view: PlanInputs = {
    ...inputs,
    lxcfs: '/var/lib/enclave/lxcfs/mnt',
    cgroupView: [
      { at: 'cpu,cpuacct', version: 1, controllers: 'cpu,cpuacct' },
      { at: 'memory', version: 1, controllers: 'memory' },
      { at: 'unified', version: 2 },
    ],
  };
  const plan = buildPlan(view);

  it('binds each lxcfs file over its kernel file once /proc and /sys are mounted, before the masks', () => {
    expect(find(plan, 'lxcfs-file')).toEqual(LXCFS_FILES.map((f) => [`/var/lib/enclave/lxcfs/mnt/${f}`, f]));
    expect(LXCFS_FILES).toEqual(expect.arrayContaining(['proc/meminfo', 'proc/cpuinfo', 'proc/stat', 'proc/uptime', 'proc/loadavg', 'sys/devices/system/cpu/online']));
    expect(at(plan, 'lxcfs-file')).toBeGreaterThan(at(plan, 'sysfs'));
    expect(at(plan, 'mask')).toBeGreaterThan(at(plan, 'lxcfs-file'));
    // Without lxcfs (sessions.lxcfs = "off") the kernel's files stay.
    expect(find(buildPlan(inputs), 'lxcfs-file')).toEqual([]);
  });

  it('shows the hierarchies it is in on a tmpfs at /sys/fs/cgroup, made read-only once they are mounted', () => {
    const ops = plan.ops.filter((o) => o.args[0]?.startsWith('sys/fs/cgroup')).map((o) => [o.op, ...o.args].join(' '));
    expect(ops).toEqual([
      'tmpfs sys/fs/cgroup nosuid,nodev,noexec mode=0755,size=16384,nr_inodes=32,uid=0,gid=0',
      'mkdir sys/fs/cgroup/cpu,cpuacct 0555',
      'cgroupfs sys/fs/cgroup/cpu,cpuacct cpu,cpuacct',
      'mkdir sys/fs/cgroup/memory 0555',
      'cgroupfs sys/fs/cgroup/memory memory',
      'mkdir sys/fs/cgroup/unified 0555',
      'cgroup2fs sys/fs/cgroup/unified',
      'readonly sys/fs/cgroup',
    ]);
    expect(at(plan, 'tmpfs', 'sys/fs/cgroup')).toBeGreaterThan(at(plan, 'sysfs'));
    // A unified host: the v2 tree itself; no view, no mount.
    expect(find(buildPlan({ ...view, cgroupView: [{ at: '', version: 2 }] }), 'cgroup2fs')).toEqual([['sys/fs/cgroup']]);
    expect(find(buildPlan({ ...view, cgroupView: [{ at: '', version: 2 }] }), 'tmpfs', 'sys/fs/cgroup')).toEqual([]);
    expect(buildPlan(inputs).ops.filter((o) => o.op.startsWith('cgroup') && o.op !== 'cgroup')).toEqual([]);
  });

  it('is accepted whole by enclave-init --check', () => {
    expect(check(serializePlan(plan))).toEqual({ ok: true, out: 'ok\n' });
    expect(check(serializePlan(buildPlan({ ...view, cgroupView: [{ at: '', version: 2 }] })))).toEqual({ ok: true, out: 'ok\n' });
  });

  it('refuses a view that is not a hierarchy\'s directory, or mixes /sys/fs/cgroup itself with others', () => {
    expect(() => buildPlan({ ...view, cgroupView: [{ at: '../memory', version: 1, controllers: 'memory' }] })).toThrow(PlanError);
    expect(() => buildPlan({ ...view, cgroupView: [{ at: '', version: 2 }, { at: 'memory', version: 1, controllers: 'memory' }] })).toThrow(PlanError);
    expect(() => buildPlan({ ...view, cgroupView: [{ at: 'memory', version: 1 }] })).toThrow(PlanError);
  });

  it('plans without lxcfs while it does not serve when it is "on" (LXD degrades), refuses when it is "required" (fail closed)', () => {
    const host: HostFacts = { seccomp: { workspace: Buffer.alloc(8), strict: Buffer.alloc(8), system: Buffer.alloc(8) }, sysMasks: [], bridge: 'enclave0', mtu: 1500, gateway: 0x0ac80001, lxcfsDown: 'lxcfs exited (code 1) while starting' };
    const row = { id: 's-0000000001', hostname: 's-0000000001', id_slot: 0 };
    const limits = { memory_mb: 512, pids: 512, cpu_percent: 100, tmp_mb: 64, home_mb: 64 };
    const s = { cgroups: [], lease: undefined, files: [], profile: 'strict' as const };
    const on = parseConfig('[sessions]\nrootfs = "/"\n', 'test');
    expect(on.sessions.lxcfs).toBe('on');
    expect(find(planFor(row, limits, on, host, s), 'lxcfs-file')).toEqual([]);
    expect(find(planFor(row, limits, on, { ...host, lxcfs: '/x/lxcfs/mnt' }, s), 'lxcfs-file')).toHaveLength(LXCFS_FILES.length);
    const required = parseConfig('[sessions]\nrootfs = "/"\nlxcfs = "required"\n', 'test');
    expect(() => planFor(row, limits, required, host, s)).toThrow(/lxcfs is not serving \(sessions.lxcfs = "required"\): lxcfs exited/);
    expect(find(planFor(row, limits, required, { ...host, lxcfs: '/x/lxcfs/mnt' }, s), 'lxcfs-file')).toHaveLength(LXCFS_FILES.length);
    const off = parseConfig('[sessions]\nrootfs = "/"\nlxcfs = "off"\n', 'test');
    expect(find(planFor(row, limits, off, { ...host, lxcfs: '/x/lxcfs/mnt' }, s), 'lxcfs-file')).toEqual([]);
  });
});

describe('a layered workspace root', () => {
  const layered: PlanInputs = {
    ...inputs,
    root: { kind: 'layers', layers: [{ source: '/var/lib/enclave/rootfs/base-1', at: '/' }, { source: '/usr', at: '/usr' }], upper: { bytes: 64 * 1024 * 1024, inodes: 4096 } },
    capabilities: capabilityMask('workspace'),
    setgroups: setgroupsFor('workspace'),
  };
  const plan = buildPlan(layered);

  it('idmaps each layer in the parent phase, then builds root, upper and overlays before any other mount', () => {
    expect(find(plan, 'layer')).toEqual([['/var/lib/enclave/rootfs/base-1'], ['/usr']]);
    expect(find(plan, 'upper')).toEqual([['mode=0755,size=67108864,nr_inodes=4096,uid=0,gid=0']]);
    expect(find(plan, 'root')).toEqual([['0']]);
    expect(find(plan, 'overlay')).toEqual([['usr', '1']]);
    expect(find(plan, 'hide')).toEqual([]);
    const firstMount = plan.ops.findIndex((o) => o.phase === 'mount');
    expect(plan.ops.slice(firstMount, firstMount + 3).map((o) => o.op)).toEqual(['upper', 'root', 'overlay']);
    expect(at(plan, 'bind-file')).toBeGreaterThan(at(plan, 'overlay'));
    expect(check(serializePlan(plan)).ok).toBe(true);
  });

  it('gives root\'s HOME (/root) a tmpfs of its own only where the root is read-only', () => {
    const roots = (p: typeof plan) => find(p, 'tmpfs').filter((a) => a[0] === 'root');
    expect(roots(plan)).toEqual([]); // on the writable layer
    const readOnly = buildPlan({ ...layered, root: { ...(layered.root as LayeredRoot), upper: undefined } });
    expect(roots(readOnly)).toEqual([['root', 'nosuid,nodev', `mode=0700,size=${inputs.home.bytes},nr_inodes=${inputs.home.inodes},uid=0,gid=0`]]);
    expect(roots(buildPlan(inputs))).toHaveLength(1); // the host's own "/", read-only
    expect(check(serializePlan(readOnly)).ok).toBe(true);
  });

  it('keeps the documented workspace set, allows setgroups, and strict keeps nothing', () => {
    const mask = BigInt('0x' + find(plan, 'capabilities')[0]![0]);
    const names = WORKSPACE_CAPS.filter((c) => (mask >> BigInt(c.bit)) & 1n).map((c) => c.name);
    expect(names).toEqual(['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'SETFCAP']);
    for (const c of DROPPED_CAPS) expect((mask >> BigInt(c.bit)) & 1n, c.name).toBe(0n);
    expect(find(plan, 'setgroups')).toEqual([['allow']]);
    expect(capabilityMask('strict')).toBe('0');
    expect(setgroupsFor('strict')).toBe('deny');
  });

  it('masks what it is given once the overlays are up: relative, once each, sorted; never "/"', () => {
    const masked = buildPlan({ ...layered, root: { ...(layered.root as LayeredRoot), masks: ['/usr/share/polkit-1/rules.d', '/usr/lib/dbus-1.0/helper', '/usr/share/polkit-1/rules.d/'] } });
    const masks = masked.ops.filter((o) => o.op === 'mask' && o.args[0]!.startsWith('usr/'));
    expect(masks.map((o) => [o.phase, ...o.args])).toEqual([['mount', 'usr/lib/dbus-1.0/helper', MASK_DATA], ['mount', 'usr/share/polkit-1/rules.d', MASK_DATA]]);
    expect(masked.ops.indexOf(masks[0]!)).toBe(at(masked, 'overlay') + 1);
    expect(check(serializePlan(masked)).ok).toBe(true);
    expect(find(plan, 'mask').filter(([m]) => m!.startsWith('usr/'))).toEqual([]);
    expect(() => buildPlan({ ...layered, root: { ...(layered.root as LayeredRoot), masks: ['/'] } })).toThrow(/cannot mask "\/"/);
    expect(() => buildPlan({ ...layered, root: { ...(layered.root as LayeredRoot), masks: ['/usr/a\tb'] } })).toThrow(PlanError);
  });

  it('refuses a layer index that is not there, and a first layer that is not "/"', () => {
    const text = serializePlan(plan).toString().replace('mount\toverlay\tusr\t1', 'mount\toverlay\tusr\t2');
    expect(check(text).out).toMatch(/^error\tplan\t22\t.*no layer 2/);
    expect(() => buildPlan({ ...layered, root: { kind: 'layers', layers: [{ source: '/usr', at: '/usr' }] } })).toThrow(/first layer/);
  });
});

describe('volumes in a plan', () => {
  const withVolumes = buildPlan({
    ...inputs,
    volumes: [
      { source: '/state/volumes/mnt/code', target: '/home/me/code', readonly: false },
      { source: '/state/volumes/mnt/home', target: '/home', readonly: false },
      { source: '/state/volumes/mnt/docs', target: '/srv/docs', readonly: true },
    ],
  });

  it('idmaps each in the parent phase and mounts it on its target, a parent before what is under it', () => {
    expect(find(withVolumes, 'volume')).toEqual([['/state/volumes/mnt/home', '-'], ['/state/volumes/mnt/code', '-'], ['/state/volumes/mnt/docs', 'ro']]);
    expect(find(withVolumes, 'volume-at')).toEqual([['home', '0'], ['home/me/code', '1'], ['srv/docs', '2']]);
    expect(check(serializePlan(withVolumes)).ok).toBe(true);
  });

  it('puts a volume on /home instead of the home tmpfs', () => {
    expect(find(withVolumes, 'tmpfs').map((a) => a[0])).not.toContain('home');
    expect(find(buildPlan(inputs), 'tmpfs').map((a) => a[0])).toContain('home');
  });

  it('refuses two volumes on one target, and a volume index that is not there', () => {
    const twice = { source: '/v', target: '/w', readonly: false };
    expect(() => buildPlan({ ...inputs, volumes: [twice, twice] })).toThrow(/same target/);
    const text = serializePlan(withVolumes).toString().replace('mount\tvolume-at\tsrv/docs\t2', 'mount\tvolume-at\tsrv/docs\t3');
    expect(check(text).out).toMatch(/^error\tplan\t22\t.*no volume 3/);
  });
});

describe('a system root', () => {
  const system: PlanInputs = {
    ...inputs,
    root: {
      kind: 'layers',
      layers: [{ source: '/var/lib/enclave/rootfs/base-1', at: '/' }, { source: '/usr', at: '/usr' }],
      upper: { bytes: 64 * 1024 * 1024, inodes: 4096 },
      masks: ['/usr/share/polkit-1/rules.d'],
      hideBy: 'whiteout',
    },
    capabilities: capabilityMask('system'),
    setgroups: setgroupsFor('system'),
    seccomp: serializeBpf(compileSeccomp(archForNode(), policyFor('system'))),
    lxcfs: '/var/lib/enclave/lxcfs',
    system: { nodes: { 'net/tun': '/var/lib/enclave/devices/tun', fuse: '/var/lib/enclave/devices/fuse' } },
  };
  const plan = buildPlan(system);

  it('keeps every capability, each with its reason, the one full set the helper takes besides its ceiling', () => {
    expect(BigInt('0x' + find(plan, 'capabilities')[0]![0])).toBe(CAPS_SYSTEM);
    expect(new Set(SYSTEM_CAPS.map((c) => c.bit)).size).toBe(41);
    for (const c of SYSTEM_CAPS) expect(c.why.length, c.name).toBeGreaterThan(20);
    expect(find(plan, 'setgroups')).toEqual([['allow']]);
    expect(check(serializePlan(plan))).toEqual({ ok: true, out: 'ok\n' });
    // Any other set beyond the ceiling is still refused.
    const more = serializePlan(plan).toString().replace(/capabilities\t[0-9a-f]+/, 'capabilities\t200000');
    expect(check(more).out).toMatch(/^error\tplan\t22\t/);
  });

  it('stages its volumes, so they propagate in locked; read-only ones only so (the helper refuses them unstaged)', () => {
    const vol = (readonly: boolean) => [{ source: '/var/lib/enclave/volumes/mnt/v-1', target: '/srv', readonly }];
    const ro = buildPlan({ ...system, volumes: vol(true) });
    expect(find(ro, 'volume')).toEqual([['/var/lib/enclave/volumes/mnt/v-1', 'ro']]);
    // Host phase, right after the root is bound: before the clone copies the namespace.
    expect(ro.ops.slice(0, 3).map((o) => o.op)).toEqual(['rootfs', 'stage-volumes', 'control']);
    const text = serializePlan(ro).toString('latin1');
    expect(check(text)).toEqual({ ok: true, out: 'ok\n' });
    expect(check(text.replace('host\tstage-volumes\n', '')).out).toMatch(/^error\tplan\t22\t.*a plan keeping every capability mounts a volume read-only only staged/);
    // No read-only volume, nothing staged (read-write ones come as fds, unlocked: runtimes inside remount their binds);
    // and staging needs a layered root with a read-only volume.
    expect(find(plan, 'stage-volumes')).toEqual([]);
    const rw = buildPlan({ ...system, volumes: vol(false) });
    expect(find(rw, 'stage-volumes')).toEqual([]);
    expect(check(serializePlan(rw).toString('latin1').replace('host\tcontrol\t', 'host\tstage-volumes\nhost\tcontrol\t')).out).toMatch(/stage-volumes needs a layered root and a read-only volume/);
    // On the host's root (not layered) a system session's read-only volume would come in unlocked: refused.
    const hostRoot = { ...system, root: { kind: 'host' as const, rootfs: '/', masks: [] } };
    expect(() => buildPlan({ ...hostRoot, volumes: vol(true) })).toThrow(/^a system session on the host's root \(sessions.rootfs "\/"\) cannot mount a volume read-only/);
    expect(find(buildPlan({ ...hostRoot, volumes: vol(false) }), 'stage-volumes')).toEqual([]);
    // Under workspace a layered root stages them too; on the host's root they come as before (seccomp refuses it every mount call).
    expect(find(buildPlan({ ...inputs, root: { ...(system.root as LayeredRoot), hideBy: 'mount' }, volumes: vol(true) }), 'stage-volumes')).toEqual([[]]);
    expect(find(buildPlan({ ...inputs, root: { kind: 'host', rootfs: '/', masks: [] }, volumes: vol(true) }), 'volume')).toEqual([['/var/lib/enclave/volumes/mnt/v-1', 'ro']]);
  });

  it('mounts its cgroup view writable (delegated), the tmpfs holding it read-only; the helper takes the new ops', () => {
    const cgroupView = [{ at: 'memory', version: 1 as const, controllers: 'memory' }, { at: 'unified', version: 2 as const }];
    const delegated = buildPlan({ ...system, cgroupView });
    const ops = delegated.ops.filter((o) => o.args[0]?.startsWith('sys/fs/cgroup')).map((o) => [o.op, ...o.args].join(' '));
    expect(ops).toEqual([
      'tmpfs sys/fs/cgroup nosuid,nodev,noexec mode=0755,size=16384,nr_inodes=32,uid=0,gid=0',
      'mkdir sys/fs/cgroup/memory 0555',
      'cgroupfs-rw sys/fs/cgroup/memory memory',
      'mkdir sys/fs/cgroup/unified 0555',
      'cgroup2fs-rw sys/fs/cgroup/unified',
      'readonly sys/fs/cgroup',
    ]);
    expect(check(serializePlan(delegated))).toEqual({ ok: true, out: 'ok\n' });
    expect(find(buildPlan({ ...system, cgroupView: [{ at: '', version: 2 }] }), 'cgroup2fs-rw')).toEqual([['sys/fs/cgroup']]);
    // The same view under workspace: the read-only ops.
    const plain = buildPlan({ ...inputs, cgroupView });
    expect(plain.ops.map((o) => o.op).filter((o) => o.endsWith('-rw'))).toEqual([]);
    expect(find(plain, 'cgroupfs')).toEqual([['sys/fs/cgroup/memory', 'memory']]);
  });

  it('gives the kernel\'s /proc and /sys: no masks, no read-only binds, no lxcfs over them', () => {
    const covered = [...find(plan, 'mask'), ...find(plan, 'readonly'), ...find(plan, 'lxcfs-file')].map((a) => a[0]!);
    for (const p of [...MASKED_PATHS, ...READONLY_PATHS, ...system.sysMasks]) expect(covered).not.toContain(relativeToRoot(p));
    expect(find(plan, 'lxcfs-file')).toEqual([]);
    expect(find(plan, 'proc')).toEqual([['proc', 'nosuid,nodev,noexec']]);
    expect(find(plan, 'sysfs')).toEqual([['sys', 'ro,nosuid,nodev,noexec']]);
  });

  it('hides the host\'s unreadable /usr entries by whiteouts in its layer, not by mounts it could lift', () => {
    expect(find(plan, 'whiteout')).toEqual([['usr/share/polkit-1/rules.d']]);
    expect(find(plan, 'mask').map((a) => a[0])).not.toContain('usr/share/polkit-1/rules.d');
    expect(() => buildPlan({ ...system, root: { ...(system.root as LayeredRoot), upper: undefined } })).toThrow(/whiteouts need a writable root/);
    expect(() => buildPlan({ ...system, root: { ...(system.root as LayeredRoot), hideBy: 'mount' } })).toThrow(/whiteouts/);
    const noUpper = serializePlan(plan).toString().replace(/^mount\tupper\t.*\n/m, '');
    // Refused by the helper's check too (it also refuses it when it builds the root: whiteouts need an upper).
    expect(check(noUpper).out).toMatch(/^error\tplan\t22\t.*a layered root keeping every capability needs a writable layer/);
  });

  it('adds /dev/net/tun and /dev/fuse from the daemon\'s nodes, and no other device', () => {
    expect(find(plan, 'bind-dev').map((a) => a[0])).toEqual(['dev/null', 'dev/zero', 'dev/full', 'dev/random', 'dev/urandom', 'dev/tty']);
    expect(find(plan, 'dev-node')).toEqual([['/var/lib/enclave/devices/tun', 'dev/net/tun'], ['/var/lib/enclave/devices/fuse', 'dev/fuse']]);
    expect(at(plan, 'mkdir', 'dev/net')).toBeLessThan(at(plan, 'dev-node'));
    expect(find(buildPlan(inputs), 'dev-node')).toEqual([]);
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
