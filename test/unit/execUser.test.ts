// exec's `user` on the daemon's side: the query takes docker's four forms,
// the daemon refuses what the session cannot do (strict's missing
// capabilities, a number past its IDs), and otherwise hands the spec to the
// session's init as it is: the daemon never reads the session's
// /etc/passwd or /etc/group (the init's child does, inside the session:
// test/integration/execUser.test.ts).
import { afterEach, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { execQuery } from '../../src/api/schemas.js';
import { repoRoot } from '../../src/native/addon.js';
import { encodeMessage } from '../../src/native/control.js';
import { StartFailure, startFailureError } from '../../src/sessions/agent.js';
import { checkCommandUser, commandCwd, commandEnv } from '../../src/sessions/command.js';
import { switchesUsers } from '../../src/isolation/profiles.js';
import { ApiError } from '../../src/vocab/errors.js';
import { endScriptedInit, noPython, startAgainst } from './fixtures/scriptedInit.js';

describe('exec query: user', () => {
  it('takes NAME, UID, NAME:GROUP and UID:GID', () => {
    for (const user of ['bob', 'www-data', '_apt', 'a.b', 'Bob9', '0', '1234', '1048575', 'bob:dev', '1500:2000', 'bob:0', '0:dev', 'x'.repeat(32)]) {
      expect(execQuery.safeParse({ command: ['id'], user }).success, user).toBe(true);
    }
  });

  it('refuses anything else with one message naming the forms', () => {
    for (const user of ['', ':', 'bob:', ':dev', 'bob:dev:x', '-bob', '9bob', 'bo b', 'bob\n', 'bob$', 'ünï', 'x'.repeat(33), '1048576', '99999999', '-1', '0x10', 'bob,carol']) {
      const r = execQuery.safeParse({ command: ['id'], user });
      expect(r.success, user).toBe(false);
      expect(r.error?.issues.map((i) => i.message), user).toEqual([expect.stringMatching(/^must be NAME, UID, NAME:GROUP or UID:GID \(a name .*, a number 0\.\.1048575\)$/)]);
    }
  });
});

describe('a command as another user: policy on the daemon, resolution in the session', () => {
  it('leaves HOME, USER, LOGNAME and the cwd to the session for another user, unless the caller set them', () => {
    expect(commandEnv('h', { env: [], tty: false, user: 'bob' }).filter((kv) => /^(HOME|USER|LOGNAME)=/.test(kv))).toEqual([]);
    expect(commandEnv('h', { env: ['HOME=/srv'], tty: false, user: 'bob' })).toContain('HOME=/srv');
    expect(commandEnv('h', { env: [], tty: false })).toEqual(expect.arrayContaining(['HOME=/root', 'USER=root', 'LOGNAME=root']));
    expect(commandCwd({ env: [], user: 'bob' })).toBeUndefined();
    expect(commandCwd({ env: [], cwd: '/tmp', user: 'bob' })).toBe('/tmp');
    expect(commandCwd({ env: [] })).toBe('/root');
  });

  it('refuses user under a profile that cannot change IDs, and numbers past the session\'s range', () => {
    expect(switchesUsers('workspace')).toBe(true);
    expect(switchesUsers('strict')).toBe(false);
    expect(() => checkCommandUser('strict', 65536, 'root')).toThrow(/^user: the strict profile keeps no CAP_SETUID, CAP_SETGID or setgroups/);
    expect(() => checkCommandUser('strict', 65536, undefined)).not.toThrow();
    expect(() => checkCommandUser('workspace', 65536, '65536')).toThrow("user: uid 65536 is outside the session's IDs 0..65535 (ids.size)");
    expect(() => checkCommandUser('workspace', 1000, 'bob:1000')).toThrow("user: gid 1000 is outside the session's IDs 0..999 (ids.size)");
    for (const ok of ['65535', 'bob:65535', 'bob', 'bob:dev']) expect(() => checkCommandUser('workspace', 65536, ok), ok).not.toThrow();
    try {
      checkCommandUser('strict', 65536, 'bob');
    } catch (e) {
      expect(e).toBeInstanceOf(ApiError);
      expect((e as ApiError).field).toBe('user');
    }
  });

  it('maps a user the session cannot run as to exit 126 with the init\'s words', () => {
    expect(startFailureError(new StartFailure('user', 0, "no user 'bob' in the session's /etc/passwd"), 'id')).toEqual({ exitCode: 126, message: "exec: no user 'bob' in the session's /etc/passwd", field: 'user' });
    expect(startFailureError(new StartFailure('user', 1, 'setgroups to 3 groups refused'), 'id')).toEqual({ exitCode: 126, message: 'exec: setgroups to 3 groups refused: EPERM', field: 'user' });
    expect(startFailureError(new StartFailure('exec', 2, 'execve'), 'nope')).toEqual({ exitCode: 127, message: "cannot run 'nope': ENOENT (execve)", field: 'command' });
  });
});

afterEach(endScriptedInit);

/** What the init is asked, as a stand-in init echoes fields `verbAt` and `at` of the request back in a failure. */
function asked(spec: { user?: string; cwd?: string }, at: number): Promise<StartFailure> {
  const script = [{ fields: encodeMessage({ verb: 'failed', id: '$1', step: '$0', errno: 0, detail: `$${at}` }) }];
  return startAgainst(script, (w) => ({ tty: false, argv: ['id'], env: [], cols: 0, rows: 0, fds: [w, w], stdin: false, ...spec }));
}

describe.skipIf(!process.env.CI && noPython())('the daemon hands the user to the session as it is', () => {
  it('sends exec-as with the spec verbatim and an empty cwd for the user\'s HOME', async () => {
    // exec-as ID TTY STDIN COLS ROWS CWD USER ...: field 6 the cwd, 7 the user.
    const user = await asked({ user: 'bob:dev' }, 7);
    expect([user.step, user.detail]).toEqual(['exec-as', 'bob:dev']);
    const cwd = await asked({ user: '1234' }, 6);
    expect([cwd.step, cwd.detail]).toEqual(['exec-as', '']);
    const given = await asked({ user: '1234', cwd: '/srv' }, 6);
    expect(given.detail).toBe('/srv');
    // No user: the plain exec every init knows, with root's cwd.
    const plain = await asked({ cwd: '/root' }, 6);
    expect([plain.step, plain.detail]).toEqual(['exec', '/root']);
  }, 60_000); // four stand-in inits: python starts slowly on a busy machine
});

describe('the daemon never reads a session\'s account files', () => {
  it('has no reader of a passwd or group file but the base layer\'s (the host\'s accounts, before any session), the CLI aside', () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d)) {
        const p = join(d, e);
        // The CLI runs as its caller, on the host (it names uids from the host's passwd): not the daemon.
        if (statSync(p).isDirectory()) p !== join(repoRoot, 'src', 'cli') && walk(p);
        else if (p.endsWith('.ts')) files.push(p);
      }
    };
    walk(join(repoRoot, 'src'));
    const readers = files.flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .filter((l) => /\b(readFile|readFileSync|createReadStream|openSync|open)\s*\(/.test(l) && /passwd|etc\/group|'group'/.test(l))
        .map(() => relative(repoRoot, f)),
    );
    expect(files.length).toBeGreaterThan(50);
    expect([...new Set(readers)]).toEqual(['src/isolation/baseLayer.ts']);
  });
});
