// `enclave daemon reload` and SIGHUP: the daemon reads its config file again,
// applies the keys that can change live (an access rule here, which a
// non-root caller's next call meets), names the rest for a restart, refuses
// a broken file with nothing changed, and is itself a policed action.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliAs, isRoot, TestDaemon } from './harness.js';

const GID = 48217; // a group nobody on the machine has
const A = { uid: 48311, groups: [GID] };
const RULE = `[[access.rules]]\nname = "listers"\ngids = [${GID}]\nactions = ["session.list"]\nscope = "self"\n`;

describe.skipIf(!isRoot)('config reload (root)', () => {
  const d = new TestDaemon({ topConfig: `socket_gid = ${GID}\n`, extraConfig: 'keep_history = 50\n[access]\nrate_per_minute = 1000\n' });
  let original = '';
  const listAsA = () => cliAs(d.socket, A, ['session', 'list']);

  beforeAll(async () => {
    await d.start();
    original = readFileSync(d.configPath, 'utf8');
  });
  afterAll(async () => {
    writeFileSync(d.configPath, original);
    await d.cleanup();
  });

  it('applies a new access rule and a grace at once, and names a changed subnet for a restart', async () => {
    expect((await listAsA()).code).toBe(1);
    const edited = original.replace('stop_grace_ms = 1000', 'stop_grace_ms = 2500').replace(/subnet = "([0-9.]+)\.0\/24"/, 'subnet = "$1.0/25"') + RULE;
    expect(edited).toContain('/25');
    writeFileSync(d.configPath, edited);
    const r = await d.cli(['daemon', 'reload']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('applied: access.rules, sessions.stop_grace_ms\nneeds a restart: network.subnet\n');
    const listed = await listAsA();
    expect(listed.code, listed.stderr).toBe(0);
    // Reloading the same file again changes nothing.
    expect((await d.cli(['daemon', 'reload'])).stdout).toBe('applied: none\nneeds a restart: network.subnet\n');
  });

  it('refuses a broken file with the reason, and keeps what it had', async () => {
    const good = readFileSync(d.configPath, 'utf8');
    writeFileSync(d.configPath, good.replace('rate_per_minute = 1000', 'rate_per_minute = "lots"'));
    const r = await d.cli(['daemon', 'reload']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/config not reloaded, nothing changed: .*access\.rate_per_minute/);
    expect((await listAsA()).code).toBe(0);
    writeFileSync(d.configPath, good);
  });

  it('is an action of the policy: a caller without daemon.reload is refused', async () => {
    const r = await cliAs(d.socket, A, ['daemon', 'reload']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/daemon\.reload/);
  });

  it('SIGHUP reloads too: the rule removed, the next call is refused; the daemon is the same process', async () => {
    writeFileSync(d.configPath, original);
    const pid = d.pid;
    process.kill(pid, 'SIGHUP');
    const deadline = Date.now() + 5000;
    while ((await listAsA()).code === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect((await listAsA()).code).toBe(1);
    expect(d.pid).toBe(pid);
    expect((await d.api('GET', '/v1/health')).status).toBe(200);
  });
});
