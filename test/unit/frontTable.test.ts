// The native front end's header (native/src/front_table.gen.h) is the
// command table, generated: when a command, flag or alias changes, the
// committed header must be regenerated (`npm run gen`), or this fails.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS, GLOBAL_FLAGS, keyOf } from '../../src/cli/commandTable.js';
import { frontHeader } from '../../src/cli/frontTable.js';
import { repoRoot } from '../../src/native/addon.js';
import { ALT_SCREENS, DEC_DEFAULTS } from '../../src/cli/terminalModes.js';

describe('the front end header', () => {
  const header = frontHeader();

  it('is what src/cli/frontTable.ts makes of the command table now (regenerate and commit it when the table changes)', () => {
    const committed = readFileSync(join(repoRoot, 'native', 'src', 'front_table.gen.h'), 'utf8');
    expect(committed, 'native/src/front_table.gen.h is stale: run `npm run gen` and commit it').toBe(header);
  });

  it('carries every command, flag, short form and alias of the table', () => {
    for (const c of COMMANDS) {
      expect(header).toContain(`{"${keyOf(c)}", {${c.words.map((w) => `"${w}"`).join(', ')}, NULL}, ${c.words.length},`);
      for (const a of c.aliases ?? []) expect(header).toContain(`"${a}"`);
      for (const f of [...c.flags, ...GLOBAL_FLAGS]) {
        expect(header).toContain(`{"${f.long}", ${f.short ? `'${f.short}'` : '0'}, ${f.value ? 1 : 0}, ${f.multiple ? 1 : 0}, `);
        for (const a of f.aliases ?? []) expect(header).toContain(`"${a}"`);
      }
    }
  });

  it('names an entry of enum ft_hot for each command the front end answers, and only those', () => {
    const hot = [...header.matchAll(/^ {2}(FT_[A-Z_]+),$/gm)].map((m) => m[1]);
    expect(hot).toEqual(COMMANDS.filter((c) => c.front).map((c) => `FT_${keyOf(c).replace(/[^a-z0-9]+/gi, '_').toUpperCase()}`));
    expect(hot.length).toBeGreaterThan(0);
  });

  it('carries the terminal modes attach restores, with their defaults, from src/cli/terminalModes.ts', () => {
    expect(header).toContain(`static const struct ft_dec_mode ft_dec_modes[] = {${[...DEC_DEFAULTS].map(([m, on]) => `{${m}, ${on ? 1 : 0}}`).join(', ')}};`);
    expect(header).toContain(`static const int ft_alt_screens[] = {${ALT_SCREENS.join(', ')}};`);
    expect(header).toContain('#define FT_SGR_RESET "\\033[0m"');
  });
});
