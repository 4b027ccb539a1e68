// Fleet mode, reach from anywhere (docs/fleet.md): a real three-member etcd
// cluster and three daemons as three nodes joined by the mutual-TLS channel
// ([cluster.peer], certificates of a CA made for this run). Sessions run on
// node C; everything reaches them through node A: exec byte-exact (a few
// MB of binary out, binary stdin, the exit code), attach with resize and a
// resume after a cut, stop, start and destroy, list and show with their
// node. A peer without a certificate of the fleet CA, or with one that names
// no node, is refused; a tenant on A reaches its own session on C and not
// another's; while C's daemon is down A lists and shows C's sessions
// unreachable, as C last reported them, and reaches them again once C is
// back; a session of C's declared lost (C away past the grace) is listed and
// shown lost to its owner alone until the owner destroys it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { request as plainRequest, request as httpRequest } from 'node:http';
import { spawn } from 'node:child_process';
import { SseReader } from '../../src/client/sseReader.js';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { cliAs, isRoot, listenPort, requestsAs, TestDaemon } from './harness.js';
import { Viewer } from './viewer.js';
import { sessionSchema, type Session } from '../../src/api/schemas.js';
import type { AuditEvent } from '../../src/api/eventSchemas.js';
import { startEtcdCluster, type EtcdCluster } from '../../stress/etcdCluster.js';
import { endFleetRun, fleetNetwork, fleetRunDir } from './fleetRun.js';
import type { FleetNet } from '../../stress/nodeNet.js';
import { makeCa, makeCrl, makeNodeCert, peerSection } from '../../stress/fleetCerts.js';
import { COMPACTION_KEY } from '../../src/fleet/compactor.js';

const GID = 48217; // a group nobody on the machine has
const NOBODY = 65534;
const SMALL = { memory_mb: 128, network: 'none' };
/**
 * Changes no caller waits for reach etcd this often (default 250 ms): long enough that a change shown at once
 * through another node was written before its call was answered, not by a look that happened to follow it.
 */
const LIST_INTERVAL = 'list_interval_ms = 2000\n';
/** Long enough for a daemon restart on a loaded machine (C must be back within it), short enough for CI. */
const GRACE_S = 20;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** An HTTPS GET to a node's peer endpoint with the given client material: the status, or the error's message. */
function peerGet(host: string, port: number, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }, servername: string, path = '/v1/sessions'): Promise<number | string> {
  return peerCall(host, port, tls, servername, 'GET', path).then(
    (r) => r.status,
    (e: Error) => e.message,
  );
}

/** A call over the node-to-node channel as a node would make it (as root): its status and body. */
function peerCall(host: string, port: number, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }, servername: string, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method, servername, ...tls, headers: { 'x-enclave-uid': '0', 'x-enclave-gids': '', 'content-length': '0' }, checkServerIdentity: () => undefined }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

interface Raw {
  name: string;
  data: unknown;
  id: string | undefined;
}

/**
 * GET /v1/events/stream on a daemon's socket, read as it comes: as root, or
 * as another user (a Python client under setpriv, so that nothing of this
 * process's identity comes along), optionally resuming from a place.
 */
class EventsOn {
  readonly seen: Raw[] = [];
  private waiters: Array<() => void> = [];
  private readonly stop: () => void;
  private ended = '';

  constructor(socket: string, who?: { uid: number; groups: number[] }, place?: string) {
    const reader = new SseReader((name, data, id) => {
      this.seen.push({ name, data: JSON.parse(data), id });
      for (const w of this.waiters.splice(0)) w();
    });
    const end = (why: string) => {
      this.ended = why;
      for (const w of this.waiters.splice(0)) w();
    };
    if (who) {
      const py = `import socket,sys
s=socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET /v1/events/stream HTTP/1.0\\r\\nHost: enclave\\r\\n\\r\\n")
while True:
    c=s.recv(65536)
    if not c: break
    sys.stdout.buffer.write(c); sys.stdout.flush()`;
      const p = spawn('setpriv', [`--reuid=${who.uid}`, `--regid=${who.uid}`, `--groups=${who.groups.join(',')}`, '/usr/bin/python3', '-c', py, socket], { stdio: ['ignore', 'pipe', 'pipe'] });
      let head = true;
      p.stdout.setEncoding('utf8').on('data', (t: string) => {
        // The head first (HTTP/1.0: the body as it is, no chunks).
        if (head) {
          const i = t.indexOf('\r\n\r\n');
          if (i < 0) return;
          head = false;
          t = t.slice(i + 4);
        }
        reader.push(t);
      });
      p.on('exit', (code) => end(`the client exited ${code}`));
      this.stop = () => p.kill('SIGKILL');
    } else {
      const req = httpRequest({ socketPath: socket, path: '/v1/events/stream', headers: place ? { 'last-event-id': place } : {} }, (res) => {
        res.setEncoding('utf8').on('data', (t: string) => reader.push(t));
        res.on('end', () => end('the stream ended'));
      });
      req.on('error', (e) => end(e.message));
      req.end();
      this.stop = () => req.destroy();
    }
  }

  /** The first event from the start that matches, waiting for it (20 s at most). */
  async next(match: (e: Raw) => boolean): Promise<Raw> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const hit = this.seen.find(match);
      if (hit) return hit;
      if (this.ended) throw new Error(`${this.ended}; seen: ${this.seen.map((e) => e.name).join(' ')}`);
      if (Date.now() > deadline) throw new Error(`no such event within 20 s; seen: ${this.seen.map((e) => `${e.name} ${e.id ?? ''} ${JSON.stringify(e.data).slice(0, 300)}`).join('\n')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 500);
        this.waiters.push(() => (clearTimeout(t), r()));
      });
    }
  }

  /** Until the daemon ends the stream (`ms` at most): why. */
  async ends(ms: number): Promise<string> {
    const deadline = Date.now() + ms;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error(`the stream did not end within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
    return this.ended;
  }

  close(): void {
    this.stop();
  }
}

describe.skipIf(!isRoot)('fleet: reach a session from any node over mutual TLS', () => {
  let dir: string;
  let etcd: EtcdCluster;
  let net: FleetNet;
  const nodes: Record<'a' | 'b' | 'c', TestDaemon> = {} as never;
  const names = { a: '', b: '', c: '' };
  const ports = { a: 0, b: 0, c: 0 };
  /** Each node's address on the run's bridge (its peer listener's). */
  const hosts = { a: '', b: '', c: '' };
  let caFile = '';
  /** The fleet CA's revocation list every node checks peers against ([cluster.peer] crl). */
  let crlFile = '';
  let far: Session;
  let mine: Session;

  /** A key as etcd holds it (a client of its own: the test's reads do not outlive it). */
  const etcdGet = async (k: string) => {
    const c = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 3000 });
    try {
      return await c.get(k).string();
    } finally {
      c.close();
    }
  };
  const cordon = async (n: string, on: boolean) => expect((await nodes.a.api('POST', `/v1/nodes/${on ? 'cordon' : 'uncordon'}`, { name: n })).status).toBe(200);
  /** A session made through A that lands on C (A and B cordoned meanwhile). */
  const onC = async (make: () => Promise<Session>) => {
    await cordon(names.a, true);
    await cordon(names.b, true);
    try {
      const s = await make();
      expect(s.node).toBe(names.c);
      return s;
    } finally {
      await cordon(names.a, false);
      await cordon(names.b, false);
    }
  };

  /** A session created through A that lands on C (its create answered 201). */
  const createdOnC = (body: Record<string, unknown>) =>
    onC(async () => {
      const r = await nodes.a.api('POST', '/v1/sessions', body);
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      return sessionSchema.parse(r.body);
    });

  beforeAll(async () => {
    dir = fleetRunDir('reach');
    net = fleetNetwork(3);
    etcd = await startEtcdCluster(dir, { salt: 5, host: net.host });
    const ca = makeCa(join(dir, 'pki'));
    caFile = ca.ca;
    crlFile = join(dir, 'pki', 'crl.pem');
    makeCrl(ca, [], crlFile);
    const rules = `[[access.rules]]\nname = "nobody-own"\nuids = [${NOBODY}]\nactions = ["session.*", "events.list", "auth.use"]\nscope = "self"\n`;
    for (const [k, salt, i] of [['a', 41, 0], ['b', 42, 1], ['c', 43, 2]] as const) {
      const d = new TestDaemon({ extraConfig: 'max_sessions = 5\n', netns: net.nodes[i]!.path });
      names[k] = `r${k}-${d.tag}`;
      ports[k] = listenPort(salt);
      hosts[k] = net.nodes[i]!.address;
      const cert = makeNodeCert(join(dir, 'pki'), ca, names[k]);
      const cluster = `[cluster]\nendpoints = ${JSON.stringify(etcd.endpoints)}\nnode = "${names[k]}"\nlease_ttl_s = 2\ngrace_s = ${GRACE_S}\ncompact_interval_s = 1\n${LIST_INTERVAL}${peerSection(`${hosts[k]}:${ports[k]}`, ca.ca, cert, crlFile)}`;
      // Every node has the fleet's access rules (docs/fleet.md: the node a session runs on checks its profile grant at a start).
      d.reconfigure({ extraConfig: `max_sessions = 5\n${rules}${cluster}`, topConfig: k === 'a' ? `socket_gid = ${GID}\n` : '' });
      nodes[k] = d;
      await d.start();
    }
    await until('three ready nodes', async () => {
      const r = await nodes.a.api('GET', '/v1/nodes');
      const l = (r.body as { nodes: { name: string; state: string; endpoint: string }[] }).nodes;
      return [names.a, names.b, names.c].every((n) => l.find((x) => x.name === n)?.state === 'ready') ? l : undefined;
    });
    far = await createdOnC({ ...SMALL, name: 'far', console: true });
    mine = await onC(async () => {
      const r = await cliAs(nodes.a.socket, { uid: NOBODY, groups: [GID] }, ['session', 'create', '--name', 'mine', '--memory', '128', '--network', 'none', '--json']);
      expect(r.code, r.stderr).toBe(0);
      return sessionSchema.parse(JSON.parse(r.stdout));
    });
  }, 180_000);

  afterAll(async () => {
    await endFleetRun(dir, etcd, Object.values(nodes), net);
  }, 120_000);

  it('advertises each node at its mutual-TLS endpoint, and lists and shows C\'s sessions from A and B with their node', async () => {
    const l = (await nodes.b.api('GET', '/v1/nodes')).body as { nodes: { name: string; endpoint: string }[] };
    expect(l.nodes.find((n) => n.name === names.c)?.endpoint).toBe(`${hosts.c}:${ports.c}`);
    for (const through of [nodes.a, nodes.b]) {
      const r = await through.api('GET', '/v1/sessions');
      expect(r.status).toBe(200);
      const all = (r.body as { sessions: Session[] }).sessions;
      expect(all.filter((s) => s.id === far.id)).toEqual([expect.objectContaining({ id: far.id, name: 'far', node: names.c, state: 'running' })]);
    }
    const shown = await nodes.a.show('far');
    expect(shown).toMatchObject({ id: far.id, node: names.c, state: 'running' });
    expect((await nodes.b.show(far.id)).node).toBe(names.c);
    // The text list (each node asked for its table's rows alone) says which node runs each.
    for (const through of [nodes.a, nodes.b]) {
      const text = await through.cli(['session', 'list']);
      expect(text.code, text.stderr).toBe(0);
      const [head, ...rows] = text.stdout.trim().split('\n');
      expect(head).toMatch(/^ID\s+NAME\s+(OWNER\s+)?STATE\s+NODE\s+HOSTNAME/);
      expect(rows.find((r) => r.startsWith(far.id))).toMatch(new RegExp(`^${far.id}\\s+far\\s+(uid \\d+\\s+)?running\\s+${names.c}\\s`));
      const json = (await through.api('GET', '/v1/sessions')).body as { sessions: Session[] };
      expect(rows.map((r) => r.split(/\s+/)[0]).sort()).toEqual(json.sessions.map((s) => s.id).sort());
    }
    // The rows are served to nodes alone.
    expect((await nodes.c.api('GET', '/v1/node/sessions')).status).toBe(404);
  });

  it('execs through A into a session on C: a few MB of binary byte-exact, binary stdin, the exit code', async () => {
    const made = await nodes.a.sh('far', 'head -c 3145728 /dev/urandom > /tmp/blob && sha256sum /tmp/blob');
    expect(made.code, made.stderr).toBe(0);
    const want = made.stdout.split(' ')[0]!;
    const through = await nodes.a.cli(['session', 'exec', 'far', '--', 'cat', '/tmp/blob']);
    expect(through.code, through.stderr).toBe(0);
    expect(through.stdoutBytes.length).toBe(3145728);
    expect(sha(through.stdoutBytes)).toBe(want);
    const direct = await nodes.c.cli(['session', 'exec', far.id, '--', 'cat', '/tmp/blob']);
    expect(direct.stdoutBytes.equals(through.stdoutBytes)).toBe(true);

    const input = randomBytes(1024 * 1024);
    const fed = await nodes.a.sh('far', 'sha256sum', input);
    expect(fed.code, fed.stderr).toBe(0);
    expect(fed.stdout.split(' ')[0]).toBe(sha(input));
    expect((await nodes.a.sh(far.id, 'exit 7')).code).toBe(7);
  });

  it('attaches through A to a console on C: output, resize, and a resume after a cut with no byte missing', async () => {
    const w = new Viewer(nodes.a, 'far', { role: 'rw' });
    await w.opened;
    w.resize(123, 45);
    await new Promise((r) => setTimeout(r, 150));
    w.type(`stty size; printf '\\101%s\\101\\n' one\r`);
    await w.waitFor('AoneA');
    expect(w.output().toString()).toContain('45 123');
    expect(w.events).toContainEqual({ type: 'resize', cols: 123, rows: 45 });
    const start = w.hello.offset;
    const firstPart = Buffer.from(w.output());
    const resumeAt = w.offset;
    w.ws.terminate(); // the cut
    await w.closed;
    const observer = new Viewer(nodes.c, far.id);
    await observer.opened;
    observer.type(`printf '\\101%s\\101\\n' two\r`);
    await observer.waitFor('AtwoA');
    const again = new Viewer(nodes.a, far.id, { resume: String(resumeAt) });
    await again.opened;
    await again.waitFor('AtwoA');
    expect(again.hello).toMatchObject({ offset: resumeAt, resumed: true });
    // What A's two connections saw, stitched, is what C's own viewer saw from the same offset on.
    const stitched = Buffer.concat([firstPart, again.output()]);
    const truth = observer.output().subarray(Math.max(0, start - observer.hello.offset));
    const from = Math.max(0, observer.hello.offset - start);
    expect(stitched.subarray(from, from + truth.length).equals(truth)).toBe(true);
    observer.ws.close();
    again.ws.close();
    // The console's text and the session's stats, through A too.
    const logs = await nodes.a.cli(['session', 'logs', 'far']);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toContain('AtwoA');
    const stats = await nodes.a.api('GET', '/v1/sessions/far/stats');
    expect(stats.status, JSON.stringify(stats.body)).toBe(200);
    expect(stats.body).toMatchObject({ id: far.id, name: 'far' });
  });

  it('takes a rotated certificate on reload, and refuses one that does not fit, keeping the running one', async () => {
    const pki = join(dir, 'pki');
    const ca = { ca: caFile, caKey: join(pki, 'ca.key') };
    const asB = makeNodeCert(mkdtempSync(join(pki, 'b-client-')), ca, names.b);
    /** The fingerprint of the certificate C serves a new connection. */
    const served = () =>
      new Promise<string>((resolve, reject) => {
        const s = tlsConnect({ host: hosts.c, port: ports.c, ca: readFileSync(caFile), cert: readFileSync(asB.cert), key: readFileSync(asB.key), servername: names.c }, () => {
          resolve(s.getPeerCertificate().fingerprint256);
          s.end();
        });
        s.on('error', reject);
      });
    /** Node k's configured files replaced by a new key and certificate (as a rotation does): the new certificate's fingerprint. */
    const rotate = (k: 'a' | 'c', name: string, files: { cert?: boolean; key?: boolean } = { cert: true, key: true }) => {
      const next = makeNodeCert(mkdtempSync(join(pki, 'next-')), ca, name);
      if (files.key) copyFileSync(next.key, join(pki, `${names[k]}.key`));
      if (files.cert) copyFileSync(next.cert, join(pki, `${names[k]}.crt`));
      return new X509Certificate(readFileSync(next.cert)).fingerprint256;
    };
    const before = await served();
    const fresh = rotate('c', names.c);
    const r = await nodes.c.api('POST', '/v1/daemon/reload');
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect((r.body as { applied: string[] }).applied).toContain('cluster.peer files (certificate or CRL changed)');
    expect(await served()).toBe(fresh);
    expect(fresh).not.toBe(before);
    // A's side too: rotated, its calls to C still get through (that they present the new
    // certificate is fleetPeer.test.ts's: here the old one is as good to C).
    rotate('a', names.a);
    expect((await nodes.a.api('POST', '/v1/daemon/reload')).status).toBe(200);
    const through = await nodes.a.sh(far.id, 'echo across');
    expect(through.stdout, through.stderr).toBe('across\n');
    // A key that is not the certificate's, or a certificate of another node: refused, the running one stays.
    const keyFile = join(pki, `${names.c}.key`);
    const saved = readFileSync(keyFile);
    rotate('c', names.c, { key: true });
    const bad = await nodes.c.api('POST', '/v1/daemon/reload');
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toMatch(/not reloaded, nothing changed: cluster\.peer.*running certificate stays/);
    writeFileSync(keyFile, saved);
    const savedCert = readFileSync(join(pki, `${names.c}.crt`));
    rotate('c', names.b);
    const other = await nodes.c.api('POST', '/v1/daemon/reload');
    expect(other.status).toBe(400);
    expect(JSON.stringify(other.body)).toContain(`names '${names.b}', not this node (${names.c})`);
    expect(await served()).toBe(fresh);
    // Back to what C runs with: it reads these files again when it restarts, later in this file.
    writeFileSync(keyFile, saved);
    writeFileSync(join(pki, `${names.c}.crt`), savedCert);
    expect((await nodes.c.api('POST', '/v1/daemon/reload')).status).toBe(200);
  });

  it('refuses a revoked node both ways once the others reload the CRL, while the node itself refuses to take it; taken back, it is reached again', async () => {
    const pki = join(dir, 'pki');
    const ca = { ca: caFile, caKey: join(pki, 'ca.key') };
    // A session on B: made through A with A and C cordoned.
    await cordon(names.a, true);
    await cordon(names.c, true);
    let onB: Session;
    try {
      const r = await nodes.a.api('POST', '/v1/sessions', SMALL);
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      onB = sessionSchema.parse(r.body);
      expect(onB.node).toBe(names.b);
    } finally {
      await cordon(names.a, false);
      await cordon(names.c, false);
    }
    const shows = async () => ({
      bToC: (await nodes.b.api('GET', `/v1/sessions/${far.id}`)).status,
      aToB: (await nodes.a.api('GET', `/v1/sessions/${onB.id}`)).status,
      aToC: (await nodes.a.api('GET', `/v1/sessions/${far.id}`)).status,
    });
    expect(await shows()).toEqual({ bToC: 200, aToB: 200, aToC: 200 });
    try {
      makeCrl(ca, [join(pki, `${names.b}.crt`)], crlFile);
      for (const k of ['a', 'c'] as const) {
        const r = await nodes[k].api('POST', '/v1/daemon/reload');
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        expect((r.body as { applied: string[] }).applied).toContain('cluster.peer files (certificate or CRL changed)');
      }
      // C refuses B's certificate, A refuses the certificate B serves; A and C go on.
      expect((await nodes.a.api('GET', `/v1/sessions/${far.id}`)).status).toBe(200);
      // TLS 1.3: B's side of the handshake is done before C checks its certificate, so B hears a hang-up.
      const bToC = await nodes.b.api('GET', `/v1/sessions/${far.id}`);
      expect([bToC.status, JSON.stringify(bToC.body)]).toEqual([503, expect.stringContaining(`is on node ${names.c}, which did not answer: socket hang up`)]);
      const aToB = await nodes.a.api('GET', `/v1/sessions/${onB.id}`);
      expect([aToB.status, JSON.stringify(aToB.body)]).toEqual([503, expect.stringContaining(`is on node ${names.b}, which did not answer: the node's certificate is revoked by cluster.peer.crl`)]);
      // B, told to reload the CRL that revokes it, says so and keeps what it runs with.
      const own = await nodes.b.api('POST', '/v1/daemon/reload');
      expect(own.status).toBe(400);
      expect(JSON.stringify(own.body)).toMatch(/cluster\.peer\.cert \(or a CA above it\) is revoked by cluster\.peer\.crl: every node refuses this node; the running certificate stays/);
    } finally {
      makeCrl(ca, [], crlFile);
      for (const k of ['a', 'b', 'c'] as const) await nodes[k].api('POST', '/v1/daemon/reload').catch(() => undefined);
    }
    expect(await shows()).toEqual({ bToC: 200, aToB: 200, aToC: 200 });
    await nodes.a.destroy(onB.id);
  });

  it('moves the fleet to a new CA node by node (both CAs trusted, new certificates, the old CA dropped), every node reaching every other after each step', async () => {
    const pki = join(dir, 'pki');
    const next = makeCa(mkdtempSync(join(dir, 'ca2-')), 'enclave-fleet-ca-2');
    const all = ['a', 'b', 'c'] as const;
    const reload = async (k: 'a' | 'b' | 'c', step: string) => {
      const r = await nodes[k].api('POST', '/v1/daemon/reload');
      expect(r.status, `${step}: ${JSON.stringify(r.body)}`).toBe(200);
      expect((r.body as { applied: string[] }).applied, step).toContain('cluster.peer files (certificate or CRL changed)');
    };
    // A session on each node (made through A with the other two cordoned), so that every node's calls to every other are seen.
    const on: Record<'a' | 'b', Session> = {} as never;
    for (const k of ['a', 'b'] as const) {
      const others = all.filter((x) => x !== k);
      for (const o of others) await cordon(names[o], true);
      try {
        const r = await nodes.a.api('POST', '/v1/sessions', SMALL);
        expect(r.status, JSON.stringify(r.body)).toBe(201);
        on[k] = sessionSchema.parse(r.body);
        expect(on[k].node).toBe(names[k]);
      } finally {
        for (const o of others) await cordon(names[o], false);
      }
    }
    const sessions = { a: on.a, b: on.b, c: far };
    /** Each node shows the other two's sessions (forwarded over the channel) running. */
    const mesh = async (step: string) => {
      for (const from of all) {
        for (const to of all.filter((x) => x !== from)) {
          const r = await nodes[from].api('GET', `/v1/sessions/${sessions[to].id}`);
          expect(r.status, `${step}: ${from} -> ${to}: ${JSON.stringify(r.body)}`).toBe(200);
          expect((r.body as Session).state, `${step}: ${from} -> ${to}`).toBe('running');
        }
      }
    };
    // Failed part-way, the files are put back and every node reloads them: the tests after it need the fleet's CA.
    const files = [caFile, crlFile, join(pki, 'ca.key'), ...all.flatMap((k) => [join(pki, `${names[k]}.key`), join(pki, `${names[k]}.crt`)])];
    const saved = files.map((f) => readFileSync(f));
    let moved = false;
    try {
      // 1. Every node trusts both CAs (the old CA's certificate kept aside, to sign a certificate with it later).
      copyFileSync(caFile, join(dir, 'ca1.crt'));
      writeFileSync(caFile, Buffer.concat([readFileSync(caFile), readFileSync(next.ca)]));
      // With a CRL file, each CA needs its own CRL in it (an empty one: it revoked nothing).
      const nextCrl = join(dir, 'ca2.crl');
      makeCrl(next, [], nextCrl);
      writeFileSync(crlFile, Buffer.concat([readFileSync(crlFile), readFileSync(nextCrl)]));
      for (const k of all) await reload(k, 'both CAs');
      await mesh('both CAs');
      // 2. Node by node, a certificate of the new CA.
      for (const k of all) {
        const cert = makeNodeCert(mkdtempSync(join(pki, 'ca2-')), next, names[k]);
        copyFileSync(cert.key, join(pki, `${names[k]}.key`));
        copyFileSync(cert.cert, join(pki, `${names[k]}.crt`));
        await reload(k, `${k}'s new certificate`);
        await mesh(`${k}'s new certificate`);
      }
      // 3. The old CA dropped: new connections everywhere (each reload retires its client's), and still every node reaches every other.
      copyFileSync(next.ca, caFile);
      for (const k of all) await reload(k, 'the new CA alone');
      await mesh('the new CA alone');
      // A certificate of the old CA no longer gets in; one of the new does.
      const old = makeNodeCert(mkdtempSync(join(pki, 'old-')), { ca: join(dir, 'ca1.crt'), caKey: join(pki, 'ca.key') }, names.b);
      expect(await peerGet(hosts.c, ports.c, { ca: readFileSync(caFile), cert: readFileSync(old.cert), key: readFileSync(old.key) }, names.c)).toMatch(/certificate|alert|socket hang up|ECONNRESET/i);
      const good = makeNodeCert(mkdtempSync(join(pki, 'new-')), next, names.b);
      expect(await peerGet(hosts.c, ports.c, { ca: readFileSync(caFile), cert: readFileSync(good.cert), key: readFileSync(good.key) }, names.c)).toBe(200);
      // The fleet's CA is the new one from here on (later tests make certificates with pki/ca.key).
      copyFileSync(next.caKey, join(pki, 'ca.key'));
      moved = true;
    } finally {
      if (!moved) {
        files.forEach((f, i) => writeFileSync(f, saved[i]!));
        for (const k of all) await nodes[k].api('POST', '/v1/daemon/reload').catch(() => undefined);
      }
    }
    await nodes.a.destroy(on.a.id);
    await nodes.b.destroy(on.b.id);
  });

  it('refuses a peer without a certificate of the fleet CA, and one whose certificate names no node', async () => {
    const ca = readFileSync(caFile);
    expect(await peerGet(hosts.c, ports.c, { ca }, names.c)).toMatch(/certificate|alert|socket hang up|ECONNRESET/i);
    const other = makeCa(join(dir, 'other'), 'not-the-fleet');
    const wrong = makeNodeCert(join(dir, 'other'), other, names.a);
    expect(await peerGet(hosts.c, ports.c, { ca, cert: readFileSync(wrong.cert), key: readFileSync(wrong.key) }, names.c)).toMatch(/certificate|alert|socket hang up|ECONNRESET/i);
    const stranger = makeNodeCert(join(dir, 'pki'), { ca: caFile, caKey: join(dir, 'pki', 'ca.key') }, 'intruder');
    expect(await peerGet(hosts.c, ports.c, { ca, cert: readFileSync(stranger.cert), key: readFileSync(stranger.key) }, names.c)).toBe(403);
    const good = makeNodeCert(join(dir, 'pki'), { ca: caFile, caKey: join(dir, 'pki', 'ca.key') }, names.b);
    expect(await peerGet(hosts.c, ports.c, { ca, cert: readFileSync(good.cert), key: readFileSync(good.key) }, names.c)).toBe(200);
    // Even a node gets only what the route table forwards: not the node list, not a reload.
    expect(await peerGet(hosts.c, ports.c, { ca, cert: readFileSync(good.cert), key: readFileSync(good.key) }, names.c, '/v1/nodes')).toBe(403);
    const plain = await new Promise<number | string>((resolve) => {
      const req = plainRequest({ host: hosts.c, port: ports.c, path: '/v1/sessions' }, (res) => resolve(res.statusCode ?? 0));
      req.on('error', (e) => resolve(e.message));
      req.end();
    });
    expect(plain).not.toBe(200);
  });

  it('lets a tenant on A reach its own session on C and not another tenant\'s', async () => {
    const as = (args: string[]) => cliAs(nodes.a.socket, { uid: NOBODY, groups: [GID] }, args);
    expect(mine.node).toBe(names.c);
    const own = await as(['session', 'exec', 'mine', '--', 'id', '-u']);
    expect(own.code, own.stderr).toBe(0);
    const list = await as(['session', 'list', '--json']);
    const ids = (JSON.parse(list.stdout) as { sessions: Session[] } | Session[]);
    const seen = (Array.isArray(ids) ? ids : ids.sessions).map((s) => s.id);
    expect(seen).toContain(mine.id);
    expect(seen).not.toContain(far.id);
    const byId = await as(['session', 'exec', far.id, '--', 'true']);
    expect(byId.code).not.toBe(0);
    expect(byId.stderr).toMatch(/may not session\.exec/);
    const byName = await as(['session', 'show', '0:far']);
    expect(byName.code).not.toBe(0);
    expect(byName.stderr).toMatch(/no session/);
    const stop = await as(['session', 'stop', far.id]);
    expect(stop.code).not.toBe(0);
    expect((await nodes.c.show(far.id)).state).toBe('running');
  });

  it('gives the fleet\'s audit trail through any node, each event with its node, and a tenant its own alone', async () => {
    // Audited on C: calls made on C's own socket. The exec through A (an earlier test) was audited on A.
    expect((await nodes.c.sh(far.id, 'true')).code).toBe(0);
    expect((await nodes.c.sh(mine.id, 'true')).code).toBe(0);
    const r = await nodes.a.api('GET', '/v1/events?session=far&action=session.exec');
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const ev = (r.body as { events: AuditEvent[] }).events;
    expect(new Set(ev.map((e) => e.node))).toEqual(new Set([names.a, names.c]));
    expect(ev.every((e) => e.session_id === far.id)).toBe(true);
    expect(ev.map((e) => e.time)).toEqual(ev.map((e) => e.time).sort());
    const text = await nodes.b.cli(['events', '--session', far.id, '--action', 'session.exec']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^TIME\s+NODE\s+USER/);
    expect(text.stdout).toContain(names.c);
    const as = await cliAs(nodes.a.socket, { uid: NOBODY, groups: [GID] }, ['events', '--json']);
    expect(as.code, as.stderr).toBe(0);
    const seen = (JSON.parse(as.stdout) as { events: AuditEvent[] }).events;
    // Root's exec into its session, on C's trail, is the tenant's to see; nothing of root's own session but its own refused calls is.
    expect(seen.some((e) => e.node === names.c && e.session_id === mine.id && e.caller_uid === 0 && e.action === 'session.exec')).toBe(true);
    expect(seen.every((e) => e.caller_uid === NOBODY || e.object_owner === NOBODY)).toBe(true);
    expect(seen.filter((e) => e.session_id === far.id).every((e) => e.caller_uid === NOBODY && e.object_owner === null)).toBe(true);
    // Another owner's session by name is no filter it may use.
    const byName = await cliAs(nodes.a.socket, { uid: NOBODY, groups: [GID] }, ['events', '--session', '0:far']);
    expect(byName.code).not.toBe(0);
    expect(byName.stderr).toMatch(/no session/);
  });

  it('snapshots, copies, publishes ports and restores through A on C: the snapshot whole (its trailer crosses), the copy byte-exact', async () => {
    const tmp = mkdtempSync(join(dir, 'files-'));
    const blob = randomBytes(256 * 1024);
    writeFileSync(join(tmp, 'blob.bin'), blob);
    expect((await nodes.a.cli(['session', 'cp', join(tmp, 'blob.bin'), 'far:/home/blob.bin'])).code).toBe(0);
    const inside = await nodes.c.sh(far.id, 'sha256sum /home/blob.bin');
    expect(inside.stdout.split(' ')[0]).toBe(sha(blob));
    const out = await nodes.a.cli(['session', 'cp', 'far:/home/blob.bin', join(tmp, 'back.bin')]);
    expect(out.code, out.stderr).toBe(0);
    expect(sha(readFileSync(join(tmp, 'back.bin')))).toBe(sha(blob));

    const snap = join(tmp, 'far.snap');
    const taken = await nodes.a.cli(['session', 'snapshot', 'far', '-o', snap]);
    expect(taken.code, taken.stderr).toBe(0);
    expect(statSync(snap).size).toBeGreaterThan(blob.length);
    // Restored through B, wherever it is placed: the file is back.
    const made = await nodes.b.cli(['session', 'create', '--from', snap, '--name', 'from-far', '--memory', '128', '--json']);
    expect(made.code, made.stderr).toBe(0);
    const copy = sessionSchema.parse(JSON.parse(made.stdout));
    const back = await nodes.b.sh(copy.id, 'sha256sum /home/blob.bin');
    expect(back.stdout.split(' ')[0]).toBe(sha(blob));
    expect((await nodes.b.api('DELETE', `/v1/sessions/${copy.id}`)).status).toBe(204);

    // A port is the owning node's host's: published there, through A.
    const web = await createdOnC({ memory_mb: 128, network: 'bridge' });
    // Its veth's counters are read in C's netns (rtnetlink: /sys/class/net there is the host's), through A.
    const stats = await nodes.a.api('GET', `/v1/sessions/${web.id}/stats`);
    expect(stats.status, JSON.stringify(stats.body)).toBe(200);
    expect((stats.body as { network: unknown }).network).toMatchObject({ rx_bytes: expect.any(Number), tx_bytes: expect.any(Number) });
    const port = listenPort(44);
    const pub = await nodes.a.api('POST', `/v1/sessions/${web.id}/ports`, { host_ip: '127.0.0.1', host_port: port, session_port: 8080 });
    expect(pub.status, JSON.stringify(pub.body)).toBe(201);
    expect((await nodes.c.show(web.id)).network.published).toEqual([{ host_ip: '127.0.0.1', host_port: port, session_port: 8080 }]);
    expect((await nodes.a.api('DELETE', `/v1/sessions/${web.id}/ports/127.0.0.1:${port}`)).status).toBe(204);
    expect((await nodes.c.show(web.id)).network.published).toEqual([]);
    const refreshed = await nodes.a.api('POST', `/v1/sessions/${web.id}/refresh-auth`);
    expect(refreshed.status, JSON.stringify(refreshed.body)).toBe(200);
    expect(refreshed.body).toEqual((await nodes.c.api('POST', `/v1/sessions/${web.id}/refresh-auth`)).body);
    expect((await nodes.a.api('DELETE', `/v1/sessions/${web.id}`)).status).toBe(204);
  }, 120_000);

  it('keeps calls and lists reaching C while more log streams to C stay open than the kept-alive connections to it', async () => {
    // 16 kept-alive connections per node: streams that held them would leave every other forwarded call, and each list's part from C, waiting.
    const streams = Array.from({ length: 24 }, () => plainRequest({ socketPath: nodes.a.socket, path: `/v1/sessions/${far.id}/logs?follow=1` }));
    try {
      const opened = streams.map(
        (r) =>
          new Promise<number>((resolve, reject) => {
            r.on('response', (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            });
            r.on('error', reject);
            r.end();
          }),
      );
      expect(await Promise.all(opened)).toEqual(streams.map(() => 200));
      expect((await nodes.a.api('GET', `/v1/sessions/${far.id}`)).status).toBe(200);
      const l = (await nodes.a.api('GET', '/v1/sessions')).body as { sessions: Session[] };
      expect(l.sessions.find((s) => s.id === far.id)?.state).toBe('running');
    } finally {
      for (const r of streams) r.destroy();
    }
  });

  it('lists the sessions of a node whose lease lapsed as etcd last knew them, and forwards again once it is back', async () => {
    // A stream through A, open all along: once C's stream starts again, what the reader holds of C may be stale.
    const watcher = new EventsOn(nodes.a.socket);
    const opened = await watcher.next((e) => e.name === 'sessions');
    await nodes.c.stop('SIGKILL');
    const exec = await nodes.a.sh('far', 'true');
    expect(exec.code).not.toBe(0);
    expect(exec.stderr).toMatch(new RegExp(`node ${names.c}`));
    // Its lease lapsed (a list reads C's sessions from etcd, as C wrote them, until then): list and show answer as
    // C last reported them; a destroy cannot reach it and says so.
    await until('C unreachable', async () => {
      const l = (await nodes.a.api('GET', '/v1/nodes')).body as { nodes: { name: string; state: string }[] };
      return l.nodes.find((n) => n.name === names.c)?.state === 'unreachable' ? true : undefined;
    });
    const r = await nodes.a.api('GET', '/v1/sessions');
    expect(r.status).toBe(200);
    const shown = (r.body as { sessions: Session[] }).sessions.filter((s) => s.id === far.id);
    expect(shown).toEqual([expect.objectContaining({ id: far.id, name: 'far', node: names.c, state: 'unreachable', owner_uid: 0 })]);
    expect(shown[0]!.last_error).toMatch(new RegExp(`node ${names.c} unreachable`));
    const one = await nodes.a.api('GET', '/v1/sessions/far');
    expect(one.status, JSON.stringify(one.body)).toBe(200);
    expect(one.body).toMatchObject({ id: far.id, state: 'unreachable', node: names.c, hostname: far.hostname });
    // The stream through A ended once C's lease lapsed; back with its place, the reader has C's sessions unreachable.
    try {
      expect(await watcher.ends(20_000)).toBe('the stream ended');
    } finally {
      watcher.close();
    }
    const during = new EventsOn(nodes.a.socket, undefined, watcher.seen.filter((e) => e.id !== undefined).at(-1)?.id ?? opened.id!);
    const away = (await during.next((e) => e.name === 'sessions')).data as { sessions: Session[] };
    expect(away.sessions.find((x) => x.id === far.id)).toMatchObject({ node: names.c, state: 'unreachable' });
    expect((await nodes.a.cli(['session', 'list'])).stdout).toMatch(new RegExp(`^${far.id}\\s+far\\s+uid 0\\s+unreachable\\s`, 'm'));
    const rm = await nodes.a.api('DELETE', '/v1/sessions/far');
    expect(rm.status).toBe(503);
    expect(JSON.stringify(rm.body)).toMatch(/unreachable/);
    // Another tenant learns nothing of it from a refusal: its access check comes before the node's state.
    for (const args of [['session', 'exec', '0:far', '--', 'true'], ['session', 'show', '0:far'], ['session', 'stop', far.id]]) {
      const probe = await cliAs(nodes.a.socket, { uid: NOBODY, groups: [GID] }, args);
      expect(probe.code, args.join(' ')).not.toBe(0);
      expect(probe.stderr, args.join(' ')).not.toMatch(/unreachable/);
      if (args[2] === '0:far') expect(probe.stderr, args.join(' ')).not.toContain(far.id);
    }
    await nodes.c.start();
    await until('C ready again', async () => {
      const l = (await nodes.a.api('GET', '/v1/nodes')).body as { nodes: { name: string; state: string }[] };
      return l.nodes.find((n) => n.name === names.c)?.state === 'ready' ? true : undefined;
    });
    const back = await until('exec through A again', async () => {
      const e = await nodes.a.sh('far', 'echo back');
      return e.code === 0 ? e : undefined;
    });
    expect(back.stdout).toBe('back\n');
    // C's stream started again: the stream ended, and the reader, back with its place, gets every node's sessions afresh.
    try {
      expect(await during.ends(30_000)).toBe('the stream ended');
    } finally {
      during.close();
    }
    const place = during.seen.filter((e) => e.id !== undefined).at(-1)?.id ?? opened.id!;
    const again = new EventsOn(nodes.a.socket, undefined, place);
    try {
      const fresh = (await again.next((e) => e.name === 'sessions')).data as { sessions: Session[] };
      expect(fresh.sessions.find((x) => x.id === far.id)).toMatchObject({ node: names.c, state: 'running' });
    } finally {
      again.close();
    }
  });

  it('keeps session names unique per owner across the fleet, and frees a name once its session is gone', async () => {
    const first = await nodes.b.api('POST', '/v1/sessions', { ...SMALL, name: 'dup' });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    const id = sessionSchema.parse(first.body).id;
    for (const through of [nodes.a, nodes.c]) {
      const again = await through.api('POST', '/v1/sessions', { ...SMALL, name: 'dup' });
      expect(again.status).toBe(409);
      expect(JSON.stringify(again.body)).toContain(id);
    }
    // Another owner's name is its own.
    const theirs = await cliAs(nodes.a.socket, { uid: NOBODY, groups: [GID] }, ['session', 'create', '--name', 'dup', '--memory', '128', '--network', 'none', '--json']);
    expect(theirs.code, theirs.stderr).toBe(0);
    expect((await nodes.a.api('DELETE', `/v1/sessions/${id}`)).status).toBe(204);
    const reused = await until('the name free again', async () => {
      const r = await nodes.a.api('POST', '/v1/sessions', { ...SMALL, name: 'dup' });
      return r.status === 201 ? sessionSchema.parse(r.body) : undefined;
    });
    expect(reused.id).not.toBe(id);
    for (const s of [reused.id, sessionSchema.parse(JSON.parse(theirs.stdout)).id]) expect((await nodes.a.api('DELETE', `/v1/sessions/${s}`)).status).toBe(204);
  });

  it("streams every node's events through A, each with its node; a tenant its own alone; a reconnect resumes from its place in each node's trail", async () => {
    const root = new EventsOn(nodes.a.socket);
    const tenant = new EventsOn(nodes.a.socket, { uid: NOBODY, groups: [GID] });
    try {
      const first = await root.next((e) => e.name === 'sessions');
      expect((first.data as { sessions: Session[] }).sessions).toContainEqual(expect.objectContaining({ id: far.id, node: names.c }));
      const theirs = (await tenant.next((e) => e.name === 'sessions')).data as { sessions: Session[] };
      expect(theirs.sessions.map((x) => x.id)).toContain(mine.id);
      expect(theirs.sessions.map((x) => x.id)).not.toContain(far.id);
      // Audited on C (calls on C's own socket): root's exec into its own session, then into the tenant's.
      expect((await nodes.c.sh(far.id, 'true')).code).toBe(0);
      expect((await nodes.c.sh(mine.id, 'true')).code).toBe(0);
      const execOn = (id: string) => (e: Raw) => e.name === 'audit' && (e.data as AuditEvent).action === 'session.exec' && (e.data as AuditEvent).session_id === id && (e.data as AuditEvent).node === names.c;
      await root.next(execOn(far.id));
      await root.next(execOn(mine.id));
      await tenant.next(execOn(mine.id));
      // A state change on C, as a session event with its node, to both.
      expect((await nodes.c.api('POST', `/v1/sessions/${mine.id}/stop`)).status).toBe(200);
      const stopped = (e: Raw) => e.name === 'session' && (e.data as Session).id === mine.id && (e.data as Session).state === 'stopped';
      expect((await root.next(stopped)).data).toMatchObject({ node: names.c });
      expect((await tenant.next(stopped)).data).toMatchObject({ node: names.c });
      expect((await nodes.c.api('POST', `/v1/sessions/${mine.id}/start`)).status).toBe(200);
      const running = (e: Raw) => e.name === 'session' && (e.data as Session).id === mine.id && (e.data as Session).state === 'running';
      await tenant.next(running);
      await root.next(running);
      // C's events come in C's order, so the tenant saw root's exec before its own had it leaked: it did not.
      expect(tenant.seen.filter((e) => JSON.stringify(e.data).includes(far.id))).toEqual([]);
      // Every audit event's id is the reader's place in each node's trail.
      const place = root.seen.filter((e) => e.name === 'audit').at(-1)!.id!;
      expect(place).toMatch(new RegExp(`(^|,)${names.c}:\\d+(,|$)`));
      root.close();
      const atC = Number(new RegExp(`${names.c}:(\\d+)`).exec(place)![1]);
      // Missed while away: an exec audited on C, one on A.
      expect((await nodes.c.sh(far.id, 'echo missed-on-c')).code).toBe(0);
      expect((await nodes.a.sh(far.id, 'echo missed-via-a')).code).toBe(0);
      const again = new EventsOn(nodes.a.socket, undefined, place);
      try {
        await again.next((e) => e.name === 'audit' && (e.data as AuditEvent).node === names.c && String((e.data as AuditEvent).detail).includes('missed-on-c'));
        await again.next((e) => e.name === 'audit' && (e.data as AuditEvent).node === names.a && String((e.data as AuditEvent).detail).includes('missed-via-a'));
        // Nothing of C's it had already.
        const fromC = again.seen.filter((e) => e.name === 'audit' && (e.data as AuditEvent).node === names.c).map((e) => (e.data as AuditEvent).id);
        expect(fromC.length).toBeGreaterThan(0);
        expect(fromC.every((id) => id > atC)).toBe(true);
      } finally {
        again.close();
      }
      // Not a place: refused with one line.
      const bad = await nodes.a.rawRequest('GET', '/v1/events/stream', '', { 'last-event-id': 'node-a:1;rm' });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.body)).toMatch(/Last-Event-ID .* is not an event id/);
    } finally {
      root.close();
      tenant.close();
    }
  });

  /** A's counts of the other nodes' lists, by answer (its /metrics): read from etcd, or asked (sent whole, delta, 304). */
  const answers = async () => {
    const text = String((await nodes.a.rawRequest('GET', '/metrics', '')).body);
    const n = (a: string) => Number(new RegExp(`^enclave_fleet_peer_lists_total\\{answer="${a}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    return { etcd: n('etcd'), sent: n('sent'), delta: n('delta'), unchanged: n('unchanged') };
  };
  const asked = (x: Awaited<ReturnType<typeof answers>>) => [x.sent, x.delta, x.unchanged];
  const onA = async (id: string, all = false) => ((await nodes.a.api('GET', `/v1/sessions${all ? '?all=1' : ''}`)).body as { sessions: Session[] }).sessions.find((s) => s.id === id);
  const rowOnA = async (id: string) => (await nodes.a.cli(['session', 'list'])).stdout.split('\n').find((r) => r.startsWith(id)) ?? '';
  const etcdPut = async (k: string, v: string) => {
    const c = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 3000 });
    try {
      await c.put(k).value(v);
    } finally {
      c.close();
    }
  };

  it("lists B's and C's sessions from what each wrote to etcd, asking neither: a stop and a start on C itself show through A at once (C answers them once its list is written), a viewer there within the publish interval", async () => {
    await onA(far.id);
    const before = await answers();
    expect((await onA(far.id))?.state).toBe('running');
    const after = await answers();
    expect(after.etcd - before.etcd).toBe(2);
    expect(asked(after)).toEqual(asked(before));
    // What C wrote: each session as its list shows it, and the registration its whole list is there for.
    expect(JSON.parse((await etcdGet(`/enclave/listed/${names.c}/${far.id}`))!)).toMatchObject({ id: far.id, node: names.c, state: 'running', name: 'far' });
    expect(JSON.parse((await etcdGet(`/enclave/listing/${names.c}`))!)).toEqual({ registered_at: expect.any(String) });
    // Changed on C itself (A takes no part): the next list through A has it, JSON and text, and C was not asked.
    expect((await nodes.c.api('POST', `/v1/sessions/${mine.id}/stop`)).status).toBe(200);
    expect((await onA(mine.id))?.state).toBe('stopped');
    expect(await rowOnA(mine.id)).toMatch(new RegExp(`^${mine.id}\\s+mine\\s+uid ${NOBODY}\\s+stopped\\s`));
    expect((await nodes.c.api('POST', `/v1/sessions/${mine.id}/start`)).status).toBe(200);
    expect((await onA(mine.id))?.state).toBe('running');
    expect(await rowOnA(mine.id)).toMatch(new RegExp(`^${mine.id}\\s+mine\\s+uid ${NOBODY}\\s+running\\s`));
    // A session placed on C through A is in C's list in etcd before C reports it (and A answers the create);
    // a destroy A forwards to C, gone from it before C answers.
    const fresh = await createdOnC({ ...SMALL, name: 'fresh' });
    expect((await onA(fresh.id))?.state).toBe('running');
    expect((await nodes.a.api('DELETE', `/v1/sessions/${fresh.id}`)).status).toBe(204);
    expect(await onA(fresh.id)).toBeUndefined();
    expect(asked(await answers())).toEqual(asked(before));
    // A viewer on C's console (no call changed anything): written by C within its list interval (2 s here), and gone once it leaves.
    const w = new Viewer(nodes.c, far.id);
    await w.opened;
    await until('the viewer through A', async () => ((await onA(far.id))?.console.viewers === 1 ? true : undefined), 5_000);
    expect((await onA(far.id))?.console).toMatchObject({ running: true, viewers: 1 });
    w.ws.close();
    await w.closed;
    await until('no viewer through A', async () => ((await onA(far.id))?.console.viewers === 0 ? true : undefined), 10_000);
  });

  it("asks a node whose list etcd holds for no registration of its, and for ended sessions too (--all): uses its copy while it answers unchanged (304), is sent only the rows that changed (226), never misses a change", async () => {
    // C's listing naming a registration that is not C's (as a node of an older version would leave it): C is asked.
    const listing = (await etcdGet(`/enclave/listing/${names.c}`))!;
    await etcdPut(`/enclave/listing/${names.c}`, JSON.stringify({ registered_at: '2000-01-01T00:00:00.000Z' }));
    try {
      const before = await answers();
      expect((await onA(far.id))?.state).toBe('running');
      const after = await answers();
      expect(after.etcd - before.etcd).toBe(1);
      expect(after.sent + after.delta + after.unchanged - (before.sent + before.delta + before.unchanged)).toBe(1);
    } finally {
      await etcdPut(`/enclave/listing/${names.c}`, listing);
    }
    // --all (ended sessions too: not in etcd) asks every node. Asked twice with nothing changed between: the second
    // time B and C answer 304 (their lists are made of their databases and consoles alone). A show through B in
    // between is recorded in B's audit trail, and a secret set on B and on C is written to their databases: no list reads either.
    await onA(far.id, true);
    const before = await answers();
    expect((await nodes.b.show(far.id)).node).toBe(names.c);
    for (const d of [nodes.b, nodes.c]) expect((await d.api('PUT', '/v1/auth/list-unread', { value_base64: Buffer.from('x').toString('base64') })).status).toBeLessThan(300);
    expect(before.sent).toBeGreaterThan(0);
    expect((await onA(far.id, true))?.state).toBe('running');
    const after = await answers();
    expect(after.unchanged - before.unchanged).toBe(2);
    expect(after.sent).toBe(before.sent);
    for (const d of [nodes.b, nodes.c]) expect((await d.api('DELETE', '/v1/auth/list-unread')).status).toBeLessThan(300);
    // Changed on C itself: C sent the rows that changed since the list A held (226), not its whole list; B answered 304.
    expect((await nodes.c.api('POST', `/v1/sessions/${mine.id}/stop`)).status).toBe(200);
    expect((await onA(mine.id, true))?.state).toBe('stopped');
    const stopped = await answers();
    expect([stopped.delta - after.delta, stopped.unchanged - after.unchanged, stopped.sent - after.sent]).toEqual([1, 1, 0]);
    expect((await nodes.c.api('POST', `/v1/sessions/${mine.id}/start`)).status).toBe(200);
    expect((await onA(mine.id, true))?.state).toBe('running');
  });

  it('stops, starts and destroys a session on C through A', async () => {
    const events = async (d: TestDaemon, action: string) => ((await d.api('GET', `/v1/events?action=${action}`)).body as { events: AuditEvent[] }).events.filter((e) => e.session_id === far.id);
    // A show and a stats call through A are on C's trail too, vouched for by A (the fleet's own lookups and lists are not).
    const shownOnC = async () => (await events(nodes.c, 'session.show&reads=1')).filter((e) => e.node === names.c && e.via === 'peer' && e.rule === `node ${names.a}`).length;
    const shown = await shownOnC();
    expect((await nodes.a.api('GET', `/v1/sessions/${far.id}`)).status).toBe(200);
    expect((await nodes.a.api('GET', `/v1/sessions/${far.id}/stats`)).status).toBe(200);
    expect((await nodes.a.api('GET', '/v1/sessions')).status).toBe(200);
    expect(await shownOnC()).toBe(shown + 2);
    const stopped = await nodes.a.api('POST', `/v1/sessions/${far.id}/stop`);
    expect(stopped.status, JSON.stringify(stopped.body)).toBe(200);
    expect(stopped.body).toMatchObject({ id: far.id, state: 'stopped', node: names.c });
    expect((await nodes.c.show(far.id)).state).toBe('stopped');
    const started = await nodes.a.api('POST', '/v1/sessions/far/start');
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    expect(started.body).toMatchObject({ id: far.id, state: 'running', node: names.c });
    expect((await nodes.c.show(far.id)).state).toBe('running');
    const gone = await nodes.a.cli(['session', 'rm', 'far']);
    expect(gone.code, gone.stderr).toBe(0);
    expect((await nodes.c.show(far.id)).state).toBe('destroyed');
    // Ended: gone from C's list in etcd before C answered the destroy A forwarded.
    expect(await etcdGet(`/enclave/listed/${names.c}/${far.id}`)).toBeNull();
    // Checked once, at the node the caller reached (A's trail has the decision); C, which did it, records it
    // as vouched for by A (via peer, rule "node A"), so a node's own trail says what it did for a peer.
    for (const action of ['session.stop', 'session.start', 'session.destroy']) {
      for (const through of [nodes.a, nodes.c]) {
        const ev = await events(through, action);
        expect(ev.filter((e) => e.node === names.a).map((e) => [e.via, e.decision]), action).toContainEqual(['socket', 'allow']);
        const there = ev.filter((e) => e.node !== names.a);
        expect(there.length, action).toBeGreaterThan(0);
        for (const e of there) expect(e, action).toMatchObject({ node: names.c, via: 'peer', rule: `node ${names.a}`, decision: 'allow', caller_uid: 0, object_owner: 0 });
      }
    }
    await until('the placement gone', async () => ((await etcdGet(`/enclave/desired/${names.c}/${far.id}`)) === null ? true : undefined));
    // Placed nowhere now, it is still C's record: shown through A as it ended, as a single daemon shows it.
    const ended = await nodes.a.api('GET', `/v1/sessions/${far.id}`);
    expect(ended.status).toBe(200);
    expect(ended.body).toMatchObject({ id: far.id, state: 'destroyed', node: names.c });
    expect((await nodes.a.api('GET', '/v1/sessions/s-0000000000')).status).toBe(404);
    await nodes.a.api('DELETE', `/v1/sessions/${mine.id}`);
  });

  it('drains C: its stopped sessions move to A or B with their files, secrets and volumes (a read-only one too) and start there, and back to C by a drain of that node; its running one, and one sharing its volume, stay', async () => {
    const moving = await createdOnC({ ...SMALL, name: 'mover' });
    const made = async (body: Record<string, unknown>) => {
      const r = await nodes.c.api('POST', '/v1/sessions', { ...SMALL, ...body });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      return sessionSchema.parse(r.body);
    };
    // Running, through C (its volume is C's: placed there), with a volume that a stopped one mounts too: both stay.
    for (const v of ['shared-vol', 'kit-vol', 'kit-ro']) expect((await nodes.c.api('POST', '/v1/volumes', { name: v, size_mb: 64 })).status).toBe(201);
    // A volume the moving one mounts read-only, filled by a session gone since (first: C has five slots).
    const filler = await made({ volumes: [{ name: 'kit-ro', target: '/ref' }] });
    expect((await nodes.c.sh(filler.id, 'echo ref-$((7*6)) > /ref/r')).code).toBe(0);
    expect((await nodes.c.api('DELETE', `/v1/sessions/${filler.id}`)).status).toBe(204);
    const staying = await made({ volumes: [{ name: 'shared-vol', target: '/shared' }] });
    const pinned = await made({ volumes: [{ name: 'shared-vol', target: '/shared' }] });
    // Stopped, with a secret and a volume of its owner's on C that it alone mounts: they go with it.
    expect((await nodes.c.api('PUT', '/v1/auth/kit-token', { value_base64: Buffer.from('k1t').toString('base64') })).status).toBeLessThan(300);
    const kitted = await made({ name: 'kitted', auth: ['kit-token'], volumes: [{ name: 'kit-vol', target: '/data' }, { name: 'kit-ro', target: '/ref', readonly: true }] });
    // Stopped, with a secret whose name A and B hold with another value: refused there, it stays (the owner's value there is not replaced).
    const put = (d: TestDaemon, v: string) => d.api('PUT', '/v1/auth/clash-token', { value_base64: Buffer.from(v).toString('base64') });
    expect((await put(nodes.c, 'mine')).status).toBeLessThan(300);
    for (const d of [nodes.a, nodes.b]) expect((await put(d, 'theirs')).status).toBeLessThan(300);
    const clashing = await made({ auth: ['clash-token'] });
    for (const s of [staying, pinned, kitted, clashing]) expect(s.node).toBe(names.c);
    expect((await nodes.c.sh(kitted.id, 'echo vol-$((6*7)) > /data/f && mkdir /data/d && echo deep > /data/d/g && chown 1000:1000 /data/d/g')).code).toBe(0);
    for (const s of [pinned, kitted, clashing]) expect((await nodes.c.api('POST', `/v1/sessions/${s.id}/stop`)).status).toBe(200);
    expect((await nodes.a.sh('mover', 'echo moved-$((40+2)) > /home/mark')).code).toBe(0);
    const stopped = await nodes.a.api('POST', '/v1/sessions/mover/stop');
    expect(stopped.status, JSON.stringify(stopped.body)).toBe(200);
    const r = await nodes.b.cli(['node', 'drain', names.c]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(pinned.id);
    const movedOff = (ref: string) =>
      until(
        `${ref} moved off C`,
        async () => {
          const s = await nodes.a.api('GET', `/v1/sessions/${ref}`);
          const v = s.status === 200 ? sessionSchema.parse(s.body) : undefined;
          return v && v.node !== names.c && v.state === 'stopped' ? v : undefined;
        },
        120_000,
      );
    const moved = await movedOff('mover');
    const kitMoved = await movedOff('kitted');
    expect([names.a, names.b]).toContain(moved.node);
    expect(moved).toMatchObject({ id: moving.id, name: 'mover', owner_uid: 0 });
    expect(await etcdGet(`/enclave/desired/${names.c}/${moving.id}`)).toBeNull();
    await until('the move record gone', async () => ((await etcdGet(`/enclave/move/${moving.id}`)) === null ? true : undefined));
    // By its id through C, the live one is meant (forwarded); C's old copy is history, in list --all, saying where it went.
    expect(await nodes.c.show(moving.id)).toMatchObject({ state: 'stopped', node: moved.node });
    const oldCopy = async (through: TestDaemon, on: string) => {
      const all = await through.api('GET', '/v1/sessions?all=1');
      return (all.body as { sessions: Session[] }).sessions.find((s) => s.id === moving.id && s.node === on);
    };
    expect(await oldCopy(nodes.c, names.c)).toMatchObject({ state: 'destroyed', moved_to: moved.node });
    // The move is on the drained node's own trail, once, as the daemon's act (the drain's caller is on B's).
    const movesOn = async (on: string) =>
      ((await nodes.a.api('GET', '/v1/events?action=session.move')).body as { events: AuditEvent[] }).events.filter((e) => e.session_id === moving.id && e.node === on);
    expect(await movesOn(names.c)).toEqual([expect.objectContaining({ via: 'daemon', decision: 'none', rule: 'node drain', caller_uid: 0, object_owner: 0, detail: expect.stringContaining(`moved to node ${moved.node}:`) })]);
    // The route a move uses is the nodes' alone: no caller reaches it.
    const asCaller = await nodes.a.api('POST', `/v1/sessions/${moved.id}/moved-in?zstd=0&from=${names.c}`);
    expect(asCaller.status).toBe(404);
    expect((await nodes.a.api('GET', `/v1/sessions/${kitted.id}/move-kit`)).status).toBe(404);
    // Even a node is handed no kit of a session not being moved (secret values go only to the node a move places it on).
    const asB = makeNodeCert(join(dir, 'pki'), { ca: caFile, caKey: join(dir, 'pki', 'ca.key') }, names.b);
    expect(await peerGet(hosts.c, ports.c, { ca: readFileSync(caFile), cert: readFileSync(asB.cert), key: readFileSync(asB.key) }, names.c, `/v1/sessions/${pinned.id}/move-kit`)).toBe(409);
    await until('the clashing secret refused where the drain tried to move it', async () => (/holds another value of uid 0's secret clash-token/.test(nodes.c.log()) ? true : undefined));
    expect(await nodes.a.show(clashing.id)).toMatchObject({ state: 'stopped', node: names.c });
    for (const d of [nodes.a, nodes.b]) expect(((await d.api('GET', '/v1/auth')).body as { secrets: { name: string; version: number }[] }).secrets.find((x) => x.name === 'clash-token')?.version).toBe(1);
    expect((await nodes.c.show(staying.id)).state).toBe('running');
    // The one mounting a volume another session mounts too: not moved, still listed as C's.
    expect(await nodes.a.show(pinned.id)).toMatchObject({ state: 'stopped', node: names.c });
    // The moved one's volume left C with it; its secret is on its new node too (C keeps its own).
    const volumesOn = async (d: TestDaemon) => ((await d.api('GET', '/v1/volumes')).body as { volumes: { name: string; id: string }[] }).volumes.map((v) => v.name).sort();
    expect(await volumesOn(nodes.c)).toEqual(['shared-vol']);
    const there1 = kitMoved.node === names.a ? nodes.a : nodes.b;
    expect(await volumesOn(there1)).toEqual(['kit-ro', 'kit-vol']);
    const kitStarted = await nodes.a.api('POST', '/v1/sessions/kitted/start');
    expect(kitStarted.status, JSON.stringify(kitStarted.body)).toBe(200);
    // Its move is over: a node (even the one it came from) sending it files or a volume now is refused, nothing unpacked.
    const there1Name = kitMoved.node!;
    const there1Index = there1Name === names.a ? 'a' : 'b';
    const asC = makeNodeCert(join(dir, 'pki'), { ca: caFile, caKey: join(dir, 'pki', 'ca.key') }, names.c);
    const tlsC = { ca: readFileSync(caFile), cert: readFileSync(asC.cert), key: readFileSync(asC.key) };
    const kitVolId = ((await there1.api('GET', '/v1/volumes/kit-vol')).body as { id: string }).id;
    for (const path of [`/v1/sessions/${kitted.id}/moved-in-volume?volume=${kitVolId}&zstd=0`, `/v1/sessions/${kitted.id}/moved-in?zstd=0&from=${names.c}`]) {
      const stray = await peerCall(hosts[there1Index], ports[there1Index], tlsC, there1Name, 'POST', path);
      expect(stray.status, stray.body).toBe(409);
      expect(stray.body).toContain(`is not moving session ${kitted.id} to this node`);
    }
    expect((await there1.show(kitted.id)).state).toBe('running');
    expect((await nodes.a.sh('kitted', 'cat /data/f /data/d/g /run/enclave/auth/kit-token.token; stat -c %u:%g /data/d/g')).stdout).toBe('vol-42\ndeep\nk1t1000:1000\n');
    // The read-only one came with its contents, and is mounted read-only again.
    expect((await nodes.a.sh('kitted', 'cat /ref/r; { touch /ref/x; } 2>&1; grep " /ref " /proc/self/mountinfo | cut -d" " -f6')).stdout).toMatch(/^ref-42\n.*Read-only file system\nro,/);
    expect((await nodes.a.show('kitted')).volumes).toEqual([{ name: 'kit-vol', target: '/data', readonly: false }, { name: 'kit-ro', target: '/ref', readonly: true }]);
    for (const s of [kitted, pinned, staying, clashing]) expect((await nodes.a.api('DELETE', `/v1/sessions/${s.id}`)).status).toBe(204);
    // Ended there now, and no move to undo: a node telling it its copy moved out is refused, and its row left as it is.
    const strayOut = await peerCall(hosts[there1Index], ports[there1Index], tlsC, there1Name, 'POST', `/v1/sessions/${kitted.id}/moved-out?to=${names.c}`);
    expect(strayOut.status, strayOut.body).toBe(409);
    expect(strayOut.body).toContain(`is not moving session ${kitted.id} to this node`);
    expect(await there1.show(kitted.id)).toMatchObject({ state: 'destroyed' });
    expect((await there1.show(kitted.id)).moved_to).toBeUndefined();
    for (const d of [nodes.a, nodes.b, nodes.c]) expect((await d.api('DELETE', '/v1/auth/clash-token')).status).toBeLessThan(300);
    for (const [d, v] of [[there1, 'kit-vol'], [there1, 'kit-ro'], [nodes.c, 'shared-vol']] as const) expect((await d.api('DELETE', `/v1/volumes/${v}`)).status).toBe(204);
    for (const d of [there1, nodes.c]) expect((await d.api('DELETE', '/v1/auth/kit-token')).status).toBeLessThan(300);
    const started = await nodes.a.api('POST', '/v1/sessions/mover/start');
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    expect(started.body).toMatchObject({ id: moving.id, state: 'running', node: moved.node });
    const cat = await nodes.a.sh('mover', 'cat /home/mark');
    expect(cat.stdout).toBe('moved-42\n');
    expect((await nodes.a.cli(['node', 'uncordon', names.c])).code).toBe(0);
    expect(await etcdGet(`/enclave/drain/${names.c}`)).toBeNull();

    // And back: with the third node cordoned, a drain of the node it went to can only move it to C,
    // which still has the row of its old copy under the same id (dropped, then made again).
    const there = moved.node === names.a ? 'a' : 'b';
    const third = there === 'a' ? 'b' : 'a';
    expect((await nodes.a.cli(['node', 'cordon', names[third]])).code).toBe(0);
    expect((await nodes.a.api('POST', '/v1/sessions/mover/stop')).status).toBe(200);
    expect((await nodes.a.cli(['node', 'drain', names[there]])).code).toBe(0);
    await until(
      'the stopped session moved back to C',
      async () => {
        const s = await nodes.a.api('GET', '/v1/sessions/mover');
        const v = s.status === 200 ? sessionSchema.parse(s.body) : undefined;
        return v && v.node === names.c && v.state === 'stopped' ? v : undefined;
      },
      120_000,
    );
    await until('the move record gone', async () => ((await etcdGet(`/enclave/move/${moving.id}`)) === null ? true : undefined));
    expect(await oldCopy(nodes.b, names[there])).toMatchObject({ state: 'destroyed', moved_to: names.c });
    expect((await movesOn(names[there])).map((e) => e.detail)).toEqual([expect.stringContaining(`moved to node ${names.c}:`)]);
    expect(await movesOn(names.c)).toHaveLength(1);
    // By its id through the node it left (its old copy there), the live one is meant: a destroy there is not a no-op.
    expect(await nodes[there].show(moving.id)).toMatchObject({ state: 'stopped', node: names.c });
    expect((await nodes.a.api('POST', '/v1/sessions/mover/start')).status).toBe(200);
    expect((await nodes.a.sh('mover', 'cat /home/mark')).stdout).toBe('moved-42\n');
    for (const k of [there, third] as const) expect((await nodes.a.cli(['node', 'uncordon', names[k]])).code).toBe(0);
    expect((await nodes.a.api('DELETE', `/v1/sessions/${moving.id}`)).status).toBe(204);
  }, 300_000);

  it("drains A: sessions declaring root's shared secret move only to a node where root shares it with the same value (not carried), two sharing a volume move together with it; one whose secret no other node shares stays", async () => {
    const as = (args: string[]) => cliAs(nodes.a.socket, { uid: NOBODY, groups: [GID] }, args);
    const share = (d: TestDaemon, name: string, v: string) => d.api('PUT', `/v1/auth/${name}`, { value_base64: Buffer.from(v).toString('base64'), shared: true });
    // Root shares fleet-npm on A and B with one value, on C with another (rotated there, say); only-a on A alone.
    for (const [d, v] of [[nodes.a, 'npm-1'], [nodes.b, 'npm-1'], [nodes.c, 'npm-2']] as const) expect((await share(d, 'fleet-npm', v)).status).toBeLessThan(300);
    expect((await share(nodes.a, 'only-a', 'a-1')).status).toBeLessThan(300);
    // The nodes' check is theirs alone: a tenant asking it is answered as for no such endpoint.
    expect(requestsAs(nodes.a.socket, { uid: NOBODY, groups: [GID] }, [{ method: 'GET', path: `/v1/node/shared-secrets?refs=0:fleet-npm&nonce=${'ab'.repeat(16)}` }])[0]![0]).toBe(404);
    // Made through A, they are A's (what they name is A's: placed there).
    const create = async (name: string, auth: string) => {
      const r = await as(['session', 'create', '--name', name, '--auth', auth, '--memory', '128', '--network', 'none', '--json']);
      expect(r.code, r.stderr).toBe(0);
      return sessionSchema.parse(JSON.parse(r.stdout));
    };
    const sharer = await create('sharer', '0:fleet-npm');
    const lonely = await create('lonely', '0:only-a');
    // Root's two sessions sharing a volume, one of them declaring root's shared fleet-npm (its own: still not carried).
    expect((await nodes.a.api('POST', '/v1/volumes', { name: 'pair-vol', size_mb: 64 })).status).toBe(201);
    const pairMade = async (name: string, extra: Record<string, unknown>) => {
      const r = await nodes.a.api('POST', '/v1/sessions', { ...SMALL, name, ...extra });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      return sessionSchema.parse(r.body);
    };
    const pair1 = await pairMade('pair1', { auth: ['fleet-npm'], volumes: [{ name: 'pair-vol', target: '/pair' }] });
    const pair2 = await pairMade('pair2', { volumes: [{ name: 'pair-vol', target: '/pair', readonly: true }] });
    for (const s of [sharer, lonely]) expect(s).toMatchObject({ node: names.a, owner_uid: NOBODY });
    for (const s of [pair1, pair2]) expect(s).toMatchObject({ node: names.a, owner_uid: 0 });
    expect((await as(['session', 'exec', 'sharer', '--', 'sh', '-c', 'cat /run/enclave/auth/fleet-npm.token; echo mark-$((6*7)) > ~/mark'])).stdout).toBe('npm-1');
    expect((await nodes.a.sh('pair1', 'echo pair-$((6*7)) > /pair/f; echo one > ~/who')).code).toBe(0);
    for (const s of ['sharer', 'lonely']) expect((await as(['session', 'stop', s])).code).toBe(0);
    for (const s of ['pair1', 'pair2']) expect((await nodes.a.api('POST', `/v1/sessions/${s}/stop`)).status).toBe(200);
    const r = await nodes.b.cli(['node', 'drain', names.a]);
    expect(r.code, r.stderr).toBe(0);
    const movedOff = (show: () => Promise<Session | undefined>) =>
      until(
        'moved off A',
        async () => {
          const v = await show();
          return v && v.node !== names.a && v.state === 'stopped' ? v : undefined;
        },
        120_000,
      );
    const byRoot = async (ref: string) => {
      const x = await nodes.a.api('GET', `/v1/sessions/${ref}`);
      return x.status === 200 ? sessionSchema.parse(x.body) : undefined;
    };
    try {
      const moved = await movedOff(async () => {
        const v = (await as(['session', 'show', 'sharer', '--json'])).stdout;
        return v ? sessionSchema.parse(JSON.parse(v)) : undefined;
      });
      // Only B shares it with the value it had (C shares another).
      expect(moved).toMatchObject({ id: sharer.id, node: names.b, owner_uid: NOBODY });
      const [p1, p2] = [await movedOff(() => byRoot('pair1')), await movedOff(() => byRoot('pair2'))];
      expect([p1.node, p2.node]).toEqual([names.b, names.b]);
      // Not carried: B's store is as root left it (no copy of the value, no secret of the tenant's).
      const onB = ((await nodes.b.api('GET', '/v1/auth?all=1')).body as { secrets: { name: string; owner_uid: number; version: number; shared: boolean }[] }).secrets;
      expect(onB.filter((x) => x.name === 'fleet-npm')).toEqual([expect.objectContaining({ owner_uid: 0, version: 1, shared: true })]);
      expect(onB.filter((x) => x.owner_uid === NOBODY)).toEqual([]);
      const started = await as(['session', 'start', 'sharer']);
      expect(started.code, started.stderr).toBe(0);
      expect((await as(['session', 'exec', 'sharer', '--', 'sh', '-c', 'cat /run/enclave/auth/fleet-npm.token ~/mark'])).stdout).toBe('npm-1mark-42\n');
      // The shared volume went with both, once: on B, gone from A; each reads it there (pair2 read-only, as declared).
      const volumesOn = async (d: TestDaemon) => ((await d.api('GET', '/v1/volumes')).body as { volumes: { name: string }[] }).volumes.map((v) => v.name);
      expect(await volumesOn(nodes.a)).not.toContain('pair-vol');
      expect((await volumesOn(nodes.b)).filter((v) => v === 'pair-vol')).toEqual(['pair-vol']);
      // The one of them that mounts what the other's kit made there (by id, the later) is refused (409) only until B
      // sees that move over (its next tick).
      for (const name of ['pair1', 'pair2']) {
        await until(`${name} started on B`, async () => {
          const x = await nodes.a.api('POST', `/v1/sessions/${name}/start`);
          if (x.status === 409 && /being moved here with session/.test(JSON.stringify(x.body))) return undefined;
          expect(x.status, JSON.stringify(x.body)).toBe(200);
          return true;
        });
      }
      expect((await nodes.a.sh('pair1', 'cat /pair/f ~/who /run/enclave/auth/fleet-npm.token')).stdout).toBe('pair-42\none\nnpm-1');
      expect((await nodes.a.sh('pair2', 'cat /pair/f; { touch /pair/x; } 2>&1')).stdout).toMatch(/^pair-42\n.*Read-only file system/);
      // The other stays, stopped on A, the reason in A's log naming each node.
      await until('the reason lonely stays', async () => (/no other node shares 0:only-a with the value this node holds/.test(nodes.a.log()) ? true : undefined));
      expect(nodes.a.log()).toMatch(new RegExp(`node ${names.b} does not share 0:only-a`));
      expect(await nodes.a.show(lonely.id)).toMatchObject({ state: 'stopped', node: names.a });
    } finally {
      expect((await nodes.a.cli(['node', 'uncordon', names.a])).code).toBe(0);
      for (const s of [sharer, lonely, pair1, pair2]) await nodes.a.api('DELETE', `/v1/sessions/${s.id}`);
      for (const d of [nodes.a, nodes.b]) await d.api('DELETE', '/v1/volumes/pair-vol');
      for (const d of [nodes.a, nodes.b, nodes.c]) await d.api('DELETE', '/v1/auth/fleet-npm');
      await nodes.a.api('DELETE', '/v1/auth/only-a');
    }
  }, 300_000);

  it('refuses a start, and a destroy but from the node moving it, of a copy a drain is moving to its node until the move is over', async () => {
    const inbound = await createdOnC({ ...SMALL, name: 'inbound' });
    expect((await nodes.a.api('POST', `/v1/sessions/${inbound.id}/stop`)).status).toBe(200);
    // As a drain leaves it between its files and its group's commit: a record of a move to C, copying (from a node no
    // daemon here is, so that none of them finishes it meanwhile).
    const c = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 3000 });
    const rec = JSON.stringify({ id: inbound.id, from: 'gone-node', to: names.c, phase: 'copying' });
    try {
      await c.put(`/enclave/move/${inbound.id}`).value(rec);
      const start = await nodes.b.api('POST', `/v1/sessions/${inbound.id}/start`);
      expect(start.status, JSON.stringify(start.body)).toBe(409);
      expect(JSON.stringify(start.body)).toContain('is being moved to this node');
      const destroy = await nodes.b.api('DELETE', `/v1/sessions/${inbound.id}`);
      expect(destroy.status, JSON.stringify(destroy.body)).toBe(409);
      expect((await nodes.a.show(inbound.id)).state).toBe('stopped');
    } finally {
      await c.delete().key(`/enclave/move/${inbound.id}`);
      c.close();
    }
    expect((await nodes.b.api('POST', `/v1/sessions/${inbound.id}/start`)).status).toBe(200);
    expect((await nodes.b.api('DELETE', `/v1/sessions/${inbound.id}`)).status).toBe(204);
  });

  it('undoes, before a drain moves a session, its placement on another node that an earlier try left (committed past its bound)', async () => {
    const s = await createdOnC({ ...SMALL, name: 'strayed' });
    expect((await nodes.a.sh('strayed', 'echo kept > /home/mark')).code).toBe(0);
    expect((await nodes.c.api('POST', `/v1/sessions/${s.id}/stop`)).status).toBe(200);
    const placement = await etcdGet(`/enclave/desired/${names.c}/${s.id}`);
    expect(placement).not.toBeNull();
    // What a booking of an earlier try leaves when it commits after its placement gave up: placed on B
    // too, no move recorded; B makes an empty copy of it.
    const c = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 3000 });
    const placedOn = async () => (await Promise.all(['a', 'b', 'c'].map(async (k) => ((await c.get(`/enclave/desired/${names[k as 'a']}/${s.id}`).string()) === null ? [] : [k])))).flat();
    const copyOn = async (k: 'a' | 'b' | 'c') => ((await nodes[k].api('GET', '/v1/sessions?all=1')).body as { sessions: Session[] }).sessions.find((x) => x.id === s.id && x.node === names[k]);
    try {
      // Booked by a later try: its own placed_at.
      await c.put(`/enclave/desired/${names.b}/${s.id}`).value(JSON.stringify({ ...(JSON.parse(placement!) as object), placed_at: new Date().toISOString() }));
      await until("B's stray copy runs", async () => ((await copyOn('b'))?.state === 'running' ? true : undefined));
      // B drained, its stray copy stopped: its placement is the newer, so B moves nothing and undoes nothing
      // (its mover looks every second; given 3 s, C's copy is still there with its files).
      expect((await nodes.b.api('POST', `/v1/sessions/${s.id}/stop`)).status).toBe(200);
      expect((await copyOn('b'))?.state).toBe('stopped');
      expect((await nodes.a.cli(['node', 'drain', names.b])).code).toBe(0);
      await new Promise((r) => setTimeout(r, 3000));
      expect(await placedOn()).toEqual(['b', 'c']);
      expect((await copyOn('c'))?.state).toBe('stopped');
      expect((await nodes.a.cli(['node', 'uncordon', names.b])).code).toBe(0);
      expect((await nodes.a.cli(['node', 'drain', names.c])).code).toBe(0);
      const to = await until(
        'moved off C, placed on one node alone',
        async () => {
          const on = await placedOn();
          return on.length === 1 && on[0] !== 'c' && (await c.get(`/enclave/move/${s.id}`).string()) === null ? (on[0] as 'a' | 'b') : undefined;
        },
        120_000,
      );
      expect((await copyOn(to))?.state).toBe('stopped');
      // Nothing of it runs or waits anywhere else: B's stray copy was destroyed (or, moved to B, made again there).
      for (const k of ['a', 'b', 'c'] as const) if (k !== to) expect(['destroyed', undefined]).toContain((await copyOn(k))?.state);
      expect((await nodes.a.api('POST', '/v1/sessions/strayed/start')).status).toBe(200);
      expect((await nodes.a.sh('strayed', 'cat /home/mark')).stdout).toBe('kept\n');
    } finally {
      for (const k of ['b', 'c'] as const) await nodes.a.cli(['node', 'uncordon', names[k]]);
      await nodes.a.api('DELETE', `/v1/sessions/${s.id}`);
      c.close();
    }
  }, 240_000);

  it('shows a session of a node away past the grace lost, to its owner alone, until the owner destroys it', async () => {
    const gone = await createdOnC({ ...SMALL, name: 'gone' });
    // A second one its owner destroys while C is away: C must still fence it when back.
    const early = await createdOnC({ ...SMALL, name: 'gone-early' });
    const earlyInit = early.init_pid!;
    await nodes.c.stop('SIGKILL');
    const lost = await until(
      'the session lost',
      async () => {
        const r = await nodes.b.api('GET', '/v1/sessions');
        const s = (r.body as { sessions: Session[] }).sessions.find((x) => x.id === gone.id);
        return s?.state === 'lost' ? s : undefined;
      },
      (GRACE_S + 30) * 1000,
    );
    expect(lost).toMatchObject({ name: 'gone', node: names.c, owner_uid: 0, init_pid: null });
    expect(lost.last_error).toMatch(/past the fleet's grace: declared lost at .*; if the node comes back it removes it/);
    expect((await nodes.a.show('gone')).state).toBe('lost');
    // Another tenant neither lists it nor finds it.
    const as = (args: string[]) => cliAs(nodes.a.socket, { uid: NOBODY, groups: [GID] }, args);
    expect((await as(['session', 'list', '--quiet'])).stdout).not.toContain(gone.id);
    const theirs = await as(['session', 'show', gone.id]);
    expect(theirs.code).not.toBe(0);
    expect(theirs.stderr).not.toMatch(/lost/);
    await until('the early one lost too', async () => ((await nodes.a.api('GET', '/v1/sessions/gone-early')).body as Session).state === 'lost' || undefined);
    const rmEarly = await nodes.a.cli(['session', 'rm', 'gone-early']);
    expect(rmEarly.code, rmEarly.stderr).toBe(0);
    expect(await etcdGet(`/enclave/lost/${early.id}`)).toBeNull();
    expect(JSON.parse((await etcdGet(`/enclave/status/${early.id}`))!)).toMatchObject({ state: 'lost', node: names.c });
    // C back: it fences the session (stops and removes it), and its owner reads that it did.
    await nodes.c.start();
    const fenced = await until('C fenced it', async () => {
      const r = await nodes.a.api('GET', `/v1/sessions/${gone.id}`);
      const s = r.body as Session;
      return s.state === 'lost' && /came back at .* and removed it/.test(s.last_error ?? '') ? s : undefined;
    });
    expect(fenced.node).toBe(names.c);
    expect((await nodes.c.show(gone.id)).state).toBe('failed');
    // The one destroyed while C was away is fenced all the same, and nothing of it is left in etcd.
    expect((await nodes.c.show(early.id)).state).toBe('failed');
    // Gone or a zombie (the inits of a killed daemon re-parent to this test, which reaps them at its end).
    const runs = (pid: number) => {
      try {
        return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] !== 'Z';
      } catch {
        return false;
      }
    };
    await until(`init ${earlyInit} gone`, async () => (runs(earlyInit) ? undefined : true));
    await until('its status gone', async () => ((await etcdGet(`/enclave/status/${early.id}`)) === null ? true : undefined));
    // Listed once, lost, on every node: C's own (ended) record of it included.
    for (const d of [nodes.a, nodes.c]) {
      const all = ((await d.api('GET', '/v1/sessions')).body as { sessions: Session[] }).sessions.filter((s) => s.id === gone.id);
      expect(all.map((s) => s.state)).toEqual(['lost']);
    }
    const rm = await nodes.b.cli(['session', 'rm', 'gone']);
    expect(rm.code, rm.stderr).toBe(0);
    // The fleet's record goes; what is left is C's own, ended there: failed, saying why, as any session
    // that ended is shown (and reached by id through any node).
    expect((await nodes.c.show(gone.id)).state).toBe('failed');
    const after = await nodes.a.api('GET', `/v1/sessions/${gone.id}`);
    expect(after.status, JSON.stringify(after.body)).toBe(200);
    expect(after.body).toMatchObject({ id: gone.id, state: 'failed', node: names.c, last_error: expect.stringMatching(/^fenced: /) });
    const listed = ((await nodes.b.api('GET', '/v1/sessions')).body as { sessions: Session[] }).sessions.filter((s) => s.id === gone.id);
    expect(listed.map((s) => s.state)).toEqual(['failed']);
    expect(await etcdGet(`/enclave/lost/${gone.id}`)).toBeNull();
    expect(await etcdGet(`/enclave/status/${gone.id}`)).toBeNull();
    // The name is free again (a lost session holds none; its claim ages out as any other).
    const again = await until('the name free again', async () => {
      const r = await nodes.a.api('POST', '/v1/sessions', { ...SMALL, name: 'gone' });
      return r.status === 201 ? sessionSchema.parse(r.body) : undefined;
    });
    await nodes.a.api('DELETE', `/v1/sessions/${again.id}`);
  }, 180_000);

  it("compacts etcd's history while it runs (compact_interval_s = 1 here: every test above ran under it), one node a round", async () => {
    const c = new Etcd3({ hosts: etcd.endpoints, dialTimeout: 3000 });
    try {
      const first = (await c.get(COMPACTION_KEY).exec()).kvs[0];
      expect(Number(first?.version ?? 0)).toBeGreaterThan(2);
      // Revision 2 (the first writes of the run) is long compacted away; what is there now reads.
      await expect(c.get(COMPACTION_KEY).revision('2').string()).rejects.toThrow(/compacted/);
      // About one round a second across the three nodes (each node tries once a second; one wins a round).
      await new Promise((r) => setTimeout(r, 3000));
      const grew = Number((await c.get(COMPACTION_KEY).exec()).kvs[0]!.version) - Number(first!.version);
      expect(grew).toBeGreaterThanOrEqual(1);
      expect(grew).toBeLessThanOrEqual(4);
    } finally {
      c.close();
    }
  });

  // Last: it takes etcd's quorum away. Reach reads etcd; without a bound a
  // list on every node, and any call naming a session it does not hold,
  // would wait for etcd for good.
  it('without an etcd quorum lists a node\'s own sessions at once and answers a call on another node\'s session with one line', async () => {
    const there = await createdOnC({ ...SMALL, name: 'there' });
    const here = await nodes.c.api('GET', '/v1/sessions');
    expect(here.status).toBe(200);
    for (const m of etcd.members.filter((x) => existsSync(`/proc/${x.pid}`)).slice(0, 2)) await m.kill();
    const listed = await nodes.c.api('GET', '/v1/sessions');
    expect(listed.status).toBe(200);
    expect((listed.body as { sessions: { id: string }[] }).sessions.map((x) => x.id)).toContain(there.id);
    const far = await nodes.a.api('GET', `/v1/sessions/${there.id}`);
    expect(far.status).toBe(503);
    const msg = (far.body as { error: { message: string } }).error.message;
    expect(msg).toMatch(/etcd did not answer/);
    expect(msg).not.toContain('\n');
    const ex = await nodes.c.sh(there.id, 'echo ok');
    expect(ex.stdout, `exit ${ex.code}: ${ex.stderr}`).toBe('ok\n');
  }, 120_000);
});
