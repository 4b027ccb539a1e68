// Links read through rtnetlink (addon link()/links()), which the daemon uses
// instead of /sys/class/net: the same answers as sysfs in the host's netns,
// and the answers of the caller's own netns where sysfs still shows the host's.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { addon, nativeBuildDir } from '../../src/native/addon.js';
import { linkCounters, linkExists } from '../../src/network/hostNetwork.js';

const SYS = '/sys/class/net';
const isRoot = process.getuid?.() === 0;

describe('addon link reads', () => {
  it('list the links sysfs lists, with their MTU and bridge', () => {
    // Other runs on this host add and remove links: a reading between two equal sysfs listings.
    let links = addon().links();
    for (let i = 0; i < 20; i++) {
      const before = readdirSync(SYS).sort().join();
      links = addon().links();
      if (readdirSync(SYS).sort().join() === before) break;
    }
    expect(links.map((l) => l.name).sort()).toEqual(readdirSync(SYS).sort());
    const byIndex = new Map(links.map((l) => [l.index, l.name]));
    for (const l of links) {
      expect(l.index, l.name).toBe(Number(readFileSync(join(SYS, l.name, 'ifindex'), 'utf8')));
      expect(l.mtu, l.name).toBe(Number(readFileSync(join(SYS, l.name, 'mtu'), 'utf8')));
      const master = existsSync(join(SYS, l.name, 'master')) ? readlinkSync(join(SYS, l.name, 'master')).split('/').pop() : undefined;
      expect(l.master === 0 ? undefined : byIndex.get(l.master), l.name).toBe(master);
    }
  });

  it('read one link by name with its counters, and null for a link that is not there', () => {
    const lo = addon().link('lo');
    expect(lo).toMatchObject({ name: 'lo', index: 1, master: 0 });
    expect(lo!.mtu).toBe(Number(readFileSync(join(SYS, 'lo', 'mtu'), 'utf8')));
    expect(typeof lo!.rxBytes).toBe('number');
    expect(lo!.rxBytes).toBeGreaterThanOrEqual(0);
    expect(addon().link('enclave-none0')).toBeNull();
    expect(addon().link('')).toBeNull();
    expect(addon().link('x'.repeat(40))).toBeNull();
  });

  it('linkExists and linkCounters answer for the daemon\'s own links, and nothing for a name that is not one', () => {
    expect(linkExists('lo')).toBe(true);
    expect(linkExists('enclave-none0')).toBe(false);
    expect(linkExists('../lo')).toBe(false);
    expect(linkCounters('lo')?.rxBytes).toBeGreaterThanOrEqual(0);
    expect(linkCounters('enclave-none0')).toBeNull();
  });

  it.skipIf(!isRoot)("answer for the caller's own netns, where sysfs still shows the host's", () => {
    // A process in a fresh netns sharing our mount namespace: what a fleet
    // node is (nsenter --net). Its sysfs is the host's; its links are lo only.
    const script = `const a = require(${JSON.stringify(join(nativeBuildDir, 'enclave_addon.node'))});
      console.log(JSON.stringify({ links: a.links().map((l) => l.name), sys: require('node:fs').readdirSync('${SYS}').length }));`;
    const out = execFileSync('unshare', ['--net', process.execPath, '-e', script], { encoding: 'utf8' });
    const seen = JSON.parse(out) as { links: string[]; sys: number };
    expect(seen.links).toEqual(['lo']);
    expect(seen.sys).toBeGreaterThan(1);
  });
});
