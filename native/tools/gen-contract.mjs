#!/usr/bin/env node
// Generates src/native/contract.gen.ts, the daemon's side of the native
// contract, from the C headers that define it (as gen-syscalls.mjs does for
// the syscall numbers):
//   native/src/ops.h     argument kinds, phases, op flags, the op table, and
//                        the plan's limits (UPPER_KEEP_FD, MAX_LAYERS, ...)
//   native/src/common.h  the failure steps and STEP_EXIT_BASE
//   native/src/plan.h    the plan's size limits
//   native/src/harden.h  MAX_BPF_INSNS
//   native/src/agent.h   the control channel's limits, field kinds and verbs
// Out: the constants, typed op constructors (one per op, arguments typed by
// kind, tagged with the op's phase), readOp (a stored op's arguments by name),
// and the control messages both ways (src/native/control.ts encodes and
// decodes them by this table).
//
//   node native/tools/gen-contract.mjs            write the file if it changed
//                                                 (with CI set in the
//                                                 environment: --check instead)
//   node native/tools/gen-contract.mjs --check    exit 1 if the file is stale
//   node native/tools/gen-contract.mjs --stdout   print it
//
// `npm run install` (so `npm ci` and `npm run build`) runs the first form;
// test/unit/contract.test.ts fails when the committed file is not what the
// headers give.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const HEADERS = ['ops.h', 'common.h', 'plan.h', 'harden.h', 'agent.h'];
const OUT = join(ROOT, 'src', 'native', 'contract.gen.ts');

const fail = (msg) => {
  process.stderr.write(`gen-contract: ${msg}\n`);
  process.exit(2);
};

/** Comments out, continuation lines joined: one line per directive. */
function preprocess(text) {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' '))
    .replace(/\/\/[^\n]*/g, '')
    .replace(/\\\n/g, ' ');
}

/** Object-like #defines (name -> {expr, doc, header}) and table macros (name -> body). */
function readHeaders() {
  const defines = new Map();
  const tables = new Map();
  for (const h of HEADERS) {
    const raw = readFileSync(join(ROOT, 'native', 'src', h), 'utf8');
    const rawLines = raw.split('\n');
    // Docs: a trailing comment on the #define line, or the comment right above it.
    const docs = new Map();
    rawLines.forEach((line, i) => {
      const m = /^#define (\w+) ([^/\\]+?)\s*(?:\/\*\s*(.*?)\s*\*\/)?\s*$/.exec(line);
      if (!m) return;
      let doc = m[3];
      if (!doc && i > 0 && /\*\/\s*$/.test(rawLines[i - 1])) {
        let j = i - 1;
        while (j > 0 && !rawLines[j].includes('/*')) j--;
        doc = rawLines
          .slice(j, i)
          .join(' ')
          .replace(/^\s*\/\*+|\*+\/\s*$/g, '')
          .replace(/\s*\*\s+/g, ' ')
          .trim();
      }
      if (doc) docs.set(m[1], doc.replace(/\s+/g, ' '));
    });
    for (const line of preprocess(raw).split('\n')) {
      const fn = /^\s*#define (\w+)\(X\)\s+(.*)$/.exec(line);
      if (fn) {
        tables.set(fn[1], fn[2]);
        continue;
      }
      const obj = /^\s*#define (\w+)(?:\s+(.*?))?\s*$/.exec(line);
      if (obj && obj[2] !== undefined && !/^ENCLAVE_\w+_H$/.test(obj[1])) defines.set(obj[1], { expr: obj[2], doc: docs.get(obj[1]), header: h });
    }
  }
  return { defines, tables };
}

/** A C integer constant expression of literals and other defines, as a BigInt. */
function evaluate(expr, defines, seen = new Set()) {
  const js = expr.replace(/\b(0[xX][0-9a-fA-F]+|\d+)([uUlL]*)\b|\b([A-Za-z_]\w*)\b/g, (_, num, _suffix, ident) => {
    if (num !== undefined) {
      if (/^0\d/.test(num)) return `${BigInt('0o' + num.slice(1))}n`;
      return `${BigInt(num)}n`;
    }
    const d = defines.get(ident);
    if (!d || seen.has(ident)) throw new Error(`${ident} is not a constant`);
    return `(${evaluate(d.expr, defines, new Set([...seen, ident]))}n)`;
  });
  if (!/^[\s\d n()+\-*/<>|&~^]*$/.test(js)) throw new Error(`not an integer expression: ${expr}`);
  return Function(`"use strict"; return (${js});`)();
}

/** X(...) entries of a table macro, split into top-level arguments. */
function entries(body, name) {
  const out = [];
  for (let i = body.indexOf('X('); i >= 0; i = body.indexOf('X(', i)) {
    if (i > 0 && /\w/.test(body[i - 1])) {
      i += 2;
      continue;
    }
    let depth = 0;
    let j = i + 1;
    const args = [];
    let start = j + 1;
    let inString = false;
    for (; j < body.length; j++) {
      const c = body[j];
      if (inString) {
        if (c === '\\') j++;
        else if (c === '"') inString = false;
        continue;
      }
      if (c === '"') inString = true;
      else if (c === '(') depth++;
      else if (c === ')' && --depth === 0) break;
      else if (c === ',' && depth === 1) {
        args.push(body.slice(start, j).trim());
        start = j + 1;
      }
    }
    if (j >= body.length) fail(`${name}: unbalanced X(`);
    args.push(body.slice(start, j).trim());
    out.push(args);
    i = j + 1;
  }
  if (out.length === 0) fail(`${name}: no entries`);
  return out;
}

const str = (s, what) => {
  const m = /^"((?:[^"\\]|\\.)*)"$/.exec(s);
  if (!m) fail(`${what}: expected a string literal, got ${s}`);
  return m[1];
};
const camel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
const q = (s) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
/** An object key: bare when it can be. */
const key = (s) => (/^[A-Za-z_$][\w$]*$/.test(s) ? s : q(s));

function build() {
  const { defines, tables } = readHeaders();
  const table = (name) => tables.get(name) ?? fail(`no ${name}(X) table in ${HEADERS.join(', ')}`);
  const num = (expr) => {
    try {
      return evaluate(expr, defines);
    } catch (e) {
      return fail(e.message);
    }
  };

  const phases = entries(table('ENCLAVE_PHASES'), 'ENCLAVE_PHASES').map(([id, name]) => ({ id, name: str(name, 'phase') }));
  const steps = entries(table('ENCLAVE_STEPS'), 'ENCLAVE_STEPS').map(([id, name]) => ({ id, name: str(name, 'step') }));
  const kinds = entries(table('ENCLAVE_ARG_KINDS'), 'ENCLAVE_ARG_KINDS').map(([letter, what]) => {
    const m = /^'([A-Z])'$/.exec(letter) ?? fail(`argument kind ${letter}: expected a capital letter`);
    return { letter: m[1], what: str(what, 'argument kind') };
  });
  const opFlags = [...defines].filter(([n]) => n.startsWith('OP_')).map(([n, d]) => ({ id: n, name: n.slice(3).toLowerCase().replace(/_/g, '-'), value: num(d.expr) }));
  const ops = entries(table('ENCLAVE_OPS'), 'ENCLAVE_OPS').map((a) => {
    if (a.length !== 7) fail(`ENCLAVE_OPS: ${a[0]} has ${a.length} columns, not 7`);
    const [id, name, args, argnames, phase, step, flags] = a;
    const o = { id, name: str(name, id), args: str(args, id), names: str(argnames, id).split(/\s+/).filter(Boolean) };
    if (o.names.length !== o.args.length) fail(`op ${o.name}: ${o.args.length} argument kinds but ${o.names.length} names`);
    if (new Set(o.names).size !== o.names.length || o.names.some((n) => !/^[a-z][A-Za-z0-9]*$/.test(n))) fail(`op ${o.name}: argument names must be distinct identifiers`);
    for (const k of o.args) if (!kinds.some((x) => x.letter === k)) fail(`op ${o.name}: unknown argument kind ${k}`);
    o.phase = phases.find((p) => `PHASE_${p.id}` === phase)?.name ?? fail(`op ${o.name}: unknown phase ${phase}`);
    o.step = steps.find((s) => `STEP_${s.id}` === step)?.name ?? fail(`op ${o.name}: unknown step ${step}`);
    o.flags = flags === '0' ? [] : flags.split('|').map((f) => opFlags.find((x) => x.id === f.trim())?.name ?? fail(`op ${o.name}: unknown flag ${f}`));
    return o;
  });

  const fieldKinds = entries(table('AGENT_FIELD_KINDS'), 'AGENT_FIELD_KINDS').map(([id, what]) => ({ id, what: str(what, id) }));
  const verbs = entries(table('AGENT_VERBS'), 'AGENT_VERBS').map((a) => {
    if (a.length !== 5) fail(`AGENT_VERBS: ${a[0]} has ${a.length} columns, not 5`);
    const [id, name, dir, fds, list] = a;
    if (dir !== 'TO_INIT' && dir !== 'TO_DAEMON') fail(`verb ${id}: direction ${dir}`);
    const fields = [...list.matchAll(/F\(\s*"(\w+)",\s*(\w+),\s*([^,]+?),\s*([^)]+?)\s*\)/g)].map((m) => ({ name: m[1], kind: m[2], lo: num(m[3]), hi: num(m[4]) }));
    if (fields.length === 0 || list.replace(/F\([^)]*\)/g, '').trim() !== '') fail(`verb ${id}: fields must be F(name, kind, lo, hi) entries`);
    for (const f of fields) if (!fieldKinds.some((k) => k.id === f.kind)) fail(`verb ${id}: unknown field kind ${f.kind}`);
    return { id, name: str(name, id), dir: dir === 'TO_INIT' ? 'to-init' : 'to-daemon', fds: str(fds, id), fields };
  });

  const skip = new Set(opFlags.map((f) => f.id));
  const constants = [...defines]
    .filter(([n]) => !skip.has(n))
    .map(([n, d]) => ({ name: n, doc: d.doc, header: d.header, value: num(d.expr), big: /\d[uU]?[lL]{2}\b/.test(d.expr) && /[uU]/.test(d.expr) }));

  return emit({ phases, steps, kinds, opFlags, ops, fieldKinds, verbs, constants });
}

const lit = (v, big) => (big ? `0x${v.toString(16)}n` : v < 0n ? `-${-v}` : `${v}`);
const asNumber = (v) => {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) fail(`${v} is past a safe integer`);
  return `${v}`;
};

function emit({ phases, steps, kinds, opFlags, ops, fieldKinds, verbs, constants }) {
  const o = [];
  const w = (s = '') => o.push(s);
  w(`// Generated by native/tools/gen-contract.mjs from native/src/{${HEADERS.map((h) => h.replace(/\.h$/, '')).join(',')}}.h; do not edit.`);
  w('// The build regenerates it; test/unit/contract.test.ts fails when it is stale.');
  w("import { argKinds, type Arg, type Field } from './contractKinds.js';");
  w();
  w('// ---- constants ----------------------------------------------------------');
  for (const c of constants) {
    w(`/** ${c.doc ? `${c.doc.replace(/\*\//g, '* /')} ` : ''}(${c.header}) */`);
    w(`export const ${c.name} = ${c.big ? lit(c.value, true) : asNumber(c.value)};`);
  }
  w();
  w('// ---- phases and steps -----------------------------------------------------');
  w('/** The phases of a plan, in the order they run. */');
  w(`export const PHASES = [${phases.map((p) => q(p.name)).join(', ')}] as const;`);
  w('export type Phase = (typeof PHASES)[number];');
  w();
  w('/** Failure steps; a helper failing at step i exits with STEP_EXIT_BASE + i. */');
  w(`export const STEPS = [${steps.map((s) => q(s.name)).join(', ')}] as const;`);
  w('export type Step = (typeof STEPS)[number];');
  w();
  w('// ---- the op table -----------------------------------------------------------');
  w('/** Op flags, as `enclave-init --ops` names them. */');
  w(`export const OP_FLAGS = { ${opFlags.map((f) => `${key(f.name)}: 0x${f.value.toString(16)}`).join(', ')} } as const;`);
  w('export type OpFlag = keyof typeof OP_FLAGS;');
  w();
  w('/** Argument kinds: what enclave-init requires of an argument of each letter. */');
  w('export const ARG_KINDS = {');
  for (const k of kinds) w(`  ${k.letter}: ${q(k.what)},`);
  w('} as const;');
  w('export type ArgKind = keyof typeof ARG_KINDS;');
  w('// Every kind has its TypeScript encoding (contractKinds.ts), or this does not compile.');
  w('const kindCodecs: { [K in ArgKind]: (typeof argKinds)[K] } = argKinds;');
  w();
  w('export interface OpDef {');
  w('  /** One kind letter per argument. */');
  w('  args: string;');
  w('  /** The arguments\' names, in order. */');
  w('  names: readonly string[];');
  w('  phase: Phase;');
  w('  step: Step;');
  w('  flags: readonly OpFlag[];');
  w('}');
  w();
  w('/** Every op a plan may hold. */');
  w('export const OPS = {');
  for (const op of ops) {
    w(`  ${key(op.name)}: { args: ${q(op.args)}, names: [${op.names.map(q).join(', ')}], phase: ${q(op.phase)}, step: ${q(op.step)}, flags: [${op.flags.map(q).join(', ')}] },`);
  }
  w('} as const satisfies Record<string, OpDef>;');
  w('export type OpName = keyof typeof OPS;');
  w();
  w('/** One op of a plan, as stored and as enclave-init reads it: its arguments encoded. */');
  w('export interface PlanOp {');
  w('  phase: Phase;');
  w('  op: string;');
  w('  args: string[];');
  w('}');
  w();
  w('/** Each op\'s arguments by name, typed by their kinds. */');
  w('export interface OpArgs {');
  for (const op of ops) {
    w(`  ${key(op.name)}: ${op.names.length ? `{ ${op.names.map((n, i) => `${n}: Arg[${q(op.args[i])}]`).join('; ')} }` : 'Record<string, never>'};`);
  }
  w('}');
  w();
  w('/** One constructor per op: its arguments typed by kind, encoded, tagged with its phase. */');
  w('export const op = {');
  for (const op of ops) {
    const params = op.names.map((n, i) => `${n}: Arg[${q(op.args[i])}]`).join(', ');
    const args = op.names.map((n, i) => `kindCodecs.${op.args[i]}.encode(${n})`).join(', ');
    w(`  ${camel(op.name)}: (${params}): PlanOp => ({ phase: ${q(op.phase)}, op: ${q(op.name)}, args: [${args}] }),`);
  }
  w('} as const;');
  w();
  w('/**');
  w(' * The arguments of a stored op by name, decoded by kind: undefined when it is');
  w(' * another op or has another arity (a shape this table no longer has); throws');
  w(' * a RangeError for an argument its kind cannot decode.');
  w(' */');
  w('export function readOp<N extends OpName>(o: PlanOp, name: N): OpArgs[N] | undefined {');
  w('  const def: OpDef = OPS[name];');
  w('  if (o.op !== name || o.args.length !== def.args.length) return undefined;');
  w('  const out: Record<string, unknown> = {};');
  w('  def.names.forEach((n, i) => (out[n] = kindCodecs[def.args[i] as ArgKind].decode(o.args[i]!)));');
  w('  return out as OpArgs[N];');
  w('}');
  w();
  w('// ---- the control channel (agent.h) -----------------------------------------');
  w('/** Field kinds of the control messages: what the reader of a field requires. */');
  w('export const FIELD_KINDS = {');
  for (const k of fieldKinds) w(`  ${k.id}: ${q(k.what)},`);
  w('} as const;');
  w('export type FieldKind = keyof typeof FIELD_KINDS;');
  w();
  w('export interface FieldDef {');
  w('  name: string;');
  w('  kind: FieldKind;');
  w('  lo: number;');
  w('  hi: number;');
  w('}');
  w();
  w('export interface VerbDef {');
  w("  dir: 'to-init' | 'to-daemon';");
  w('  /** The fds a message carries. */');
  w('  fds: string;');
  w('  fields: readonly FieldDef[];');
  w('}');
  w();
  w('/** Every message of the control channel, both directions: its verb, then these fields. */');
  w('export const VERBS = {');
  for (const v of verbs) {
    w(`  ${key(v.name)}: {`);
    w(`    dir: ${q(v.dir)},`);
    w(`    fds: ${q(v.fds)},`);
    w('    fields: [');
    for (const f of v.fields) w(`      { name: ${q(f.name)}, kind: ${q(f.kind)}, lo: ${asNumber(f.lo)}, hi: ${asNumber(f.hi)} },`);
    w('    ],');
    w('  },');
  }
  w('} as const satisfies Record<string, VerbDef>;');
  w('export type Verb = keyof typeof VERBS;');
  w();
  for (const [dir, type] of [['to-init', 'ToInit'], ['to-daemon', 'ToDaemon']]) {
    w(`/** The fields of each message ${dir === 'to-init' ? 'the daemon sends the init' : 'the init sends the daemon'}, by name. */`);
    w(`export interface ${type} {`);
    for (const v of verbs.filter((x) => x.dir === dir)) w(`  ${key(v.name)}: { ${v.fields.map((f) => `${f.name}: Field[${q(f.kind)}]`).join('; ')} };`);
    w('}');
    w(`export type MessageTo${type.slice(2)} = { [V in keyof ${type}]: { verb: V } & ${type}[V] }[keyof ${type}];`);
    w();
  }
  return o.join('\n').trimEnd() + '\n';
}

const text = build();
const mode = process.argv[2];
if (mode === '--stdout') {
  process.stdout.write(text);
} else {
  let current = '';
  try {
    current = readFileSync(OUT, 'utf8');
  } catch {
    /* not there yet */
  }
  const where = relative(process.cwd(), OUT) || OUT;
  if (current === text) {
    if (mode === '--check' || process.env.CI) process.stdout.write(`${where} is up to date\n`);
  } else if (mode === '--check' || process.env.CI) {
    process.stderr.write(`gen-contract: ${where} is not what native/src/*.h give: run \`node native/tools/gen-contract.mjs\` and commit it\n`);
    process.exit(1);
  } else if (mode === undefined) {
    writeFileSync(OUT, text);
    process.stdout.write(`gen-contract: wrote ${where}\n`);
  } else {
    fail(`usage: gen-contract.mjs [--check | --stdout] (${mode}?)`);
  }
}
