// Secrets on a real kernel (issue 10): the store, injection at create into
// /run/enclave/{auth,env} and the environment of execs and consoles, Git
// over HTTP with the token and without a prompt, refresh-auth, isolation
// from other sessions, a leak hunt with a canary, and a store the daemon
// refuses to trust.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import WebSocket from 'ws';
import { K8S_V5_PROTOCOL, Channel, encodeFrame } from '../../src/terminal/channels.js';
import { isRoot, requestsAs, TestDaemon } from './harness.js';
import { OutsideHost } from './outside.js';

const GID = 48214; // a group nobody on the machine has
const canary = `cnry${randomBytes(10).toString('hex')}`;
const GITHUB = `ghp_${canary}`;
// Tabs, newlines, a CR and a byte that is not UTF-8: delivered exactly.
const FOO = Buffer.concat([Buffer.from(`foo-${canary}\twith a tab\nand a newline\r\n`), Buffer.from([0xff, 0x41])]);

/** A smart-HTTP Git server (git http-backend) that wants Basic x-access-token:<token>; the token comes on stdin. */
const GIT_SERVER = `
const http = require('http'), { spawn } = require('child_process');
const [root, port] = process.argv.slice(1);
let input = '';
process.stdin.on('data', (c) => {
  input += c;
  if (!input.includes('\\n')) return;
  process.stdin.pause();
  const want = 'Basic ' + Buffer.from('x-access-token:' + Buffer.from(input.split('\\n')[0], 'base64').toString()).toString('base64');
  http.createServer((req, res) => {
    if (req.headers.authorization !== want) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="enclave-test"' });
      return res.end('authentication required\\n');
    }
    const u = new URL(req.url, 'http://x');
    const cgi = spawn('git', ['http-backend'], { env: {
      PATH: process.env.PATH, GIT_PROJECT_ROOT: root, GIT_HTTP_EXPORT_ALL: '1', REMOTE_USER: 'x-access-token',
      PATH_INFO: u.pathname, QUERY_STRING: u.search.slice(1), REQUEST_METHOD: req.method,
      CONTENT_TYPE: req.headers['content-type'] || '', HTTP_CONTENT_ENCODING: req.headers['content-encoding'] || '',
      REMOTE_ADDR: req.socket.remoteAddress } });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0), body = false;
    cgi.stdout.on('data', (c) => {
      if (body) return res.write(c);
      head = Buffer.concat([head, c]);
      let i = head.indexOf('\\r\\n\\r\\n'), skip = 4;
      if (i < 0) { i = head.indexOf('\\n\\n'); skip = 2; }
      if (i < 0) return;
      body = true;
      let status = 200; const headers = {};
      for (const line of head.subarray(0, i).toString().split(/\\r?\\n/)) {
        const k = line.slice(0, line.indexOf(':')), v = line.slice(line.indexOf(':') + 1).trim();
        if (k.toLowerCase() === 'status') status = parseInt(v); else headers[k] = v;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(i + skip));
    });
    cgi.stdout.on('end', () => res.end());
  }).listen(Number(port), '0.0.0.0', () => console.log('ready'));
});
`;

/** Every file under dir (not following links), except those under `skip`. */
function filesUnder(dir: string, skip: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (skip.some((s) => p === s || p.startsWith(`${s}/`))) continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Processes of the host's PID namespace (not those inside sessions, which may hold their own secrets). */
function hostPids(): string[] {
  const mine = readlinkSync('/proc/self/ns/pid');
  return readdirSync('/proc').filter((e) => {
    if (!/^\d+$/.test(e)) return false;
    try {
      return readlinkSync(`/proc/${e}/ns/pid`) === mine;
    } catch {
      return false;
    }
  });
}

/** Type into a fresh console over the k8s protocol and collect output until `until` shows. */
function consoleRun(d: TestDaemon, session: string, input: string, until: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${d.socket}:/v1/sessions/${session}/attach`, [K8S_V5_PROTOCOL]);
    let out = '';
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`console output never matched ${until}: ${JSON.stringify(out.slice(-500))}`));
    }, 15_000);
    ws.on('open', () => ws.send(encodeFrame(Channel.stdin, Buffer.from(input))));
    ws.on('message', (m: Buffer) => {
      if (m[0] !== Channel.stdout) return;
      out += m.subarray(1).toString('latin1');
      if (until.test(out)) {
        clearTimeout(timer);
        ws.close();
        resolve(out);
      }
    });
    ws.on('error', reject);
  });
}

describe.skipIf(!isRoot)('secrets (root)', () => {
  const d = new TestDaemon({ logLevel: 'trace', topConfig: `socket_gid = ${GID}\n` });
  const outside = new OutsideHost(d.tag);
  const gitUrl = `http://${outside.ip}:8080`;
  // The github provider's Git remote is the outside host's server.
  d.reconfigure({ extraConfig: `[auth.providers.github]\ngit_urls = ["${gitUrl}"]\n` });
  const repos = join(d.dir, 'git');
  const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

  beforeAll(async () => {
    await d.start();
    // A repository with one commit, served from the outside host.
    mkdirSync(repos, { recursive: true });
    const git = (args: string[], cwd = repos) => {
      const r = spawnSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: d.dir } });
      if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
    };
    git(['init', '-q', '--bare', '-b', 'main', 'repo.git']);
    git(['init', '-q', '-b', 'main', 'work']);
    git(['-c', 'user.email=t@example.com', '-c', 'user.name=t', 'commit', '-q', '--allow-empty', '-m', 'first commit'], join(repos, 'work'));
    git(['push', '-q', join(repos, 'repo.git'), 'main'], join(repos, 'work'));
    outside.up();
    const server = outside.node(GIT_SERVER, [repos, '8080']);
    server.stdin!.end(Buffer.from(GITHUB).toString('base64') + '\n');
    await OutsideHost.waitForLine(server, 'ready');
  });

  afterAll(async () => {
    outside.down();
    await d.cleanup();
  });

  const set = (name: string, value: string | Buffer) => d.cli(['auth', 'set', name], value);

  it('stores secrets from stdin, lists names and kinds only, and refuses a NUL byte by name', async () => {
    expect((await set('github', `${GITHUB}\n`)).stdout).toMatch(/^set github \(provider token, version 1\)/);
    expect((await set('FOO', FOO)).code).toBe(0);
    const nul = await set('BAR', Buffer.from('a\0b'));
    expect(nul.code).toBe(1);
    expect(nul.stderr).toMatch(/BAR: the value contains a NUL byte/);
    const list = await d.cli(['auth', 'list', '--json']);
    const secrets = (JSON.parse(list.stdout) as { secrets: { name: string; kind: string; rotated_at: string | null }[] }).secrets;
    expect(secrets.map((s) => [s.name, s.kind, s.rotated_at])).toEqual([
      ['FOO', 'env', null],
      ['github', 'provider', null],
    ]);
    expect(list.stdout).not.toContain(canary);
    // Files of the store: root's, 0600, in 0700 directories (one per owner: these are root's).
    const store = join(d.stateDir, 'secrets');
    expect(statSync(store).mode & 0o777).toBe(0o700);
    expect(readdirSync(store)).toEqual(['0']);
    expect(statSync(join(store, '0')).mode & 0o777).toBe(0o700);
    const files = readdirSync(join(store, '0'));
    expect(files.sort()).toEqual(['FOO', 'github']);
    for (const f of files) expect([statSync(join(store, '0', f)).mode & 0o777, statSync(join(store, '0', f)).uid]).toEqual([0o600, 0]);
  });

  it('refuses a create that declares a secret the store does not have, and creates nothing', async () => {
    const before = ((await d.api('GET', '/v1/sessions?all=1')).body as { sessions: unknown[] }).sessions.length;
    const r = await d.api('POST', '/v1/sessions', { auth: ['github'], env_tokens: ['MISSING_ONE'] });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).toMatch(/secret 'MISSING_ONE' is not in the store: set it first with `enclave auth set MISSING_ONE`/);
    expect(((await d.api('GET', '/v1/sessions?all=1')).body as { sessions: unknown[] }).sessions.length).toBe(before);
  });

  it('refuses secret-looking names in exec --env and create --env, pointing to the store', async () => {
    await d.create({ name: 'plain' });
    const exec = await d.cli(['session', 'exec', 'plain', '--env', 'GITHUB_TOKEN=x', '--', 'true']);
    expect(exec.code).toBe(2);
    expect(exec.stderr).toMatch(/GITHUB_TOKEN looks like a secret: store it with `enclave auth set NAME`/);
    const ws = await d.api('POST', '/v1/sessions', { env: ['MY_API_KEY=x'] });
    expect(ws.status).toBe(400);
    expect(JSON.stringify(ws.body)).toMatch(/MY_API_KEY looks like a secret/);
  });

  it('gives a session exactly the files it declared, 0400 and byte-exact, and the variables in execs and consoles', async () => {
    const s = await d.create({ name: 'with', auth: ['github'], env_tokens: ['FOO'], env: ['PLAIN=yes'] });
    expect(s.secrets).toEqual({ auth: ['github'], env_tokens: ['FOO'] });
    const files = await d.sh('with', 'stat -c "%n %a %u %g" /run/enclave/auth/* /run/enclave/env/*');
    expect(files.stdout.trim().split('\n')).toEqual(['/run/enclave/auth/github.token 400 0 0', '/run/enclave/env/FOO 400 0 0']);
    const content = await d.sh('with', 'base64 -w0 /run/enclave/auth/github.token; echo; base64 -w0 /run/enclave/env/FOO');
    expect(content.stdout.split('\n').slice(0, 2)).toEqual([Buffer.from(GITHUB).toString('base64'), FOO.toString('base64')]);
    const env = await d.sh('with', 'printf %s "$GITHUB_TOKEN" | sha256sum; printf %s "$GH_TOKEN" | sha256sum; printf %s "$FOO" | sha256sum; echo "$PLAIN $GIT_TERMINAL_PROMPT"');
    expect(env.stdout.split('\n').map((l) => l.split(' ')[0])).toEqual([sha(GITHUB), sha(GITHUB), sha(FOO), 'yes', '']);
    expect(env.stdout).toContain('yes 0');
    const out = await consoleRun(d, 'with', 'printf "C:%s:C\\n" "$(printf %s "$GITHUB_TOKEN" | sha256sum | cut -c1-16)"\n', /C:[0-9a-f]{16}:C/);
    expect(out).toContain(`C:${sha(GITHUB).slice(0, 16)}:C`);
  });

  it('gives a session without secrets empty mounts and no variables, and no path to the other one’s', async () => {
    const r = await d.sh('plain', 'find /run/enclave/auth /run/enclave/env -mindepth 1 | wc -l; env | cut -d= -f1 | sort | tr "\\n" " "');
    const [count, names] = r.stdout.split('\n');
    expect(count).toBe('0');
    expect(names).toMatch(/\bPATH\b/);
    expect(names).not.toMatch(/GITHUB_TOKEN|GH_TOKEN|FOO|GIT_CONFIG|GIT_TERMINAL_PROMPT/);
    // The pattern goes in a file: a pattern in argv would itself be a copy in a process list.
    const hunt = await d.sh(
      'plain',
      `cat > /tmp/pat; grep -rsFl -f /tmp/pat /proc/[0-9]*/environ /proc/[0-9]*/cmdline /proc/[0-9]*/root/run/enclave ${d.stateDir} ${d.dir} /run /home /var/tmp 2>/dev/null; echo "rc=$?"; ls /proc/*/root/run/enclave/auth 2>/dev/null | grep -c token`,
      canary,
    );
    const lines = hunt.stdout.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('/'))).toEqual([]); // no file holds it
    expect(lines.slice(-2)).toEqual([expect.stringMatching(/^rc=[12]$/), '0']);
  });

  it('clones and pushes over HTTP with the token and no prompt, and fails clearly without it', async () => {
    const ok = await d.sh(
      'with',
      `set -e; cd /tmp; git clone -q ${gitUrl}/repo.git; cd repo; git log --format=%s; git -c user.email=s@example.com -c user.name=s commit -q --allow-empty -m from-session; git push -q origin HEAD:main 2>&1; echo pushed`,
    );
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim().split('\n')).toEqual(['first commit', 'pushed']);
    const log = spawnSync('git', ['--git-dir', join(repos, 'repo.git'), 'log', '--format=%s', 'main'], { encoding: 'utf8' });
    expect(log.stdout.trim().split('\n')).toEqual(['from-session', 'first commit']);
    const without = await d.sh('plain', `cd /tmp && GIT_TERMINAL_PROMPT=0 git clone -q ${gitUrl}/repo.git`);
    expect(without.code).not.toBe(0);
    expect(without.stderr).toMatch(/could not read Username|Authentication failed/);
  });

  it('refresh-auth rewrites a running session’s files atomically; new execs see the new value', async () => {
    const a = Buffer.alloc(30_000, 'a');
    const b = Buffer.alloc(30_000, 'b');
    expect((await set('github', a)).stdout).toMatch(/still holding the old value: with \(s-[0-9a-f]+\)/);
    expect((await d.cli(['session', 'refresh-auth', 'with'])).stdout).toMatch(/^refreshed github, FOO in s-/);
    const reader = d.sh('with', 'while [ ! -e /tmp/stop ]; do sha256sum < /run/enclave/auth/github.token; done | sort | uniq -c');
    for (let i = 0; i < 12; i++) {
      await set('github', i % 2 ? a : b);
      const r = await d.api('POST', '/v1/sessions/with/refresh-auth');
      expect(r.status).toBe(200);
    }
    await d.sh('with', 'touch /tmp/stop');
    const seen = (await reader).stdout.trim().split('\n').map((l) => l.trim().split(/\s+/)[1]);
    // Only whole files, old or new, and both of them (the reader ran through the rewrites).
    expect(new Set(seen)).toEqual(new Set([sha(a), sha(b)]));
    expect((await d.sh('with', 'printf %s "$GITHUB_TOKEN" | sha256sum')).stdout).toContain(sha(a));
    // A wrong token now: git fails without prompting; the right one again: it works.
    await set('github', 'ghp_wrong');
    await d.cli(['session', 'refresh-auth', 'with']);
    const wrong = await d.sh('with', `cd /tmp && rm -rf repo && git clone -q ${gitUrl}/repo.git`);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/Authentication failed/);
    await set('github', GITHUB);
    await d.cli(['session', 'refresh-auth', 'with']);
    expect((await d.sh('with', `cd /tmp && rm -rf repo && git clone -q ${gitUrl}/repo.git && echo cloned`)).stdout).toBe('cloned\n');
  });

  it('keeps secrets root’s: a member of the socket group can neither set, list nor use them', async () => {
    const withId = (await d.show('with')).id;
    const statuses = requestsAs(d.socket, { uid: 65534, groups: [GID] }, [
      { method: 'GET', path: '/v1/health' },
      { method: 'GET', path: '/v1/auth' },
      { method: 'PUT', path: '/v1/auth/github', body: { value_base64: 'eA==' } },
      { method: 'DELETE', path: '/v1/auth/github' },
      { method: 'POST', path: '/v1/sessions', body: { auth: ['github'] } },
      // By id: a bare name would be the caller's own namespace (404), not root's session.
      { method: 'POST', path: `/v1/sessions/${withId}/refresh-auth` },
    ]).map(([status]) => status);
    expect(statuses).toEqual([200, 403, 403, 403, 403, 403]);
  });

  it('leaves the canary nowhere but the store and the session: rows, plan, replies, metrics, logs, processes, files', async () => {
    const found: string[] = [];
    const look = (where: string, data: Buffer | string) => {
      if ((typeof data === 'string' ? Buffer.from(data) : data).includes(canary)) found.push(where);
    };
    // The API: show, list, metrics, the store's own listing.
    look('show', JSON.stringify((await d.api('GET', '/v1/sessions/with')).body));
    look('list', JSON.stringify((await d.api('GET', '/v1/sessions?all=1')).body));
    look('auth list', JSON.stringify((await d.api('GET', '/v1/auth')).body));
    look('metrics', String((await d.api('GET', '/metrics')).body));
    // Every table of the database, the stored plans included.
    const db = new Database(join(d.stateDir, 'enclave.db'), { readonly: true, fileMustExist: true });
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[];
    expect(tables.map((t) => t.name)).toEqual(expect.arrayContaining(['sessions', 'secrets', 'session_secrets']));
    for (const { name } of tables) look(`table ${name}`, JSON.stringify(db.prepare(`SELECT * FROM "${name}"`).all()));
    db.close();
    // The daemon's log, at trace level (every request is logged there).
    expect(d.log()).toMatch(/"level":10,.*"path":"\/v1\/auth\/github"/);
    look('daemon log', d.log());
    // Every host process: arguments and environment.
    look('ps -eo args', spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).stdout);
    for (const pid of hostPids()) {
      for (const f of ['cmdline', 'environ']) {
        try {
          look(`/proc/${pid}/${f}`, readFileSync(`/proc/${pid}/${f}`));
        } catch {
          /* gone */
        }
      }
    }
    // Every file of the run (state dir, log, config) but the store, and /tmp and /run.
    const store = join(d.stateDir, 'secrets');
    for (const f of [...filesUnder(d.dir, [store, repos]), ...filesUnder('/tmp', []), ...filesUnder('/run', [])]) {
      try {
        if (lstatSync(f).size < 64 * 1024 * 1024) look(f, readFileSync(f));
      } catch {
        /* unreadable or gone */
      }
    }
    expect(found).toEqual([]);
  });

  it('refuses to start on a store another user owns or others can read, naming the file', async () => {
    const store = join(d.stateDir, 'secrets');
    const file = join(store, '0', 'github');
    const startError = async () => {
      try {
        await d.start();
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    };
    await d.stop();
    chmodSync(file, 0o644);
    expect(await startError()).toContain(`${file}: mode 644 lets group or others in`);
    chmodSync(file, 0o600);
    chownSync(file, 1000, 1000);
    expect(await startError()).toContain(`${file}: owned by uid 1000, not root`);
    chownSync(file, 0, 0);
    chmodSync(store, 0o755);
    expect(await startError()).toContain(`${store}: mode 755 lets group or others in`);
    chmodSync(store, 0o700);
    await d.start();
    expect((await d.sh('with', 'cat /run/enclave/auth/github.token | sha256sum')).stdout).toContain(sha(GITHUB));
  });
});
