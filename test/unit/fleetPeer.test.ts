// The node-to-node channel's inputs: the caller's identity a peer sends
// (only numbers, bounded) and [cluster.peer] in the config (HOST:PORT and
// absolute paths), each refused with one line naming what is wrong.
import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostPort, identityOf, loadPeerTls, PeerClient, PeerCredentials, peerTlsProblem, serverOptions } from '../../src/fleet/peerTls.js';
import { X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { parseConfig } from '../../src/config/load.js';
import { makeCa, makeNodeCert } from '../../stress/fleetCerts.js';

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

  it('checks its certificate at start and on each reload: used when the files changed and fit, refused (the running one kept) when not', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-peer-'));
    try {
      const ca = makeCa(join(dir, 'pki'));
      const files = { listen: '127.0.0.1:1', ca: ca.ca, cert: join(dir, 'n1.crt'), key: join(dir, 'n1.key') };
      const put = (c: { cert: string; key: string }, what: { cert?: boolean; key?: boolean } = { cert: true, key: true }) => {
        if (what.cert) copyFileSync(c.cert, files.cert);
        if (what.key) copyFileSync(c.key, files.key);
      };
      const made = (name: string, by = ca) => makeNodeCert(mkdtempSync(join(dir, 'c-')), by, name);
      put(made('n2'));
      expect(() => new PeerCredentials(files, 'n1')).toThrow(/cluster\.peer\.cert names 'n2', not this node \(n1\)/);
      put(made('n1', makeCa(join(dir, 'other'), 'another-ca')));
      expect(() => new PeerCredentials(files, 'n1')).toThrow(/not signed by a CA of cluster\.peer\.ca/);
      const first = made('n1');
      put(first);
      // Expired (checked at a time past its 7 days), or a CA file of two CAs (the second signed it).
      expect(peerTlsProblem(loadPeerTls(files), 'n1', Date.now() + 8 * 86_400_000)).toMatch(/cluster\.peer\.cert is valid from .* to .*, not now/);
      writeFileSync(join(dir, 'two.crt'), Buffer.concat([readFileSync(join(dir, 'other', 'ca.crt')), readFileSync(ca.ca)]));
      expect(peerTlsProblem(loadPeerTls({ ...files, ca: join(dir, 'two.crt') }), 'n1')).toBeUndefined();
      // Signed by an intermediate of the CA: taken with the intermediate in the certificate file, not without.
      const mid = join(dir, 'mid');
      const { spawnSync } = await import('node:child_process');
      writeFileSync(join(dir, 'mid.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign\n');
      for (const args of [
        ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${mid}.key`, '-out', `${mid}.csr`, '-subj', '/CN=mid'],
        ['x509', '-req', '-in', `${mid}.csr`, '-CA', ca.ca, '-CAkey', ca.caKey, '-CAcreateserial', '-out', `${mid}.crt`, '-days', '7', '-extfile', join(dir, 'mid.ext')],
      ])
        expect(spawnSync('openssl', args).status).toBe(0);
      const leaf = made('n1', { ca: `${mid}.crt`, caKey: `${mid}.key` });
      const chained = { ...files, cert: join(dir, 'chain.crt'), key: leaf.key };
      writeFileSync(chained.cert, readFileSync(leaf.cert));
      expect(peerTlsProblem(loadPeerTls(chained), 'n1')).toMatch(/not signed by a CA of cluster\.peer\.ca/);
      writeFileSync(chained.cert, Buffer.concat([readFileSync(leaf.cert), readFileSync(`${mid}.crt`)]));
      expect(peerTlsProblem(loadPeerTls(chained), 'n1')).toBeUndefined();
      const creds = new PeerCredentials(files, 'n1');
      const seen: string[] = [];
      creds.onChange((t) => seen.push(t.cert.toString()));
      expect(creds.reload()).toBe(false);
      const next = made('n1');
      put(next);
      expect(creds.reload()).toBe(true);
      expect(seen).toHaveLength(1);
      expect(creds.tls.cert.equals(Buffer.from(seen[0]!))).toBe(true);
      put(made('n1'), { key: true });
      expect(() => creds.reload()).toThrow(/cluster\.peer: .*; the running certificate stays/);
      expect(seen).toHaveLength(1);
      put(next);
      expect(creds.reload()).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finishes every call in flight or queued when its certificate is rotated, and makes new ones with the new one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-peer-'));
    const client = { listen: '127.0.0.1:1', ca: '', cert: join(dir, 'n1.crt'), key: join(dir, 'n1.key') };
    let server: HttpsServer | undefined;
    let peer: PeerClient | undefined;
    try {
      const ca = makeCa(join(dir, 'pki'));
      client.ca = ca.ca;
      const put = (c: { cert: string; key: string }) => (copyFileSync(c.cert, client.cert), copyFileSync(c.key, client.key));
      put(makeNodeCert(mkdtempSync(join(dir, 'c-')), ca, 'n1'));
      const n2 = makeNodeCert(mkdtempSync(join(dir, 'c-')), ca, 'n2');
      const seen: string[] = [];
      const srv = createHttpsServer({ ...serverOptions({ ca: readFileSync(ca.ca), cert: readFileSync(n2.cert), key: readFileSync(n2.key) }) }, (req, res) => {
        seen.push((req.socket as TLSSocket).getPeerCertificate().fingerprint256);
        setTimeout(() => res.end('ok'), 50);
      });
      server = srv;
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      const endpoint = `127.0.0.1:${(srv.address() as AddressInfo).port}`;
      const creds = new PeerCredentials(client, 'n1');
      peer = new PeerClient(creds);
      const p = peer;
      const get = () =>
        new Promise<number>((resolve, reject) => {
          const req = p.request('n2', endpoint, { method: 'GET', path: '/' }, { uid: 0, gids: [] });
          req.on('response', (res) => (res.resume(), res.on('end', () => resolve(res.statusCode ?? 0))));
          req.on('error', reject);
          req.end();
        });
      // More than the 16 kept-alive connections to one node: some wait in the agent's queue when the rotation comes.
      const calls = Array.from({ length: 24 }, get);
      await new Promise((r) => setTimeout(r, 20));
      const next = makeNodeCert(mkdtempSync(join(dir, 'c-')), ca, 'n1');
      put(next);
      expect(creds.reload()).toBe(true);
      expect(await Promise.all(calls)).toEqual(calls.map(() => 200));
      expect(await get()).toBe(200);
      expect(seen.at(-1)).toBe(new X509Certificate(readFileSync(next.cert)).fingerprint256);
    } finally {
      peer?.close();
      server?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
