// The node-to-node channel's inputs: the caller's identity a peer sends
// (only numbers, bounded) and [cluster.peer] in the config (HOST:PORT and
// absolute paths), each refused with one line naming what is wrong.
import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostPort, identityOf, loadPeerTls, PeerClient, PeerCredentials, peerTlsProblem, serveWith, serverOptions } from '../../src/fleet/peerTls.js';
import { X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { parseConfig } from '../../src/config/load.js';
import { makeCa, makeCrl, makeNodeCert } from '../../stress/fleetCerts.js';

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
    expect(parseConfig(`${base}listen = "h:1"\ncrl = "/crl.pem"\n`, 'x.toml').cluster?.peer?.crl).toBe('/crl.pem');
    expect(() => parseConfig(`${base}listen = "h:1"\ncrl = "crl.pem"\n`, 'x.toml')).toThrow(/cluster\.peer\.crl.*absolute path/);
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
      expect(await creds.reload()).toBe(false);
      const next = made('n1');
      put(next);
      expect(await creds.reload()).toBe(true);
      expect(seen).toHaveLength(1);
      expect(creds.tls.cert.equals(Buffer.from(seen[0]!))).toBe(true);
      put(made('n1'), { key: true });
      await expect(creds.reload()).rejects.toThrow(/cluster\.peer: .*; the running certificate stays/);
      expect(seen).toHaveLength(1);
      put(next);
      expect(await creds.reload()).toBe(false);
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
      expect(await creds.reload()).toBe(true);
      expect(await Promise.all(calls)).toEqual(calls.map(() => 200));
      expect(await get()).toBe(200);
      expect(seen.at(-1)).toBe(new X509Certificate(readFileSync(next.cert)).fingerprint256);
    } finally {
      peer?.close();
      server?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a revoked node both ways once the CRLs are reloaded, closing its open connections once idle, and says so at its own start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-peer-'));
    const servers: HttpsServer[] = [];
    const clients: PeerClient[] = [];
    try {
      const ca = makeCa(join(dir, 'pki'));
      const crl = join(dir, 'crl.pem');
      makeCrl(ca, [], crl);
      const n1 = makeNodeCert(mkdtempSync(join(dir, 'c-')), ca, 'n1');
      const n2 = makeNodeCert(mkdtempSync(join(dir, 'c-')), ca, 'n2');
      const files = (c: { cert: string; key: string }, crlFile = crl) => ({ listen: '127.0.0.1:1', ca: ca.ca, ...c, crl: crlFile });
      /**
       * A node's listener as listenPeer makes it (served with its credentials as they are reloaded); /slow is
       * answered after 300 ms, /stream begins its answer at once and ends it after 300 ms.
       */
      const listener = async (creds: PeerCredentials) => {
        const srv = createHttpsServer(serverOptions(creds.tls), (req, res) => {
          if (req.url === '/stream') res.write('begun');
          setTimeout(() => res.end('ok'), req.url === '/' ? 0 : 300);
        });
        serveWith(srv, creds);
        // What the daemon logs of a refused peer (server.ts): the error only says it hung up; the socket says why.
        srv.on('tlsClientError', (e: Error, sock: TLSSocket) => refused.push(`${e.message}: ${String(sock.authorizationError)}`));
        servers.push(srv);
        await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
        return `127.0.0.1:${(srv.address() as AddressInfo).port}`;
      };
      const call = (from: PeerClient, to: string, endpoint: string, path = '/') =>
        new Promise<number>((resolve, reject) => {
          const req = from.request(to, endpoint, { method: 'GET', path }, { uid: 0, gids: [] });
          req.on('response', (res) => (res.resume(), res.on('end', () => resolve(res.statusCode ?? 0))));
          req.on('error', reject);
          req.end();
        });
      const refused: string[] = [];
      const n2Creds = new PeerCredentials(files(n2), 'n2');
      await n2Creds.check();
      const atN2 = await listener(n2Creds);
      const fromN1 = new PeerClient(new PeerCredentials(files(n1), 'n1'));
      clients.push(fromN1);
      expect(await call(fromN1, 'n2', atN2)).toBe(200);

      // A node revoked while a call of it is in flight (its answer begun, or not yet): that call is answered, then
      // its connection closes and the node is refused at its next call's handshake.
      const n3 = makeNodeCert(mkdtempSync(join(dir, 'c-')), ca, 'n3');
      const fromN3 = new PeerClient(new PeerCredentials(files(n3), 'n3'));
      clients.push(fromN3);
      for (const [from, path, revoked] of [
        [fromN3, '/stream', [n3.cert]],
        [fromN1, '/slow', [n3.cert, n1.cert]],
      ] as const) {
        // Two connections: one left idle, one for the call in flight.
        expect(await Promise.all([call(from, 'n2', atN2), call(from, 'n2', atN2)])).toEqual([200, 200]);
        const inFlight = call(from, 'n2', atN2, path);
        await new Promise((r) => setTimeout(r, 100));
        makeCrl(ca, [...revoked], crl);
        expect(await n2Creds.reload()).toBe(true);
        expect(await inFlight).toBe(200);
        // An answer not yet begun says Connection: close. One begun before cannot: its connection's close, once it
        // ended, reaches the caller before its next call, unless that call left in the same instant (then it fails, as
        // one does at a keep-alive timeout).
        if (path === '/stream') await new Promise((r) => setTimeout(r, 50));
        // TLS 1.3: the client's side of the handshake is done before the server checks its certificate, so both hear a hang-up.
        const before = refused.length;
        await expect(call(from, 'n2', atN2), path).rejects.toThrow(/socket hang up/);
        expect(refused.slice(before), path).toEqual(['socket hang up: CERT_REVOKED']);
      }
      // A node that read the CRLs does not call a revoked one either.
      const atN1 = await listener(new PeerCredentials({ listen: '127.0.0.1:1', ca: ca.ca, ...n1 }, 'n1'));
      const fromN2 = new PeerClient(n2Creds);
      clients.push(fromN2);
      await expect(call(fromN2, 'n1', atN1)).rejects.toThrow(/certificate revoked/);
      // n1 itself, started or reloaded under these CRLs, says why (the running material stays on a reload).
      await expect(new PeerCredentials(files(n1), 'n1').check()).rejects.toThrow(/^cluster\.peer\.cert is revoked by cluster\.peer\.crl: every node refuses this node$/);

      // CRLs every peer would refuse this node by: said at start, or the reload refused.
      const other = makeCa(join(dir, 'other'), 'another-ca');
      const foreign = join(dir, 'foreign.pem');
      makeCrl(other, [], foreign);
      await expect(new PeerCredentials(files(n2, foreign), 'n2').check()).rejects.toThrow(/^cluster\.peer\.crl holds no CRL of the CA that signed cluster\.peer\.cert/);
      const expiring = join(dir, 'expiring.pem');
      makeCrl(ca, [], expiring, 1);
      await new Promise((r) => setTimeout(r, 1500));
      await expect(new PeerCredentials(files(n2, expiring), 'n2').check()).rejects.toThrow(/^cluster\.peer\.crl is past its next update/);
      writeFileSync(join(dir, 'empty.pem'), 'nothing here\n');
      expect(() => new PeerCredentials(files(n2, join(dir, 'empty.pem')), 'n2')).toThrow(/^cluster\.peer\.crl holds no CRL \(PEM/);
      const running = n2Creds.tls;
      copyFileSync(expiring, crl);
      await expect(n2Creds.reload()).rejects.toThrow(/past its next update.*; the running certificate stays$/);
      expect(n2Creds.tls).toBe(running);
    } finally {
      for (const c of clients) c.close();
      for (const s of servers) s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
