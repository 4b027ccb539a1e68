// The node-to-node channel's inputs: the caller's identity a peer sends
// (only numbers, bounded) and [cluster.peer] in the config (HOST:PORT and
// absolute paths), each refused with one line naming what is wrong.
import { describe, expect, it } from 'vitest';
import { hostPort, identityOf } from '../../src/fleet/peerTls.js';
import { parseConfig } from '../../src/config/load.js';

describe('fleet peer channel inputs', () => {
  it('takes a uid and gids from the headers, and refuses anything else', () => {
    expect(identityOf({ 'x-enclave-uid': '1000', 'x-enclave-gids': '1000,27' })).toEqual({ uid: 1000, gids: [1000, 27] });
    expect(identityOf({ 'x-enclave-uid': '0', 'x-enclave-gids': '' })).toEqual({ uid: 0, gids: [] });
    for (const bad of [{}, { 'x-enclave-uid': 'root' }, { 'x-enclave-uid': '-1' }, { 'x-enclave-uid': '1', 'x-enclave-gids': '1,x' }, { 'x-enclave-uid': ['1', '2'] }, { 'x-enclave-uid': '' }, { 'x-enclave-uid': ' ' }, { 'x-enclave-uid': '1', 'x-enclave-gids': '5,' }, { 'x-enclave-uid': '1e3' }, { 'x-enclave-uid': '0x10' }]) {
      expect(() => identityOf(bad), JSON.stringify(bad)).toThrow(/x-enclave-uid/);
    }
  });

  it('reads a node endpoint as HOST:PORT, or says the node has no channel', () => {
    expect(hostPort('n', '127.0.0.1:7440')).toEqual({ host: '127.0.0.1', port: 7440 });
    expect(() => hostPort('node-b', '/run/enclave/enclave.sock')).toThrow(/node node-b advertises no node-to-node endpoint/);
  });

  it('validates [cluster.peer]', () => {
    const base = '[cluster]\nendpoints = ["http://127.0.0.1:2379"]\nnode = "n1"\n[cluster.peer]\nca = "/c"\ncert = "/n.crt"\nkey = "/n.key"\n';
    expect(parseConfig(`${base}listen = "127.0.0.1:7443"\n`, 'x.toml').cluster?.peer?.listen).toBe('127.0.0.1:7443');
    expect(() => parseConfig(`${base}listen = "7443"\n`, 'x.toml')).toThrow(/cluster\.peer\.listen.*HOST:PORT/);
    expect(() => parseConfig(base.replace('"/c"', '"c"') + 'listen = "h:1"\n', 'x.toml')).toThrow(/cluster\.peer\.ca.*absolute path/);
  });
});
