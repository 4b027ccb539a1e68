#!/usr/bin/env node
// Writes native/src/front_table.gen.h, the native front end's copy of the
// CLI's command table, from src/cli/commandTable.ts (through
// src/cli/frontTable.ts, compiled: run tsc first; `npm run gen` does both).
// The header is committed, so `npm run install` builds the front end without
// TypeScript; test/unit/frontTable.test.ts fails when it is stale.
//   node native/tools/gen-front.mjs            write it if it changed
//   node native/tools/gen-front.mjs --check    exit 1 if it is stale
//   node native/tools/gen-front.mjs --stdout   print it
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const OUT = join(ROOT, 'native', 'src', 'front_table.gen.h');
const SRC = join(ROOT, 'dist', 'src', 'cli', 'frontTable.js');

if (!existsSync(SRC)) {
  process.stderr.write(`gen-front: ${SRC} is missing: run tsc -p tsconfig.json first\n`);
  process.exit(2);
}
const { frontHeader } = await import(pathToFileURL(SRC).href);
const text = frontHeader();
const mode = process.argv[2];
if (mode === '--stdout') process.stdout.write(text);
else {
  const old = existsSync(OUT) ? readFileSync(OUT, 'utf8') : '';
  if (mode === '--check') {
    if (old !== text) {
      process.stderr.write('gen-front: native/src/front_table.gen.h is stale: run `npm run gen` and commit it\n');
      process.exit(1);
    }
  } else if (old !== text) writeFileSync(OUT, text);
}
