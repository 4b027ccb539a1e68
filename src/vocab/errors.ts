// Error shapes shared by the daemon and the CLI, and the one place that turns
// a zod error into a message a person can act on.
import type { z } from 'zod';

export type ErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'misdirected'
  | 'too_many'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'forbidden'
  | 'exhausted'
  | 'insufficient_storage'
  | 'confinement_failed'
  | 'internal';

const STATUS: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  misdirected: 421,
  too_many: 429,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  internal: 500,
  confinement_failed: 500,
  exhausted: 503,
  insufficient_storage: 507,
};

export const REASON: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  401: 'Unauthorized',
  421: 'Misdirected Request',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  507: 'Insufficient Storage',
};

/** The helper step that failed, as fields a client can act on without parsing the message. */
export interface FailedStep {
  step: string;
  errno: number;
}

export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
    readonly failed?: FailedStep,
  ) {
    super(message);
    this.status = STATUS[code];
  }

  toJSON(): { error: { code: ErrorCode; message: string; field?: string; step?: string; errno?: number } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.field ? { field: this.field } : {}),
        ...(this.failed ? { step: this.failed.step, errno: this.failed.errno } : {}),
      },
    };
  }
}

function describeIssue(issue: z.core.$ZodIssue): { field: string; message: string } {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const where = path ? `${path}.` : '';
    const keys = issue.keys.map((k) => `'${where}${k}'`);
    return { field: `${where}${issue.keys[0] ?? ''}`, message: `unknown field${keys.length > 1 ? 's' : ''} ${keys.join(', ')}` };
  }
  return { field: path || '(root)', message: `'${path || '(root)'}': ${issue.message}` };
}

/** Every issue as "'field': what is wrong (what is allowed)". */
export function formatZodError(error: z.ZodError): string {
  return error.issues.map((i) => describeIssue(i).message).join('; ');
}

export function zodToApiError(error: z.ZodError, where: string): ApiError {
  const first = error.issues[0];
  return new ApiError('invalid_request', `invalid ${where}: ${formatZodError(error)}`, first ? describeIssue(first).field : undefined);
}
