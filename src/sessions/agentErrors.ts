// What the session's init could not do, as the daemon reports it: the
// failure the init sent (its step, errno and detail), and how it reaches the
// caller of the API.
import { ApiError } from '../vocab/errors.js';
import { errnoName } from './launch.js';

/** Why the init could not start a command: its step, errno and detail. */
export class StartFailure extends Error {
  constructor(
    readonly step: string,
    readonly errno: number,
    readonly detail: string,
  ) {
    super(`step ${step} failed: ${detail}`);
  }
}

/**
 * How a failed start reaches the caller: 4xx/5xx before the upgrade, or, for
 * a command that cannot be executed, its shell-style exit status (127 not
 * found, 126 otherwise) and a message (without the CLI's "enclave: ") naming
 * the field at fault. A user the session cannot run it as (step `user`: no
 * such user or group in its files, files past their bounds, an ID outside
 * its range, setgroups refused) is 126 as docker's exec -u answers it, with
 * the init's words: "exec: no user 'bob' in the session's /etc/passwd".
 * Anything that is not a StartFailure is rethrown.
 */
export function startFailureError(e: unknown, argv0: string): ApiError | { exitCode: number; message: string; field: 'command' | 'user' } {
  if (!(e instanceof StartFailure)) throw e;
  const f = e;
  const why = `${f.errno ? errnoName(f.errno) : 'error'} (${f.detail})`;
  if (f.step === 'exec') return { exitCode: f.errno === 2 || f.errno === 20 ? 127 : 126, message: `cannot run '${argv0}': ${why}`, field: 'command' };
  if (f.step === 'user') return { exitCode: 126, message: `exec: ${f.detail}${f.errno ? `: ${errnoName(f.errno)}` : ''}`, field: 'user' };
  if (f.step === 'cwd') return new ApiError('invalid_request', `cwd: ${why}`, 'cwd', { step: f.step, errno: f.errno });
  return agentError(f, 'start a command');
}

/** Anything the session's init could not do for us, as the API's error. */
export function agentError(f: StartFailure, doing: string): ApiError {
  const why = `${f.errno ? errnoName(f.errno) : 'error'} (${f.detail})`;
  const failed = { step: f.step, errno: f.errno };
  const message = `the session cannot ${doing}: step ${f.step} failed: ${why}`;
  return new ApiError(f.step === 'fork' || f.step === 'stopping' || f.step === 'protocol' ? 'exhausted' : 'internal', message, undefined, failed);
}
