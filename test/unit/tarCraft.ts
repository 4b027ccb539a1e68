// Tar entries made by hand, as a hostile session's tar would send them
// (node-tar's Header and Pax encode them; nothing checks them): for the
// copy tests, unit (copyTar.test.ts) and root (copy.test.ts).
import { Header, Pax, type HeaderData } from 'tar';

/** One entry: its header (a PAX header first if asked or needed) and its body, padded. */
export function entry(h: HeaderData & { pax?: HeaderData }, body: Buffer | string = ''): Buffer {
  const data = Buffer.from(body);
  const head = new Header({ mode: 0o644, uid: 0, gid: 0, mtime: new Date(1_700_000_000_000), size: data.length, type: 'File', ...h });
  const needPax = head.encode();
  const parts: Buffer[] = [];
  if (needPax || h.pax) parts.push(new Pax({ path: h.path, linkpath: h.linkpath, size: data.length, ...h.pax }).encode());
  parts.push(head.block!, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  return Buffer.concat(parts);
}

/** A whole tar: the entries and the two zero blocks that end it. */
export const tarOf = (...entries: Buffer[]): Buffer => Buffer.concat([...entries, Buffer.alloc(1024)]);
