// Published ports are kernel NAT (one map element per port) plus a host port
// the daemon holds with a bound socket that does not listen. The publisher
// holds a port before it forwards it, undoes a publish that fails half-way,
// removes the element before it lets the port go, and at daemon stop lets
// the ports go but leaves the elements: the ports keep answering.
import { describe, expect, it } from 'vitest';
import { constants } from 'node:os';
import pino from 'pino';
import { PortForwards } from '../../src/network/firewall.js';
import { HostPortInUseError, PortPublisher, type PortHolder } from '../../src/network/publish.js';

const ip = (s: string) => s.split('.').reduce((n, x) => n * 256 + Number(x), 0) >>> 0;
const sessionIp = ip('10.200.0.5');

/** The kernel, recorded: every nft script and every hold and release, in order. */
function world(opts: { taken?: string[]; failScript?: RegExp; failWith?: string } = {}) {
  const events: string[] = [];
  const lines: string[] = [];
  let next = 100;
  const holder: PortHolder = {
    hold: (host, port) => {
      if (opts.taken?.includes(`${host}:${port}`)) throw Object.assign(new Error('bind: Address already in use'), { errno: constants.errno.EADDRINUSE });
      const fd = next++;
      events.push(`hold ${host}:${port} fd ${fd}`);
      return fd;
    },
    release: (fd) => void events.push(`release fd ${fd}`),
  };
  const apply = async (script: string) => {
    const line = script.trim();
    if (opts.failScript?.test(line)) throw new Error(opts.failWith ?? (line.startsWith('delete') ? 'Error: No such file or directory' : 'Error: Could not process rule: File exists'));
    events.push(line);
  };
  const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) });
  const p = new PortPublisher(log, new PortForwards('t', apply), holder);
  return { p, events, lines };
}

describe('PortPublisher', () => {
  it('holds the host port, then adds its element; unpublish removes the element, then lets the port go', async () => {
    const { p, events } = world();
    await p.publish('s-1', sessionIp, [{ host_ip: '127.0.0.1', host_port: 8080, session_port: 80 }]);
    await p.unpublish('s-1');
    await p.unpublish('s-1'); // again: nothing left to do
    expect(events).toEqual([
      'hold 127.0.0.1:8080 fd 100',
      'add element inet t published { 127.0.0.1 . 8080 : 10.200.0.5 . 80 }',
      'delete element inet t published { 127.0.0.1 . 8080 }',
      'release fd 100',
    ]);
  });

  it('refuses a host port another program holds, and undoes what the same call did', async () => {
    const { p, events } = world({ taken: ['127.0.0.1:9000'] });
    const mappings = [
      { host_ip: '127.0.0.1', host_port: 8080, session_port: 80 },
      { host_ip: '127.0.0.1', host_port: 9000, session_port: 90 },
    ];
    const e = await p.publish('s-1', sessionIp, mappings).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HostPortInUseError);
    expect((e as HostPortInUseError).code).toBe('EADDRINUSE');
    expect((e as Error).message).toBe('127.0.0.1:9000: the host port is already in use');
    expect(events).toEqual([
      'hold 127.0.0.1:8080 fd 100',
      'add element inet t published { 127.0.0.1 . 8080 : 10.200.0.5 . 80 }',
      'delete element inet t published { 127.0.0.1 . 8080 }',
      'release fd 100',
    ]);
  });

  it('lets the port go when its element cannot be added', async () => {
    const { p, events } = world({ failScript: /^add/ });
    await expect(p.publish('s-1', sessionIp, [{ host_ip: '127.0.0.1', host_port: 8080, session_port: 80 }])).rejects.toThrow(/File exists/);
    expect(events).toEqual(['hold 127.0.0.1:8080 fd 100', 'release fd 100']);
  });

  it('at daemon stop lets every host port go and removes no element', async () => {
    const { p, events } = world();
    await p.publish('s-1', sessionIp, [{ host_ip: '127.0.0.1', host_port: 8080, session_port: 80 }]);
    await p.publish('s-2', ip('10.200.0.6'), [{ host_ip: '127.0.0.2', host_port: 8080, session_port: 80 }]);
    events.length = 0;
    p.closeAll();
    expect(events).toEqual(['release fd 100', 'release fd 101']);
  });

  it('after a start holds the loaded ports again, logs one another program took, and removes the loaded elements when the session ends', async () => {
    const { p, events, lines } = world({ taken: ['127.0.0.1:9000'] });
    p.loaded([
      { session_id: 's-1', host_ip: '127.0.0.1', host_port: 8080, address: sessionIp, session_port: 80 },
      { session_id: 's-1', host_ip: '127.0.0.1', host_port: 9000, address: sessionIp, session_port: 90 },
    ]);
    p.holdAgain('s-1');
    expect(events).toEqual(['hold 127.0.0.1:8080 fd 100']); // no element added: the load put them there
    expect(lines.join('')).toMatch(/cannot hold a published host port again.*127\.0\.0\.1:9000|127\.0\.0\.1:9000.*cannot hold a published host port again/);
    await p.unpublish('s-1');
    expect(events.slice(1)).toEqual([
      'delete element inet t published { 127.0.0.1 . 8080 }',
      'release fd 100',
      'delete element inet t published { 127.0.0.1 . 9000 }',
    ]);
  });

  it('unpublishes one port: an element already gone is no error; one that cannot be removed keeps the port held and throws', async () => {
    const gone = world({ failScript: /^delete/ });
    await gone.p.publish('s-1', sessionIp, [{ host_ip: '127.0.0.1', host_port: 8080, session_port: 80 }]);
    await gone.p.unpublishOne('s-1', { host_ip: '127.0.0.1', host_port: 8080 }); // "No such file or directory"
    expect(gone.events.at(-1)).toBe('release fd 100');

    const { p, events } = world({ failScript: /^delete/, failWith: 'Error: Operation not permitted' });
    await p.publish('s-1', sessionIp, [{ host_ip: '127.0.0.1', host_port: 8080, session_port: 80 }]);
    await expect(p.unpublishOne('s-1', { host_ip: '127.0.0.1', host_port: 8080 })).rejects.toThrow(/not permitted/);
    expect(events.filter((e) => e.startsWith('release'))).toEqual([]);
  });
});
