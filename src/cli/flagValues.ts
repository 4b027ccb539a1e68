// Flag values the CLI turns into API fields: session references, numbers,
// durations, times and port specs, each refused with a one-line usage error.
import { z } from 'zod';
import { sessionRef } from '../api/schemas.js';
import { UsageError } from './argv.js';

export function ref(value: string | undefined, cmd: string): string {
  if (!value) throw new UsageError(`enclave session ${cmd}: missing session ID or NAME`);
  const r = sessionRef.safeParse(value);
  if (!r.success) throw new UsageError(`enclave session ${cmd}: '${value}' is neither a session id (s-xxxxxxxxxx), a valid name, nor UID:NAME`);
  return value;
}

export const session$ = (id: string) => ({ params: { session: id } });

export function intFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = z.coerce.number().int().safeParse(value);
  if (!n.success || !/^\d+$/.test(value)) throw new UsageError(`--${flag}: '${value}' is not a whole number`);
  return n.data;
}

/** 127.0.0.1:8080:80 (or 8080:80, on 127.0.0.1). */
export function parsePublish(spec: string): { host_ip: string; host_port: number; session_port: number } {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})$/.exec(spec);
  if (!m) throw new UsageError(`--publish: '${spec}' is not [127.0.0.1:]HOSTPORT:SESSIONPORT`);
  return { host_ip: m[1] ?? '127.0.0.1', host_port: Number(m[2]), session_port: Number(m[3]) };
}

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/** A duration flag: 30s, 10m, 2h, 1d, or 0 (never). */
export function durationSeconds(v: string, flag: string): number {
  if (v === '0') return 0;
  const m = /^(\d{1,7})([smhd])$/.exec(v);
  if (!m) throw new UsageError(`${flag}: '${v.slice(0, 40)}' is not a duration like 30s, 10m, 2h, 1d (or 0 for never)`);
  return Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS];
}

/** --since: an ISO 8601 time, or a duration ago (30s, 10m, 2h, 7d). */
export function sinceTime(v: string): string {
  const m = /^(\d+)([smhd])$/.exec(v);
  if (m) return new Date(Date.now() - Number(m[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[m[2] as 's' | 'm' | 'h' | 'd']).toISOString();
  if (!Number.isNaN(Date.parse(v)) && /^\d{4}-\d{2}-\d{2}T/.test(v)) return new Date(v).toISOString();
  throw new UsageError(`--since: '${v}' is neither an ISO 8601 time (2026-12-02T10:00:00Z) nor a duration like 30s, 10m, 2h, 7d`);
}


