// The node-to-node channel's inputs: the caller's identity a peer sends
// (only numbers, bounded) and [cluster.peer] in the config (HOST:PORT and
// absolute paths), each refused with one line naming what is wrong.
import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostPort, identityOf, loadPeerTls, PeerCredentials, peerTlsProblem, serveWith, serverOptions } from '../../src/fleet/peerTls.js';
import { PeerClient } from '../../src/fleet/peerClient.js';
import { X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { parseConfig } from '../../src/config/load.js';
import { pino } from 'pino';
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

  it("cuts a revoked node's connections both ways once the CRLs are reloaded, leaves every other node's alone, and refuses its next handshake", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-peer-'));
    const servers: HttpsServer[] = [];
    const clients: PeerClient[] = [];
    try {
      const ca = makeCa(join(dir, 'pki'));
      const crl = join(dir, 'crl.pem');
      makeCrl(ca, [], crl);
      const cert = (name: string) => makeNodeCert(mkdtempSync(join(dir, 'c-')), ca, name);
      const [n1, n2, n4] = [cert('n1'), cert('n2'), cert('n4')];
      const files = (c: { cert: string; key: string }, crlFile = crl) => ({ listen: '127.0.0.1:1', ca: ca.ca, ...c, crl: crlFile });
      // What the listeners saw: a handshake done (LISTENER<-NODE), a handshake refused (as the daemon logs it: server.ts).
      const handshakes: string[] = [];
      const refused: string[] = [];
      const requests: string[] = [];
      /** A node's listener as listenPeer makes it; /slow is answered after 300 ms, /stream begins at once and ends after 300 ms. */
      const listener = async (creds: PeerCredentials, tls = creds.tls, me = 'n2') => {
        const srv = createHttpsServer(serverOptions(tls), (req, res) => {
          requests.push(`${me}<-${String((req.socket as TLSSocket).getPeerCertificate()?.subject?.CN)} ${req.url ?? ''}`);
          if (req.url === '/stream') res.write('begun');
          setTimeout(() => res.end('ok'), req.url === '/' ? 0 : 300);
        });
        serveWith(srv, creds, pino({ level: 'silent' }));
        // Listening after serveWith: a connection it cut is gone (no certificate) by then.
        srv.on('secureConnection', (sock: TLSSocket) => handshakes.push(`${me}<-${String(sock.getPeerCertificate()?.subject?.CN)}`));
        srv.on('tlsClientError', (e: Error, sock: TLSSocket) => refused.push(`${e.message}: ${String(sock.authorizationError)}`));
        servers.push(srv);
        await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
        return `127.0.0.1:${(srv.address() as AddressInfo).port}`;
      };
      /** A call's status once its answer ended; rejected if it was cut. */
      const call = (from: PeerClient, to: string, endpoint: string, path = '/', long = false) =>
        new Promise<number>((resolve, reject) => {
          const req = from.request(to, endpoint, { method: 'GET', path }, { uid: 0, gids: [] }, long);
          req.on('response', (res) => (res.resume(), res.on('end', () => resolve(res.statusCode ?? 0)), res.on('error', reject), res.on('aborted', () => reject(new Error('aborted')))));
          req.on('error', reject);
          req.end();
        });
      const client = (c: { cert: string; key: string }, name: string) => {
        const p = new PeerClient(new PeerCredentials(files(c), name));
        clients.push(p);
        return p;
      };
      const n2Creds = new PeerCredentials(files(n2), 'n2');
      await n2Creds.check();
      const atN2 = await listener(n2Creds);
      const atN1 = await listener(new PeerCredentials({ listen: '127.0.0.1:1', ca: ca.ca, ...n1 }, 'n1'), undefined, 'n1');
      const atN4 = await listener(new PeerCredentials({ listen: '127.0.0.1:1', ca: ca.ca, ...n4 }, 'n4'), undefined, 'n4');
      const [fromN1, fromN4] = [client(n1, 'n1'), client(n4, 'n4')];
      const fromN2 = new PeerClient(n2Creds);
      clients.push(fromN2);
      // Kept-alive connections of n1 and n4 to n2 (one idle, one busy each), and a long call of n2 to n1.
      for (const from of [fromN1, fromN4]) expect(await Promise.all([call(from, 'n2', atN2), call(from, 'n2', atN2)])).toEqual([200, 200]);
      // How each call in flight ends, caught as it ends (it may be cut before the test looks).
      const ended = (p: Promise<number>) => p.then(String, (e: Error) => `cut: ${e.message}`);
      const n1Stream = ended(call(fromN1, 'n2', atN2, '/stream'));
      const n4Slow = ended(call(fromN4, 'n2', atN2, '/slow'));
      const n2Long = ended(call(fromN2, 'n1', atN1, '/stream', true));
      // And n2's own kept-alive connection to n4, which it must keep through its reload.
      expect(await call(fromN2, 'n4', atN4)).toBe(200);
      await new Promise((r) => setTimeout(r, 100));
      const before = [...handshakes];

      makeCrl(ca, [n1.cert], crl);
      expect(await n2Creds.reload()).toBe(true);
      // n1's answer under way is cut on n2's side, and n2's long call to n1 on n2's side.
      expect(await n1Stream).toMatch(/^cut: /);
      expect(await n2Long).toBe("cut: the node's certificate is revoked by cluster.peer.crl");
      // n4's call in flight is answered, and its next call goes on the same connection, as does n2's to n4: no new handshake.
      expect(await n4Slow).toBe('200');
      expect(await call(fromN4, 'n2', atN2)).toBe(200);
      expect(await call(fromN2, 'n4', atN4)).toBe(200);
      expect(handshakes).toEqual(before);
      // n1 is refused at its next handshake (TLS 1.3: its side was done before n2 checked its certificate: a hang-up)...
      await expect(call(fromN1, 'n2', atN2)).rejects.toThrow(/socket hang up|ECONNRESET/);
      expect(refused).toContain('socket hang up: CERT_REVOKED');
      // A second change of the lists still finds each open connection's certificate (Node hands a client's over once): n1's
      // and n4's are cut once both are revoked.
      makeCrl(ca, [n1.cert, n4.cert], crl);
      expect(await n2Creds.reload()).toBe(true);
      // Its agent to n4 was made under the lists before (OpenSSL's context has those): refused all the same, by the
      // lists in use, at the handshake, before any byte of the call is sent.
      const asked = requests.filter((r) => r.startsWith('n4<-n2')).length;
      await expect(call(fromN2, 'n4', atN4)).rejects.toThrow(/^the node's certificate is revoked by cluster\.peer\.crl$/);
      expect(requests.filter((r) => r.startsWith('n4<-n2')).length).toBe(asked);
      makeCrl(ca, [n1.cert], crl);
      expect(await n2Creds.reload()).toBe(true);
      // ...and n2 does not call n1 either.
      await expect(call(fromN2, 'n1', atN1)).rejects.toThrow(/certificate revoked/);

      // A handshake begun under the CRLs before (here: the listener's context is the old one) is cut once done.
      const old = join(dir, 'old.pem');
      makeCrl(ca, [], old);
      const stale = await listener(n2Creds, loadPeerTls(files(n2, old)));
      await expect(call(client(n1, 'n1'), 'n2', stale)).rejects.toThrow(/socket hang up|ECONNRESET/);
      expect(await call(client(n4, 'n4'), 'n2', stale)).toBe(200);

      // n1 itself, started or reloaded under these CRLs, says why.
      await expect(new PeerCredentials(files(n1), 'n1').check()).rejects.toThrow(/^cluster\.peer\.cert \(or a CA above it\) is revoked by cluster\.peer\.crl: every node refuses this node$/);
    } finally {
      for (const c of clients) c.close();
      for (const s of servers) s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses CRLs every peer would refuse the fleet by, at start and on a reload (the running ones kept), and warns before they run out', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-peer-'));
    try {
      const ca = makeCa(join(dir, 'pki'));
      const n2 = makeNodeCert(mkdtempSync(join(dir, 'c-')), ca, 'n2');
      const crl = join(dir, 'crl.pem');
      makeCrl(ca, [], crl);
      const files = (crlFile = crl, caFile = ca.ca) => ({ listen: '127.0.0.1:1', ca: caFile, ...n2, crl: crlFile });
      // A CRL of another CA only; a CA file of two CAs with the CRL of one.
      const other = makeCa(join(dir, 'other'), 'another-ca');
      const foreign = join(dir, 'foreign.pem');
      makeCrl(other, [], foreign);
      expect(() => new PeerCredentials(files(foreign), 'n2')).toThrow(/^cluster\.peer\.crl holds no CRL of the CA 'CN=enclave-fleet-ca' of cluster\.peer\.ca/);
      const two = join(dir, 'two.crt');
      writeFileSync(two, Buffer.concat([readFileSync(ca.ca), readFileSync(other.ca)]));
      expect(() => new PeerCredentials(files(crl, two), 'n2')).toThrow(/^cluster\.peer\.crl holds no CRL of the CA 'CN=another-ca'/);
      writeFileSync(join(dir, 'both.pem'), Buffer.concat([readFileSync(crl), readFileSync(foreign)]));
      await new PeerCredentials(files(join(dir, 'both.pem'), two), 'n2').check();
      // A new key for the CA under the same name (a CA move keeping it): each list goes with the CA that signed it.
      const rekeyed = makeCa(join(dir, 'rekeyed'));
      const rekeyedCrl = join(dir, 'rekeyed.pem');
      makeCrl(rekeyed, [], rekeyedCrl);
      writeFileSync(two, Buffer.concat([readFileSync(ca.ca), readFileSync(rekeyed.ca)]));
      writeFileSync(join(dir, 'both.pem'), Buffer.concat([readFileSync(crl), readFileSync(rekeyedCrl)]));
      await new PeerCredentials(files(join(dir, 'both.pem'), two), 'n2').check();
      expect(() => new PeerCredentials(files(crl, two), 'n2')).toThrow(/^cluster\.peer\.crl holds no CRL of the CA 'CN=enclave-fleet-ca'/);
      // A list naming the fleet's CA that another key signed.
      expect(() => new PeerCredentials(files(rekeyedCrl), 'n2')).toThrow(/^cluster\.peer\.crl: its CRL number 1 names the CA 'CN=enclave-fleet-ca' of cluster\.peer\.ca as its issuer, and that CA did not sign it$/);
      // Past its next update; no CRL at all; not a CRL.
      const expiring = join(dir, 'expiring.pem');
      makeCrl(ca, [], expiring, 1);
      await new Promise((r) => setTimeout(r, 1500));
      expect(() => new PeerCredentials(files(expiring), 'n2')).toThrow(/^cluster\.peer\.crl: the CRL of 'CN=enclave-fleet-ca' is past its next update/);
      writeFileSync(join(dir, 'empty.pem'), 'nothing here\n');
      expect(() => new PeerCredentials(files(join(dir, 'empty.pem')), 'n2')).toThrow(/^cluster\.peer\.crl holds no CRL \(PEM/);
      writeFileSync(join(dir, 'bad.pem'), '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n');
      expect(() => new PeerCredentials(files(join(dir, 'bad.pem')), 'n2')).toThrow(/^cluster\.peer\.crl: its CRL number 1 does not parse/);
      // On a reload: refused, the running material kept.
      const creds = new PeerCredentials(files(), 'n2');
      const running = creds.tls;
      copyFileSync(expiring, crl);
      await expect(creds.reload()).rejects.toThrow(/past its next update.*; the running certificate stays$/);
      expect(creds.tls).toBe(running);
      // Three days before its next update the log says so each hour; past it, louder.
      const said: string[] = [];
      const log = { warn: (_: unknown, m: string) => said.push(`warn ${m}`), error: (_: unknown, m: string) => said.push(`error ${m}`) } as unknown as Parameters<PeerCredentials['watchExpiry']>[0];
      const next = running.revocations!.nextUpdate!.getTime();
      for (const at of [next - 4 * 86_400_000, next - 86_400_000, next + 1000]) clearInterval(creds.watchExpiry(log, () => at));
      expect(said).toEqual([expect.stringMatching(/^warn cluster\.peer\.crl must be made again/), expect.stringMatching(/^error cluster\.peer\.crl is past its next update/)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
