// Path parameters of the API, validated before anything is looked up.
import { ApiError, zodToApiError } from '../api/errors.js';
import { publishSchema, sessionRef, volumeName } from '../api/schemas.js';
import { secretName } from '../secrets/names.js';

function decoded(raw: string, what: string, field: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ApiError('invalid_request', `${what} is not valid URL encoding`, field);
  }
}

export function parseRef(raw: string): string {
  const ref = decoded(raw, 'session reference', 'id');
  const parsed = sessionRef.safeParse(ref);
  if (!parsed.success) throw new ApiError('invalid_request', `invalid session reference '${ref.slice(0, 80)}': must be a session id (s-xxxxxxxxxx) or a session name`, 'id');
  return parsed.data;
}

export function parseVolumeName(raw: string): string {
  const name = decoded(raw, 'volume name', 'name');
  const r = volumeName.safeParse(name);
  if (!r.success) throw zodToApiError(r.error, `volume name '${name.slice(0, 80)}'`);
  return r.data;
}

export function parseSecretName(raw: string): string {
  const name = decoded(raw, 'secret name', 'name');
  const r = secretName.safeParse(name);
  if (!r.success) throw zodToApiError(r.error, `secret name '${name.slice(0, 130)}'`);
  return r.data;
}

/** A published host address and port in a path: 127.0.0.1:8080. */
export function parseHostPort(raw: string): { host_ip: string; host_port: number } {
  const text = decoded(raw, 'host address and port', 'port');
  const m = /^([0-9.]{7,15}):(\d{1,5})$/.exec(text);
  const r = publishSchema.pick({ host_ip: true, host_port: true }).safeParse(m ? { host_ip: m[1], host_port: Number(m[2]) } : {});
  if (!m || !r.success) throw new ApiError('invalid_request', `'${text.slice(0, 40)}' is not a published loopback address and port like 127.0.0.1:8080`, 'port');
  return r.data;
}
