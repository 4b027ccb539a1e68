// The lists this node last made for the fleet's other nodes, row by row,
// by tag (listTag.ts). A node that holds one of them asks with its tag and
// `A-IM: rows` (RFC 3229's delta encoding, with an instance manipulation of
// our own) and, when the list changed, is answered 226 IM Used: the ids in
// order and only the rows that differ from those it holds (src/fleet/
// lastAnswers.ts puts them together). After a write on this node (any write
// moves the tag) the asking node parses and checks those rows alone, not the
// whole list again. Another node asking for the same tag is answered from the
// rows made, not a second making. Each row is serialized once, when made.
import type { IncomingMessage } from 'node:http';
import { ROWS_IM } from '../api/fleetSchemas.js';
import { Serialized, Unchanged } from './dispatch.js';
import { rowJson } from './listJson.js';

/**
 * Lists kept per kind: the nodes asking hold tags of a few writes ago at
 * most (each asks as its own callers list); one that holds an older one is
 * sent the whole list. The rows of one list are shared with the next where
 * they did not change.
 */
const KEPT = 4;

interface Made {
  tag: string;
  /** Each row's JSON, by id, in the list's order. */
  rows: Map<string, string>;
}

export class MadeLists {
  private readonly made = new Map<string, Made[]>();

  /**
   * The answer to `req` for `key`'s list now tagged `tag`: 304 when the
   * asking node holds it; 226 with the rows that changed when it holds one
   * kept here and asked for them; else the whole list.
   */
  answer(req: IncomingMessage, key: string, tag: string, make: () => ReadonlyArray<{ id: string }>): Serialized | Unchanged {
    const held = req.headers['if-none-match'];
    if (held === tag) return new Unchanged(tag);
    const kept = this.made.get(key) ?? [];
    // A tag made before (a console's viewers back to what they were) is the newest again.
    const now = kept.find((m) => m.tag === tag) ?? { tag, rows: serialize(make(), kept[0]?.rows) };
    this.made.set(key, [now, ...kept.filter((m) => m !== now)].slice(0, KEPT));
    const base = held !== undefined && asksRows(req) ? kept.find((m) => m.tag === held && m !== now) : undefined;
    if (!base) return new Serialized(200, `{"sessions":[${[...now.rows.values()].join(',')}]}`, { etag: tag });
    const changed: string[] = [];
    for (const [id, row] of now.rows) if (base.rows.get(id) !== row) changed.push(row);
    return new Serialized(226, `{"ids":${JSON.stringify([...now.rows.keys()])},"rows":[${changed.join(',')}]}`, { etag: tag, im: ROWS_IM, 'delta-base': base.tag });
  }
}

/** Each row's JSON by id (listJson.ts); a row equal to the one before is that one (one string held, and compared by identity). */
function serialize(rows: ReadonlyArray<{ id: string }>, before: Map<string, string> | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of rows) {
    const json = rowJson(r);
    const old = before?.get(r.id);
    out.set(r.id, old === json ? old : json);
  }
  return out;
}

/** Whether the asking node takes a delta of rows (A-IM is a list of manipulations, each maybe with parameters). */
const asksRows = (req: IncomingMessage): boolean =>
  [req.headers['a-im'] ?? '']
    .flat()
    .join(',')
    .split(',')
    .map((m) => m.split(';')[0]!.trim())
    .includes(ROWS_IM);
