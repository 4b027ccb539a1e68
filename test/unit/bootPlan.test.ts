// --init systemd as policy: who may boot it, what its plan adds (and that
// the helper takes it), and the name=systemd hierarchy only such a session
// is placed in.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootPlanFor, bootRefusal, machineIdFor, MASKED_UNITS, SYSTEMD_PATH } from '../../src/isolation/bootPlan.js';
import { delegationRefused } from '../../src/isolation/cgroupDelegation.js';
import { parentDirs, parseCgroupLayout, sessionCgroupDirs, sessionCgroupView } from '../../src/isolation/cgroups.js';
import { archForNode, compileSeccomp, serializeBpf } from '../../src/isolation/bpf.js';
import { buildPlan, PlanError, serializePlan, type PlanInputs, type SessionPlan } from '../../src/isolation/plan.js';
import { capabilityMask, setgroupsFor } from '../../src/isolation/profiles.js';
import { policyFor } from '../../src/isolation/seccompPolicy.js';
import { helperPaths } from '../../src/native/addon.js';

const line = (id: number, mp: string, fstype: string, opts: string) => `${id} 30 0:${id} / ${mp} rw,relatime - ${fstype} cgroup ${opts}`;
const hybrid = [
  '30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  line(34, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'),
  line(38, '/sys/fs/cgroup/pids', 'cgroup', 'rw,pids'),
  line(39, '/sys/fs/cgroup/systemd', 'cgroup', 'rw,xattr,name=systemd'),
  line(40, '/sys/fs/cgroup/unified', 'cgroup2', 'rw'),
].join('\n');
const unified = '30 22 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate';

const system: PlanInputs = {
  hostname: 'sd',
  ids: { hostBase: 165536, size: 65536 },
  cgroups: ['/sys/fs/cgroup/pids/enclave/s-0000000001'],
  newroot: '/var/lib/enclave/newroot',
  root: { kind: 'layers', layers: [{ source: '/var/lib/enclave/rootfs/base-1', at: '/' }, { source: '/usr', at: '/usr' }], upper: { bytes: 64 << 20, inodes: 4096 }, masks: [], hideBy: 'whiteout' },
  capabilities: capabilityMask('system'),
  setgroups: setgroupsFor('system'),
  control: '/var/lib/enclave/sessions/s-0000000001/control',
  home: { bytes: 64 << 20, inodes: 1000 },
  tmp: { bytes: 64 << 20, inodes: 1000 },
  secrets: { bytes: 1 << 20, inodes: 256 },
  rlimits: [],
  seccomp: serializeBpf(compileSeccomp(archForNode(), policyFor('system'))),
  sysMasks: [],
  files: [],
  system: { nodes: { 'net/tun': '/var/lib/enclave/devices/tun', fuse: '/var/lib/enclave/devices/fuse' } },
};

const ops = (plan: SessionPlan) => plan.ops.map((o) => [o.op, ...o.args].join(' '));
const check = (plan: SessionPlan) => spawnSync(helperPaths.init, ['--check'], { input: serializePlan(plan), encoding: 'utf8', env: {} }).stdout;

describe('--init systemd policy', () => {
  it('refuses it but to a system session with a writable root, and on a v1 host without name=systemd', () => {
    const h = parseCgroupLayout(hybrid);
    expect(bootRefusal('systemd', 'workspace', h, 'minimal')).toBe('--init systemd needs --profile system: systemd mounts, makes namespaces and cgroups, which only a system session may (this session: profile "workspace")');
    expect(bootRefusal('systemd', 'strict', h, 'minimal')).toMatch(/needs --profile system/);
    expect(bootRefusal('systemd', 'system', h, '/')).toMatch(/needs a writable root/);
    expect(bootRefusal('systemd', 'system', h, 'minimal')).toBeUndefined();
    expect(bootRefusal('systemd', 'system', parseCgroupLayout(unified), 'minimal')).toBeUndefined();
    const noNamed = parseCgroupLayout(hybrid.split('\n').filter((l) => !l.includes('name=systemd')).join('\n'));
    expect(bootRefusal('systemd', 'system', noNamed, 'minimal')).toMatch(/no name=systemd hierarchy/);
  });

  it('gives each session its own stable machine ID, and says why each masked unit is', () => {
    expect(machineIdFor('s-0000000001')).toMatch(/^[0-9a-f]{32}$/);
    expect(machineIdFor('s-0000000001')).toBe(machineIdFor('s-0000000001'));
    expect(machineIdFor('s-0000000002')).not.toBe(machineIdFor('s-0000000001'));
    for (const u of MASKED_UNITS) {
      expect(u.unit).toMatch(/^[a-z0-9@_.-]+\.(service|mount|socket|target)$/);
      expect(u.why.length, u.unit).toBeGreaterThan(20);
    }
  });

  it('places only a booting session in name=systemd, shows it there writable, and cleans its parent', () => {
    const h = parseCgroupLayout(hybrid);
    expect(h.named).toBe('/sys/fs/cgroup/systemd');
    expect(sessionCgroupDirs(h, 'enclave', 's-0000000001').map((d) => d.path)).not.toContain('/sys/fs/cgroup/systemd/enclave/s-0000000001');
    const dirs = sessionCgroupDirs(h, 'enclave', 's-0000000001', true);
    expect(dirs).toContainEqual({ path: '/sys/fs/cgroup/systemd/enclave/s-0000000001', controllers: ['name=systemd'], version: 1 });
    expect(sessionCgroupView(h, dirs)).toContainEqual({ at: 'systemd', version: 1, controllers: 'none,name=systemd' });
    expect(parentDirs(h, 'enclave')).toContain('/sys/fs/cgroup/systemd/enclave');
    // A unified host has no such hierarchy: nothing extra.
    expect(sessionCgroupDirs(parseCgroupLayout(unified), 'enclave', 's-0000000001', true)).toHaveLength(1);
  });

  it('refuses to delegate a name=systemd hierarchy with a release agent', () => {
    const root = mkdtempSync(join(tmpdir(), 'boot-'));
    mkdirSync(join(root, 'systemd'));
    const layout = { ...parseCgroupLayout(''), mode: 'hybrid' as const, named: join(root, 'systemd') };
    const d = [{ path: join(root, 'systemd', 'p', 's-1'), controllers: ['name=systemd'], version: 1 as const }];
    expect(delegationRefused(layout, d)).toBeUndefined();
    writeFileSync(join(root, 'systemd', 'release_agent'), '/lib/systemd/systemd-cgroups-agent\n');
    expect(delegationRefused(layout, d)).toMatch(/release agent/);
    rmSync(root, { recursive: true, force: true });
  });
});

describe('a plan that boots systemd', () => {
  const plan = buildPlan({ ...system, boot: bootPlanFor('s-0000000001') });

  it('has room in /run, a /run/lock, its masks, and the boot op last; the helper takes it', () => {
    const o = ops(plan);
    expect(o).toContain('tmpfs run nosuid,nodev mode=0755,size=67108864,nr_inodes=16384,uid=0,gid=0');
    expect(o).toContain('tmpfs run/lock nosuid,nodev,noexec mode=1777,size=4194304,nr_inodes=1024,uid=0,gid=0');
    for (const u of MASKED_UNITS) expect(o).toContain(`symlink /dev/null run/systemd/system/${u.unit}`);
    expect(o.at(-1)).toBe(`boot ${SYSTEMD_PATH} ${machineIdFor('s-0000000001')}`);
    expect(check(plan)).toBe('ok\n');
  });

  it('is a system session\'s only: the plan refuses one without the system profile\'s part', () => {
    expect(() => buildPlan({ ...system, system: undefined, boot: bootPlanFor('s-1') })).toThrow(PlanError);
    // Without --init, no boot op and the small /run.
    expect(ops(buildPlan(system))).toContain('tmpfs run nosuid,nodev mode=0755,size=4194304,nr_inodes=1024,uid=0,gid=0');
    expect(ops(buildPlan(system)).some((x) => x.startsWith('boot '))).toBe(false);
  });

  it('is refused by the helper when its machine ID or init is malformed', () => {
    const text = serializePlan(plan).toString();
    const bad = text.replace(/\tboot\t[^\t]+\t/, '\tboot\trelative/systemd\t');
    expect(spawnSync(helperPaths.init, ['--check'], { input: bad, encoding: 'utf8', env: {} }).stdout).toMatch(/^error\tplan\t22\t/);
  });
});
