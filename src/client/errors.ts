// Typed errors of the client library: one class per error code the API
// answers with (src/vocab/errors.ts, the `{"error":{"code","message"}}`
// body), each carrying the HTTP status and the server's message, plus two of
// the client's own: the daemon could not be reached, or answered something
// that is not the API.
import { errorBodySchema } from '../api/schemas.js';
import type { ErrorCode } from '../vocab/errors.js';

export interface ErrorDetails {
  /** The request field the server named (a 400's). */
  field?: string | undefined;
  /** The helper step that failed a create or an exec, and its errno. */
  step?: string | undefined;
  errno?: number | undefined;
}

/** Every error the library throws. `code` is the API's error code, or `connection` / `protocol`. */
export class EnclaveError extends Error {
  readonly field: string | undefined;
  readonly step: string | undefined;
  readonly errno: number | undefined;
  constructor(
    readonly code: string,
    /** The HTTP status of the reply; 0 when there was none. */
    readonly status: number,
    message: string,
    details: ErrorDetails = {},
  ) {
    super(message);
    this.name = new.target.name;
    this.field = details.field;
    this.step = details.step;
    this.errno = details.errno;
  }
}

/** 400: a bad body, query or name; the message names the field. */
export class InvalidRequestError extends EnclaveError {}
/** 401: the TCP listener's bearer token is missing or wrong. */
export class UnauthorizedError extends EnclaveError {}
/** 403: the access policy or a per-session ceiling refused it. */
export class ForbiddenError extends EnclaveError {}
/** 404: no such session, volume or secret (another owner's named by name reads alike). */
export class NotFoundError extends EnclaveError {}
/** 409: a name in use, a volume still mounted, a strict session's stop, a held port. */
export class ConflictError extends EnclaveError {}
/** 413: the body is over 64 KiB. */
export class PayloadTooLargeError extends EnclaveError {}
/** 415: the body is not JSON. */
export class UnsupportedMediaTypeError extends EnclaveError {}
/** 421: a Host the TCP listener does not serve. */
export class MisdirectedError extends EnclaveError {}
/** 429: a budget's total or an abuse limit. */
export class TooManyError extends EnclaveError {}
/** 500: the daemon failed. */
export class InternalError extends EnclaveError {}
/** 500: a helper step failed a create or an exec (`step`, `errno`). */
export class ConfinementFailedError extends EnclaveError {}
/** 503: ID slots, addresses or max_sessions exhausted, or a session that cannot fork. */
export class ExhaustedError extends EnclaveError {}
/** 507: the disk under the state dir is full. */
export class InsufficientStorageError extends EnclaveError {}

/** The daemon could not be reached (no socket, refused, no permission). */
export class ConnectionError extends EnclaveError {
  constructor(message: string) {
    super('connection', 0, message);
  }
}

/** The daemon answered something that is not the API's reply (a schema mismatch, a stream cut short). */
export class ProtocolError extends EnclaveError {
  constructor(message: string, status = 0) {
    super('protocol', status, message);
  }
}

type ErrorClass = new (code: string, status: number, message: string, details?: ErrorDetails) => EnclaveError;

/** A class for every code of the API: a new code without one does not compile. */
export const ERROR_CLASSES: Record<ErrorCode, ErrorClass> = {
  invalid_request: InvalidRequestError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  conflict: ConflictError,
  payload_too_large: PayloadTooLargeError,
  unsupported_media_type: UnsupportedMediaTypeError,
  misdirected: MisdirectedError,
  too_many: TooManyError,
  internal: InternalError,
  confinement_failed: ConfinementFailedError,
  exhausted: ExhaustedError,
  insufficient_storage: InsufficientStorageError,
};

const isCode = (c: string): c is ErrorCode => Object.hasOwn(ERROR_CLASSES, c);

/** An error reply as its typed error: the server's code, message and details; a body that is not the API's names the status. */
export function errorFromReply(status: number, body: unknown): EnclaveError {
  const e = errorBodySchema.safeParse(body);
  if (!e.success) return new ProtocolError(`the daemon answered HTTP ${status}`, status);
  const { code, message, field, step, errno } = e.data.error;
  const Class = isCode(code) ? ERROR_CLASSES[code] : EnclaveError;
  return new Class(code, status, message, { field, step, errno });
}
