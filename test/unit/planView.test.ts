// PlanView: what a stored plan says about its session's root and control
// socket, read by name; and the snapshot sections that rest on it.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { helperPaths } from '../../src/native/addon.js';
import { buildPlan, serializePlan, parseStoredPlan, PlanError, type PlanInputs, type SessionPlan } from '../../src/isolation/plan.js';
import { planView } from '../../src/isolation/planView.js';
import { sectionsOf } from '../../src/snapshots/snapshot.js';

const host: PlanInputs = {
  hostname: 'web-1',
  ids: { hostBase: 165536, size: 65536 },
  cgroups: ['/sys/fs/cgroup/enclave/s-0000000001'],
  newroot: '/var/lib/enclave/newroot',
  root: { kind: 'host', rootfs: '/', masks: ['/var/lib/enclave'] },
  capabilities: '0',
  setgroups: 'deny',
  control: '/var/lib/enclave/sessions/s-0000000001/control',
  home: { bytes: 1 << 20, inodes: 64 },
  tmp: { bytes: 1 << 20, inodes: 64 },
  secrets: { bytes: 1 << 20, inodes: 64 },
  rlimits: [],
  seccomp: Buffer.from('060000000000ff7f', 'hex'),
  sysMasks: [],
  files: [],
};
const layered: PlanInputs = {
  ...host,
  root: {
    kind: 'layers',
    layers: [{ source: '/var/lib/enclave/rootfs/base-1', at: '/' }, { source: '/usr', at: '/usr' }, { source: '/opt/tools', at: '/opt/tools' }],
    upper: { bytes: 64 << 20, inodes: 4096 },
  },
};

describe('PlanView', () => {
  it('reads a host root: its rootfs, no layers, no upper, no overlays, its control socket', () => {
    const v = planView(buildPlan(host));
    expect(v.control).toBe(host.control);
    expect(v.rootfs).toEqual({ newroot: '/var/lib/enclave/newroot', source: '/' });
    expect(v.layers).toEqual([]);
    expect(v.rootLayer).toBeUndefined();
    expect(v.upper).toBeUndefined();
    expect(v.overlays).toEqual([]);
    expect(v.mounts()).toEqual([{ at: '/', source: '/' }]);
    expect(v.hostPath('/usr/bin/bash')).toBe('/usr/bin/bash');
  });

  it('reads a layered root: layers in order, the root layer, the upper, each overlay with its layer', () => {
    const v = planView(buildPlan(layered));
    expect(v.layers).toEqual(['/var/lib/enclave/rootfs/base-1', '/usr', '/opt/tools']);
    expect(v.rootfs.source).toBe('/var/lib/enclave/rootfs/base-1');
    expect(v.rootLayer).toBe(0);
    expect(v.upper).toBe('mode=0755,size=67108864,nr_inodes=4096,uid=0,gid=0');
    expect(v.overlays).toEqual([
      { at: 'usr', layer: 1, source: '/usr' },
      { at: 'opt/tools', layer: 2, source: '/opt/tools' },
    ]);
    expect(v.mounts().map((m) => m.at)).toEqual(['/', '/usr', '/opt/tools']);
  });

  it('finds the host path of a session path under the deepest mount', () => {
    const v = planView(buildPlan(layered));
    expect(v.hostPath('/usr/bin/bash')).toBe('/usr/bin/bash');
    expect(v.hostPath('/usr')).toBe('/usr');
    expect(v.hostPath('/usrlocal/x')).toBe('/var/lib/enclave/rootfs/base-1/usrlocal/x');
    expect(v.hostPath('/etc/passwd')).toBe('/var/lib/enclave/rootfs/base-1/etc/passwd');
    expect(v.hostPath('/opt/tools/bin/x')).toBe('/opt/tools/bin/x');
    expect(v.hostPath('/opt/other')).toBe('/var/lib/enclave/rootfs/base-1/opt/other');
  });

  it('reads a stored plan the same as the one built', () => {
    const plan = buildPlan(layered);
    expect(planView(parseStoredPlan(JSON.stringify(plan), 's-1'))).toEqual(planView(plan));
  });

  it('refuses, by name, a plan whose root or control it cannot read', () => {
    const plan = buildPlan(layered);
    const edit = (f: (p: SessionPlan) => void) => {
      const p = structuredClone(plan);
      f(p);
      return p;
    };
    expect(() => planView(edit((p) => p.ops.find((o) => o.op === 'overlay')!.args.splice(1, 1, '7')))).toThrow(new PlanError("the plan's overlay op names layer 7; it has 3"));
    expect(() => planView(edit((p) => p.ops.find((o) => o.op === 'overlay')!.args.splice(1, 1, 'x')))).toThrow(/the plan's overlay op: not a decimal number/);
    expect(() => planView(edit((p) => p.ops.find((o) => o.op === 'layer')!.args.push('extra')))).toThrow(/the plan's layer op has 2 arguments/);
    expect(() => planView(edit((p) => (p.ops = p.ops.filter((o) => o.op !== 'control'))))).toThrow(/no control op/);
  });
});

describe('snapshot sections of a stored plan', () => {
  it('are the root and each overlay over the upper, none without an upper or layers', () => {
    expect(sectionsOf(buildPlan(layered))).toEqual([
      { upper: 'root', lower: '/var/lib/enclave/rootfs/base-1', at: '' },
      { upper: 'usr', lower: '/usr', at: 'usr' },
      { upper: 'opt_tools', lower: '/opt/tools', at: 'opt/tools' },
    ]);
    expect(sectionsOf(buildPlan({ ...layered, root: { ...(layered.root as Extract<PlanInputs['root'], { kind: 'layers' }>), upper: undefined } }))).toEqual([]);
    expect(sectionsOf(buildPlan(host))).toEqual([]);
  });
});

// Running sessions keep the plan their daemon stored. Nothing gives a stored
// plan to enclave-init again (the init of a running session parsed its plan
// when it started, and exec goes to that init); the daemon only reads it:
// control socket, layers, overlays, upper (PlanView), which are the same.
describe('a plan stored before mount flags and mask data were in the plan', () => {
  const stored = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'storedPlans-before-flags.json'), 'utf8')) as Record<'host' | 'layered', unknown>;
  const old = (k: 'host' | 'layered') => parseStoredPlan(JSON.stringify(stored[k]), `stored ${k}`);

  it('reads as it did: control socket, rootfs, layers, upper, overlays, snapshot sections', () => {
    const h = planView(old('host'));
    expect([h.control, h.rootfs, h.layers, h.upper, h.overlays]).toEqual(['/var/lib/enclave/sessions/s-1/control', { newroot: '/var/lib/enclave/newroot', source: '/' }, [], undefined, []]);
    const l = planView(old('layered'));
    expect(l.layers).toEqual(['/base', '/usr']);
    expect(l.upper).toBe('mode=0755,size=64,nr_inodes=8,uid=0,gid=0');
    expect(l.overlays).toEqual([{ at: 'usr', layer: 1, source: '/usr' }]);
    expect(l.hostPath('/usr/bin/sh')).toBe('/usr/bin/sh');
    expect(sectionsOf(old('layered'))).toEqual([
      { upper: 'root', lower: '/base', at: '' },
      { upper: 'usr', lower: '/usr', at: 'usr' },
    ]);
  });

  it('is refused by this enclave-init (its proc op has no flags), which is why none is ever sent to it', () => {
    const r = spawnSync(helperPaths.init, ['--check'], { input: serializePlan(old('host'), [Buffer.from('x')]), encoding: 'utf8', env: {} });
    expect(r.stdout).toMatch(/^error\tplan\t22\t.*: hide takes 2 arguments, got 1/);
  });
});
