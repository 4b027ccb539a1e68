// A snapshot's manifest, read from the file without unpacking anything: a
// zstd snapshot ends with it in a skippable frame after the compressed
// archive, a plain tar has it as its first file (after the .enclave/
// directory). Only bounded, fixed-layout bytes are read, in TypeScript; no
// decompressor or tar runs on the host. The manifest is hostile input (a
// snapshot may come from anyone): it is checked against manifestSchema, and
// one that does not fit refuses the restore with what is wrong and where. A
// snapshot of an older Enclave has no manifest there: files only.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { MANIFEST_FRAME_END, MANIFEST_FRAME_MAGIC, MANIFEST_FRAME_TAG, manifestSchema, MAX_MANIFEST_BYTES, type Manifest } from '../api/manifest.js';
import { formatZodError } from '../vocab/errors.js';
import { CliError } from './client.js';

/** Entries of a plain tar looked at before giving up: the .enclave/ directory, its files. */
const MAX_HEADERS = 4;

function readAt(fd: number, length: number, position: number): Buffer {
  const b = Buffer.alloc(length);
  const n = readSync(fd, b, 0, length, position);
  return b.subarray(0, n);
}

/** A tar header's fields, if its checksum holds. */
export function tarHeader(h: Buffer): { name: string; size: number; type: string } | undefined {
  if (h.length < 512 || h.every((x) => x === 0)) return undefined;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  const field = (from: number, len: number) => h.toString('latin1', from, from + len).replace(/\0.*$/s, '');
  if (Number.parseInt(field(148, 8).trim(), 8) !== sum) return undefined;
  const size = field(124, 12).trim();
  if (!/^[0-7]{1,11}$/.test(size)) return undefined;
  const prefix = field(257, 6).startsWith('ustar') && field(263, 2) === '00' ? field(345, 155) : '';
  return { name: prefix ? `${prefix}/${field(0, 100)}` : field(0, 100), size: Number.parseInt(size, 8), type: field(156, 1) || '0' };
}

/** The manifest's raw bytes, or undefined when the head holds none (an older snapshot). */
function rawManifest(fd: number, kind: 'zstd' | 'none'): Buffer | undefined {
  if (kind === 'zstd') {
    const end = fstatSync(fd).size;
    const foot = readAt(fd, 12, Math.max(0, end - 12));
    if (foot.length < 12 || foot.toString('latin1', 4) !== MANIFEST_FRAME_END) return undefined;
    const size = foot.readUInt32LE(0);
    if (size > MAX_MANIFEST_BYTES) throw new CliError(`its manifest frame says ${size} bytes, more than a manifest may be (${MAX_MANIFEST_BYTES})`);
    const at = end - 8 - size;
    const head = at >= 0 ? readAt(fd, 8, at) : Buffer.alloc(0);
    if (head.length < 8 || head.readUInt32LE(0) !== MANIFEST_FRAME_MAGIC || head.readUInt32LE(4) !== size) throw new CliError('its manifest frame is damaged');
    const data = readAt(fd, size - 12, at + 8);
    if (!data.subarray(0, MANIFEST_FRAME_TAG.length).equals(Buffer.from(MANIFEST_FRAME_TAG))) throw new CliError('its manifest frame is damaged');
    return data.subarray(MANIFEST_FRAME_TAG.length);
  }
  let at = 0;
  for (let i = 0; i < MAX_HEADERS; i++) {
    const h = tarHeader(readAt(fd, 512, at));
    if (!h || !h.name.startsWith('.enclave/')) return undefined;
    if (h.name === '.enclave/manifest.json' && (h.type === '0' || h.type === '7')) {
      if (h.size > MAX_MANIFEST_BYTES) throw new CliError(`its manifest is ${h.size} bytes, more than a manifest may be (${MAX_MANIFEST_BYTES})`);
      const data = readAt(fd, h.size, at + 512);
      if (data.length < h.size) throw new CliError('it ends inside its manifest');
      return data;
    }
    at += 512 + Math.ceil(h.size / 512) * 512;
  }
  return undefined;
}

/** The snapshot's manifest, checked; undefined for a snapshot of an older Enclave (files only). */
export function readManifest(file: string, kind: 'zstd' | 'none'): Manifest | undefined {
  const fd = openSync(file, 'r');
  try {
    const raw = rawManifest(fd, kind);
    if (raw === undefined) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new CliError('its manifest is not JSON');
    }
    const m = manifestSchema.safeParse(json);
    if (!m.success) throw new CliError(`its manifest is not valid: ${formatZodError(m.error)}`);
    return m.data;
  } catch (e) {
    // Like a file that is not a snapshot at all: the command cannot be what was meant (exit 2).
    if (e instanceof CliError) throw new CliError(`--from ${file}: ${e.message}`, 2);
    throw e;
  } finally {
    closeSync(fd);
  }
}
