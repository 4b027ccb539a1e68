// The control channel's messages, encoded and decoded by the verb table of
// native/src/agent.h (contract.gen.ts): the verb, then its fields in the
// table's order, each by its kind. Nothing here knows a verb by name.
import { AGENT_MAX_ID, AGENT_MAX_MSG, VERBS, type FieldDef, type MessageToDaemon, type MessageToInit, type Verb } from './contract.gen.js';

type Message = MessageToInit | MessageToDaemon;

/** The fields of a message as the channel sends them: the verb first; a list is its count, then its items. */
export function encodeMessage(m: Message): (string | Buffer)[] {
  const values = m as unknown as Record<string, unknown>;
  const out: (string | Buffer)[] = [m.verb];
  for (const f of VERBS[m.verb].fields as readonly FieldDef[]) {
    const v = values[f.name];
    switch (f.kind) {
      case 'FLAG':
        out.push(v ? '1' : '0');
        break;
      case 'NUM':
        out.push(String(v));
        break;
      case 'MODE':
        out.push((v as number).toString(8));
        break;
      case 'LIST':
        out.push(String((v as readonly string[]).length), ...(v as readonly string[]));
        break;
      default: // ID, PATH, TEXT, BYTES: as they are
        out.push(v as string | Buffer);
    }
  }
  return out;
}

const NUMBER = /^-?\d{1,10}$/;

/**
 * One message the init sent, checked against its verb's row (kinds, bounds,
 * exactly the fields the row lists): undefined if it is not one.
 */
export function decodeToDaemon(fields: readonly string[]): MessageToDaemon | undefined {
  return decode(fields, 'to-daemon') as MessageToDaemon | undefined;
}

/** One message the daemon sent, as the init reads it (the tests' stand-ins use it). */
export function decodeToInit(fields: readonly string[]): MessageToInit | undefined {
  return decode(fields, 'to-init') as MessageToInit | undefined;
}

function decode(fields: readonly string[], dir: 'to-init' | 'to-daemon'): Message | undefined {
  const verb = fields[0];
  if (verb === undefined || !Object.hasOwn(VERBS, verb)) return undefined;
  const def = VERBS[verb as Verb];
  if (def.dir !== dir) return undefined;
  const out: Record<string, unknown> = { verb };
  let i = 1;
  for (const f of def.fields as readonly FieldDef[]) {
    const s = fields[i++];
    if (s === undefined) return undefined;
    switch (f.kind) {
      case 'ID':
        if (s === '' || Buffer.byteLength(s) > AGENT_MAX_ID) return undefined;
        out[f.name] = s;
        break;
      case 'FLAG':
        if (s !== '0' && s !== '1') return undefined;
        out[f.name] = s === '1';
        break;
      case 'NUM': {
        const n = Number(s);
        if (!NUMBER.test(s) || n < f.lo || n > f.hi) return undefined;
        out[f.name] = n;
        break;
      }
      case 'PATH':
        if (!s.startsWith('/')) return undefined;
        out[f.name] = s;
        break;
      case 'TEXT':
        if (s.length > f.hi) return undefined;
        out[f.name] = s;
        break;
      case 'MODE': {
        const n = parseInt(s, 8);
        if (!/^[0-7]{1,4}$/.test(s) || n > f.hi) return undefined;
        out[f.name] = n;
        break;
      }
      case 'LIST': {
        const n = Number(s);
        if (!/^\d{1,10}$/.test(s) || n < f.lo || i + n > fields.length) return undefined;
        out[f.name] = fields.slice(i, i + n);
        i += n;
        break;
      }
      case 'BYTES':
        out[f.name] = s;
        break;
    }
  }
  return i === fields.length ? (out as unknown as Message) : undefined;
}

/** Kinds whose fields are what the caller says (a path, text, list items, bytes), not framing. */
const PAYLOAD = new Set(['PATH', 'TEXT', 'BYTES']);

/**
 * The most bytes of a message of this verb that are framing, not payload:
 * the verb, and each field that is not payload at its widest (an id of
 * AGENT_MAX_ID bytes, a number at its bound's width, a list's count), each
 * with its NUL. A count is below AGENT_MAX_MSG: every item takes a byte.
 */
export function framingRoom(verb: Verb): number {
  let n = Buffer.byteLength(verb) + 1;
  for (const f of VERBS[verb].fields as readonly FieldDef[]) {
    if (PAYLOAD.has(f.kind)) continue;
    if (f.kind === 'ID') n += AGENT_MAX_ID + 1;
    else if (f.kind === 'FLAG') n += 2;
    else if (f.kind === 'NUM') n += Math.max(String(f.lo).length, String(f.hi).length) + 1;
    else if (f.kind === 'MODE') n += f.hi.toString(8).length + 1;
    else if (f.kind === 'LIST') n += String(AGENT_MAX_MSG).length + 1;
  }
  return n;
}

/** The payload bytes of a message: its payload fields and list items, each with its NUL. */
export function payloadSize(m: Message): number {
  const values = m as unknown as Record<string, unknown>;
  let n = 0;
  for (const f of VERBS[m.verb].fields as readonly FieldDef[]) {
    const v = values[f.name];
    if (f.kind === 'LIST') for (const item of v as readonly string[]) n += Buffer.byteLength(item) + 1;
    else if (PAYLOAD.has(f.kind)) n += (Buffer.isBuffer(v) ? v.length : Buffer.byteLength(v as string)) + 1;
  }
  return n;
}
