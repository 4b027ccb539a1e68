// enclave/client: the typed client library (package.json "exports").
export { Enclave, type AttachOptions, type AuthRefreshed, type ClientOptions, type CommandOptions, type CreateSession, type CreateVolume, type EventsQuery, type EventStreamQuery, type ExecOptions, type ExecProcess, type Health, type RunOptions, type RunResult, type SecretRemoved, type SecretSet } from './enclave.js';
export { AttachStream, attachEventSchema, type AttachEvent, type AttachHello } from './attach.js';
export type { ExecOutcome } from './exec.js';
export type { StreamEvent } from './eventStream.js';
export {
  ConfinementFailedError,
  ConflictError,
  ConnectionError,
  EnclaveError,
  ERROR_CLASSES,
  ExhaustedError,
  ForbiddenError,
  InsufficientStorageError,
  InternalError,
  InvalidRequestError,
  MisdirectedError,
  NotFoundError,
  PayloadTooLargeError,
  ProtocolError,
  TooManyError,
  UnauthorizedError,
  UnsupportedMediaTypeError,
  type ErrorDetails,
} from './errors.js';
export { CLIENT_METHODS } from './methods.js';
export { DEFAULT_SOCKET } from './transport.js';
export type { AuditEvent } from '../api/eventSchemas.js';
export type { ExecStatus, Publish, ReloadReply, SecretInfoView, Session, SessionStats, Volume } from '../api/schemas.js';
export type { ErrorCode } from '../vocab/errors.js';
