// The two pieces that let a destroy return before its link is gone: the
// firewall elements applied strictly in the order asked, and the reaper that
// waits for a link, deletes one that outlives its grace, and frees the
// address only once the link is gone.
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { AddressBindings } from '../../src/network/firewall.js';
import { LinkReaper } from '../../src/network/linkReaper.js';

const log = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('AddressBindings', () => {
  it('applies changes one at a time, in the order asked, even when an earlier one is slow or fails', async () => {
    const applied: string[] = [];
    let running = 0;
    const apply = async (script: string) => {
      running++;
      expect(running).toBe(1); // never two scripts at once
      // The first change is the slow one: a later one must still wait for it.
      await sleep(applied.length === 0 ? 30 : 1);
      applied.push(script.trim());
      running--;
      if (script.startsWith('delete') && script.includes('10.0.0.9')) throw new Error('No such file or directory');
    };
    const b = new AddressBindings('t', apply);
    const ip = (s: string) => s.split('.').reduce((n, x) => n * 256 + Number(x), 0);
    const unbindOld = b.unbind(ip('10.0.0.2')); // the address given back...
    const failing = b.unbind(ip('10.0.0.9'));
    const bindNew = b.bind(ip('10.0.0.2')); // ...and leased again right after
    await expect(failing).rejects.toThrow(/No such file/);
    await Promise.all([unbindOld, bindNew]);
    expect(applied).toEqual([
      'delete element inet t bindings { 02:00:0a:00:00:02 . 10.0.0.2 }',
      'delete element inet t bindings { 02:00:0a:00:00:09 . 10.0.0.9 }',
      'add element inet t bindings { 02:00:0a:00:00:02 . 10.0.0.2 }',
    ]);
  });
});

describe('LinkReaper', () => {
  it('frees the address once the link is gone, and not before', async () => {
    const links = new Set(['ve-a']);
    const freed: string[] = [];
    const r = new LinkReaper({ log, pollMs: 5, graceMs: 10_000, exists: (l) => links.has(l), remove: () => expect.fail('deleted a link still within its grace'), gone: (s) => (freed.push(s), true) });
    r.retire('s-a', 've-a');
    await sleep(30);
    expect(freed).toEqual([]);
    links.delete('ve-a'); // the kernel's netns cleanup
    await sleep(30);
    expect(freed).toEqual(['s-a']);
    expect(r.size).toBe(0);
    r.close();
  });

  it('deletes a link that outlives its grace, then frees the address; retries a release the store refused', async () => {
    const links = new Set(['ve-b']);
    const removed: string[] = [];
    let refusals = 2; // a full disk refusing the write twice
    const freed: string[] = [];
    const r = new LinkReaper({
      log,
      pollMs: 5,
      graceMs: 40,
      exists: (l) => links.has(l),
      remove: (l) => (removed.push(l), links.delete(l)),
      gone: (s) => (refusals-- > 0 ? false : (freed.push(s), true)),
    });
    r.retire('s-b', 've-b');
    r.retire('s-b', 've-b'); // idempotent
    await sleep(20);
    expect(removed).toEqual([]);
    for (let i = 0; i < 40 && freed.length === 0; i++) await sleep(10);
    expect(removed).toEqual(['ve-b']);
    expect(freed).toEqual(['s-b']);
    expect(r.size).toBe(0);
    r.close();
  });
});
