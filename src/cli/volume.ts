// `enclave volume create|list|show|remove|resize|export|import`, and the
// --volume flag of session create.
import { EXPORT_TRAILER } from '../api/protocol.js';
import { createVolumeRequest, resizeVolumeRequest, volumeMountSchema, type Volume, type VolumeMount } from '../api/schemas.js';
import { ROUTES } from '../api/routes.js';
import { formatZodError } from '../vocab/errors.js';
import { callRoute, CliError, routePath } from './client.js';
import { json, table } from '../api/render.js';

/** NAME:/path or NAME:/path:ro; another owner's volume as UID:NAME:/path. */
export function parseVolumeFlag(spec: string): VolumeMount {
  const m = /^((?:\d+:)?[^:/]+):([^:]+)(?::(ro|rw))?$/.exec(spec);
  if (!m) throw new CliError(`--volume: '${spec}' is not NAME:/PATH or NAME:/PATH:ro`, 2);
  const r = volumeMountSchema.safeParse({ name: m[1], target: m[2], readonly: m[3] === 'ro' });
  if (!r.success) throw new CliError(`--volume ${spec}: ${formatZodError(r.error)}`, 2);
  return r.data;
}

/** --compression of an export or a snapshot. */
export function compressionFlag(c: string | undefined): 'zstd' | 'none' | undefined {
  if (c !== undefined && c !== 'zstd' && c !== 'none') throw new CliError(`--compression: '${c}' is not one of zstd, none`, 2);
  return c;
}

const users = (v: Volume) => (v.used_by.length ? v.used_by.map((u) => `${u.name ?? u.id}:${u.target}${u.readonly ? ':ro' : ''}`).join(', ') : '-');

const MIB = 1024 * 1024;
/** Used bytes as MiB with one decimal; "-" while its image is not mounted on the host. */
const used = (v: Volume) => (v.used_bytes === null ? '-' : `${(v.used_bytes / MIB).toFixed(1)} MiB`);

function details(v: Volume): string {
  const rows: [string, string][] = [
    ['name', v.name],
    ['id', v.id],
    ['size', `${v.size_mb} MiB`],
    ['used', used(v)],
    ['owner uid', String(v.owner_uid)],
    ['created', v.created_at],
    ['used by', users(v)],
  ];
  return rows.map(([k, val]) => `${k.padEnd(9)}  ${val}`).join('\n') + '\n';
}

export interface VolumeFlags {
  socket: string;
  json: boolean;
  size?: number | undefined;
  output?: string | undefined;
  input?: string | undefined;
  compression?: 'zstd' | 'none' | undefined;
}

export async function volumeCommand(sub: string | undefined, positionals: string[], o: VolumeFlags): Promise<number> {
  const name = positionals[0];
  const need = (cmd: string) => {
    if (!name) throw new CliError(`enclave volume ${cmd}: missing NAME`, 2);
    return { params: { volume: name } };
  };
  switch (sub) {
    case 'create': {
      const body = createVolumeRequest.safeParse({ name, ...(o.size === undefined ? {} : { size_mb: o.size }) });
      if (!body.success) throw new CliError(`volume create: ${formatZodError(body.error).replace(/'size_mb'/g, '--size')}`, 2);
      const v = await callRoute(o.socket, ROUTES.volumeCreate, { body: body.data });
      process.stdout.write(o.json ? json(v) : `${v.name}\n`);
      return 0;
    }
    case 'list': {
      const r = await callRoute(o.socket, ROUTES.volumeList);
      process.stdout.write(o.json ? json(r) : table(['NAME', 'SIZE', 'USED', 'OWNER', 'USED BY'], r.volumes.map((v) => [v.name, `${v.size_mb} MiB`, used(v), String(v.owner_uid), users(v)])));
      return 0;
    }
    case 'show': {
      const v = await callRoute(o.socket, ROUTES.volumeShow, need('show'));
      process.stdout.write(o.json ? json(v) : details(v));
      return 0;
    }
    case 'remove': {
      await callRoute(o.socket, ROUTES.volumeRemove, need('remove'));
      return 0;
    }
    case 'resize': {
      const target = need('resize');
      const body = resizeVolumeRequest.safeParse({ size_mb: o.size });
      if (o.size === undefined) throw new CliError('enclave volume resize: --size MB is required', 2);
      if (!body.success) throw new CliError(`volume resize: ${formatZodError(body.error).replace(/'size_mb'/g, '--size')}`, 2);
      const v = await callRoute(o.socket, ROUTES.volumeResize, { ...target, body: body.data });
      process.stdout.write(o.json ? json(v) : details(v));
      return 0;
    }
    case 'export': {
      const target = need('export');
      if (!o.output) throw new CliError('enclave volume export: -o FILE is required', 2);
      const { download } = await import('./download.js');
      const path = routePath(ROUTES.volumeExport, { ...target, query: o.compression ? { compression: o.compression } : {} });
      await download(o.socket, path, o.output, `export of volume ${name}`, EXPORT_TRAILER);
      return 0;
    }
    case 'import': {
      need('import');
      const input = positionals[1] ?? o.input;
      if (!input) throw new CliError('enclave volume import: FILE is required (enclave volume import NAME FILE)', 2);
      if (positionals[1] !== undefined && o.input !== undefined) throw new CliError('enclave volume import: give FILE once (as an argument, or -i)', 2);
      const { importVolume } = await import('./volumeImport.js');
      const v = await importVolume(o.socket, name!, input, o.size);
      process.stdout.write(o.json ? json(v) : `${v.name}\n`);
      return 0;
    }
    default:
      throw new Error(`no handler for volume ${sub ?? ''}`);
  }
}
