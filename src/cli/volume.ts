// `enclave volume create|list|show|remove`, and the --volume flag of session create.
import { createVolumeRequest, volumeMountSchema, type Volume, type VolumeMount } from '../api/schemas.js';
import { ROUTES } from '../api/routes.js';
import { formatZodError } from '../vocab/errors.js';
import { callRoute, CliError } from './client.js';
import { json, table } from './output.js';
import { VOLUME_USAGE } from './usage.js';

/** NAME:/path or NAME:/path:ro; another owner's volume as UID:NAME:/path. */
export function parseVolumeFlag(spec: string): VolumeMount {
  const m = /^((?:\d+:)?[^:/]+):([^:]+)(?::(ro|rw))?$/.exec(spec);
  if (!m) throw new CliError(`--volume: '${spec}' is not NAME:/PATH or NAME:/PATH:ro`, 2);
  const r = volumeMountSchema.safeParse({ name: m[1], target: m[2], readonly: m[3] === 'ro' });
  if (!r.success) throw new CliError(`--volume ${spec}: ${formatZodError(r.error)}`, 2);
  return r.data;
}

const users = (v: Volume) => (v.used_by.length ? v.used_by.map((u) => `${u.name ?? u.id}:${u.target}${u.readonly ? ':ro' : ''}`).join(', ') : '-');

function details(v: Volume): string {
  const rows: [string, string][] = [
    ['name', v.name],
    ['id', v.id],
    ['size', `${v.size_mb} MiB`],
    ['owner uid', String(v.owner_uid)],
    ['created', v.created_at],
    ['used by', users(v)],
  ];
  return rows.map(([k, val]) => `${k.padEnd(9)}  ${val}`).join('\n') + '\n';
}

export async function volumeCommand(sub: string | undefined, positionals: string[], o: { socket: string; json: boolean; size?: number | undefined }): Promise<number> {
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
      process.stdout.write(o.json ? json(r.volumes) : table(['NAME', 'SIZE', 'OWNER', 'USED BY'], r.volumes.map((v) => [v.name, `${v.size_mb} MiB`, String(v.owner_uid), users(v)])));
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
    default:
      throw new CliError(`${sub ? `unknown volume command '${sub}'\n\n` : ''}usage:\n${VOLUME_USAGE}\n`, 2);
  }
}
