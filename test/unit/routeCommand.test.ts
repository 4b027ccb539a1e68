// A command row that names a route (src/cli/routeCommand.ts): its arguments
// fill the path in order, its flags the query of a GET or the body of a POST,
// and the reply prints as key: value lines.
import { describe, expect, it } from 'vitest';
import { ROUTES } from '../../src/api/routes.js';
import { parseLine } from '../../src/cli/argv.js';
import type { CommandSpec } from '../../src/cli/commandTable.js';
import { fieldLines, routeInput } from '../../src/cli/routeCommand.js';

const row = (over: Partial<CommandSpec>): CommandSpec => ({ words: ['x'], summary: 's', args: [], flags: [], ...over });

describe('route-table commands', () => {
  it('fills path parameters from the arguments, in order', () => {
    const cmd = row({ args: [{ name: 'SESSION' }, { name: 'PORT' }], route: 'portUnpublish' });
    expect(routeInput(ROUTES.portUnpublish, parseLine(cmd, ['web', '127.0.0.1:8080']))).toEqual({ params: { session: 'web', port: '127.0.0.1:8080' } });
  });

  it('sends flags as the query of a GET and the body of anything else, --json kept out', () => {
    const flags = [{ long: 'json', help: 'j' }, { long: 'all', help: 'a' }, { long: 'dry-run', help: 'd' }, { long: 'name', value: 'N', help: 'n' }, { long: 'tag', value: 'T', multiple: true as const, help: 't' }];
    const get = routeInput(ROUTES.sessionList, parseLine(row({ flags, route: 'sessionList' }), ['--all', '--json']));
    expect(get).toEqual({ params: {}, query: { all: true } });
    const post = routeInput(ROUTES.nodeCordon, parseLine(row({ flags, route: 'nodeCordon' }), ['--name', 'node-b', '--dry-run', '--tag', 'a', '--tag', 'b']));
    expect(post).toEqual({ params: {}, body: { name: 'node-b', dry_run: true, tag: ['a', 'b'] } });
    expect(routeInput(ROUTES.nodeCordon, parseLine(row({ flags, route: 'nodeCordon' }), []))).toEqual({ params: {} });
  });

  it('prints a reply as one line per field', () => {
    expect(fieldLines({ uid: 0, gids: [0, 5], via: 'socket' })).toBe('uid: 0\ngids: [0,5]\nvia: socket\n');
    expect(fieldLines('text')).toBe('text\n');
    expect(fieldLines(undefined)).toBe('');
  });

  it('every route a command row names exists, and the row takes one argument per path parameter', async () => {
    const { COMMANDS } = await import('../../src/cli/commandTable.js');
    const routed = COMMANDS.filter((c) => c.route !== undefined);
    expect(routed.length).toBeGreaterThan(0);
    for (const c of routed) {
      const route = ROUTES[c.route!];
      expect(route, c.words.join(' ')).toBeDefined();
      expect(c.args.length, c.words.join(' ')).toBe([...route.path.matchAll(/\{\w+\}/g)].length);
    }
  });
});
