// What the minimal root hides of the host's /usr: the find expression on a
// tree of known modes, the parsing of its output into plan-safe topmost
// masks, the one shared scan and its retry, and planning's refusal to make a
// minimal root without the list. No root needed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { masksFrom, MAX_USR_MASKS, scanForMasks, UsrMasks, UsrScanError } from '../../src/isolation/usrMasks.js';
import { parseConfig } from '../../src/config/load.js';
import { planFor, type HostFacts } from '../../src/sessions/planning.js';
import { MASK_DATA, PlanError } from '../../src/isolation/plan.js';

const nul = (...paths: (string | Buffer)[]) => Buffer.concat(paths.flatMap((p) => [Buffer.isBuffer(p) ? p : Buffer.from(p), Buffer.from([0])]));

describe('the find over /usr', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'enclave-usr-'));
    const dir = (rel: string, mode: number) => {
      mkdirSync(join(root, rel));
      chmodSync(join(root, rel), mode);
    };
    const file = (rel: string, mode: number) => {
      writeFileSync(join(root, rel), 'x');
      chmodSync(join(root, rel), mode);
    };
    dir('open', 0o755);
    file('open/plain', 0o644);
    file('open/group-only', 0o640);
    file('open/run-only', 0o711);
    file('open/setuid-world-readable', 0o4754); // others may read it (r--): shown
    file('open/setuid-group-only', 0o4750);
    symlinkSync('group-only', join(root, 'open/link'));
    dir('closed', 0o700);
    dir('closed/inner', 0o700);
    file('closed/secret', 0o600);
    dir('list-only', 0o744);
    dir('pass-only', 0o711);
    chmodSync(root, 0o755);
  });
  afterAll(() => {
    chmodSync(join(root, 'closed'), 0o700);
    rmSync(root, { recursive: true, force: true });
  });

  it('finds what others cannot read, the topmost directory only, and no link', async () => {
    const { masks, widened } = await scanForMasks(root);
    const rel = masks.map((m) => m.slice(root.length + 1));
    expect(rel).toEqual(['closed', 'list-only', 'open/group-only', 'open/run-only', 'open/setuid-group-only', 'pass-only']);
    expect(widened).toEqual([]);
  });

  it('fails with find\'s own words when find fails', async () => {
    await expect(scanForMasks(join(root, 'missing'))).rejects.toThrow(/find over .*missing exited with 1: .*No such file or directory/);
  });
});

describe('masks from find\'s output', () => {
  it('keeps the topmost of nested entries, sorted', () => {
    expect(masksFrom(nul('/usr/b/x', '/usr/a', '/usr/a b', '/usr/a/deeper', '/usr/a/deeper/still', '/usr/b/y', '/usr/ab'), '/usr').masks).toEqual(['/usr/a', '/usr/a b', '/usr/ab', '/usr/b/x', '/usr/b/y']);
  });

  it('masks a name the plan cannot carry (not UTF-8, tab, newline) through its nearest parent that it can', () => {
    const latin1 = Buffer.concat([Buffer.from('/usr/share/odd/caf'), Buffer.from([0xe9]), Buffer.from('/x')]);
    const r = masksFrom(nul(latin1, '/usr/lib/a\tb', '/usr/lib/c/ok'), '/usr');
    expect(r.masks).toEqual(['/usr/lib', '/usr/share/odd']);
    expect(r.widened).toEqual(['/usr/share/odd', '/usr/lib']);
    // A top-level name with a newline leaves only /usr itself: all of it is hidden.
    expect(masksFrom(nul('/usr/x\ny', '/usr/lib/ok'), '/usr')).toEqual({ masks: ['/usr'], widened: ['/usr'] });
  });

  it('refuses output that is cut short, outside the root, or more masks than a plan takes', () => {
    expect(() => masksFrom(Buffer.from('/usr/a'), '/usr')).toThrow(/cut short/);
    expect(() => masksFrom(nul('/etc/shadow'), '/usr')).toThrow(/not under \/usr/);
    const many = Array.from({ length: MAX_USR_MASKS + 1 }, (_, i) => `/usr/f${String(i).padStart(4, '0')}`);
    expect(() => masksFrom(nul(...many), '/usr')).toThrow(UsrScanError);
    expect(masksFrom(nul(...many.slice(1)), '/usr').masks).toHaveLength(MAX_USR_MASKS);
  });
});

describe('the scan of a daemon start', () => {
  it('runs once for every create waiting; a failure reaches them all, and the next call scans again', async () => {
    let runs = 0;
    let fail = true;
    const failed: string[] = [];
    const found: (readonly string[])[] = [];
    const masks = new UsrMasks(
      async () => {
        runs++;
        await new Promise((r) => setTimeout(r, 10));
        if (fail) throw new UsrScanError('find over /usr exited with 1: simulated');
        return { masks: ['/usr/share/polkit-1/rules.d'], widened: [] };
      },
      { found: (m) => found.push(m), failed: (e) => failed.push(e.message) },
    );
    masks.start();
    const waiting = [masks.list(), masks.list()];
    for (const w of waiting) await expect(w).rejects.toThrow(/simulated/);
    expect([runs, failed]).toEqual([1, ['find over /usr exited with 1: simulated']]);
    fail = false;
    expect(await Promise.all([masks.list(), masks.list()])).toEqual([['/usr/share/polkit-1/rules.d'], ['/usr/share/polkit-1/rules.d']]);
    expect(await masks.list()).toEqual(['/usr/share/polkit-1/rules.d']);
    expect([runs, found.length]).toEqual([2, 1]);
  });
});

describe('planning a minimal root', () => {
  const config = parseConfig('', 'test');
  const host: HostFacts = { seccomp: { workspace: Buffer.alloc(8), strict: Buffer.alloc(8), system: Buffer.alloc(8) }, sysMasks: [], bridge: 'enclave0', mtu: 1500, gateway: 0x0ac80001, baseLayer: '/var/lib/enclave/rootfs/base-1', lxcfs: '/var/lib/enclave/lxcfs/mnt' };
  const row = { id: 's-0000000001', hostname: 's-0000000001', id_slot: 0 };
  const limits = { memory_mb: 512, pids: 512, cpu_percent: 100, tmp_mb: 64, home_mb: 64, root_mb: 64 };
  const s = { cgroups: [], lease: undefined, files: [], profile: 'workspace' as const };

  it('refuses to plan it before the scan of /usr is done (fail closed)', () => {
    expect(() => planFor(row, limits, config, host, s)).toThrow(PlanError);
    expect(() => planFor(row, limits, config, host, s)).toThrow(/scan of the host's \/usr/);
  });

  it('masks each entry found, on top of the /usr overlay; a root directory or the host\'s "/" gets none', () => {
    const plan = planFor(row, limits, config, { ...host, usrMasks: ['/usr/share/polkit-1/rules.d', '/usr/lib/x/helper'] }, s);
    const ops = plan.ops.map((o) => `${o.op} ${o.args.join(' ')}`);
    const masks = ops.filter((o) => o.startsWith('mask usr/'));
    expect(masks).toEqual([`mask usr/lib/x/helper ${MASK_DATA}`, `mask usr/share/polkit-1/rules.d ${MASK_DATA}`]);
    expect(ops.indexOf(masks[0]!)).toBeGreaterThan(ops.indexOf('overlay usr 1'));
    for (const rootfs of ['/srv/rootfs', '/']) {
      const other = parseConfig(`[sessions]\nrootfs = "${rootfs}"\n`, 'test');
      const p = planFor(row, rootfs === '/' ? { ...limits, root_mb: undefined } : limits, other, { ...host, usrMasks: ['/usr/share/polkit-1/rules.d'] }, s);
      expect(p.ops.filter((o) => o.op === 'mask' && o.args[0]!.startsWith('usr/'))).toEqual([]);
    }
  });
});
