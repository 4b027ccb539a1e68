// What the daemon asks a session's init to run: the exec message (exec, or
// exec-as for another user of the session; native/src/agent.h), bounded so
// the init can read it whole.
import { ApiError } from '../vocab/errors.js';
import { AGENT_MAX_MSG, type MessageToInit } from '../native/contract.gen.js';
import { framingRoom, payloadSize } from '../native/control.js';

/**
 * The most bytes an exec's cwd, argv and env may take (each with its NUL).
 * The init reads at most AGENT_MAX_MSG bytes of one message, and drops the
 * channel (every command in flight with it) on a longer one; the rest of an
 * exec message is framing: the verb, the id, the tty and stdin flags, the
 * terminal size and the two list counts, at most framingRoom('exec') bytes.
 */
export const MAX_EXEC_MESSAGE = AGENT_MAX_MSG - framingRoom('exec');
/** The same for an exec as another user (its verb's name is longer; the user is payload). */
export const MAX_EXEC_AS_MESSAGE = AGENT_MAX_MSG - framingRoom('exec-as');

export interface ExecSpec {
  tty: boolean;
  argv: string[];
  env: string[];
  /** Absent: the user's HOME, chosen in the session (only with `user`). */
  cwd?: string | undefined;
  /**
   * Run as this user of the session: NAME, UID, NAME:GROUP or UID:GID,
   * passed as it is; the session's init resolves it against the session's
   * own /etc/passwd and /etc/group (exec-as). Absent: the session's root,
   * and the environment's HOME is the caller's to set.
   */
  user?: string | undefined;
  cols: number;
  rows: number;
  /** Without tty: [stdin?] stdout stderr, the session's ends of our pipes. */
  fds: number[];
  stdin: boolean;
}

/** The message for `spec` under exec id `id`; a 400 when it would not fit. */
export function execMessage(id: string, spec: ExecSpec): Extract<MessageToInit, { verb: 'exec' | 'exec-as' }> {
  const common = { id, tty: spec.tty, stdin: spec.stdin, cols: spec.cols, rows: spec.rows, argv: spec.argv, env: spec.env };
  if (spec.user === undefined && spec.cwd === undefined) throw new Error('an exec as root needs its cwd');
  const message = spec.user === undefined ? { verb: 'exec' as const, ...common, cwd: spec.cwd! } : { verb: 'exec-as' as const, ...common, cwd: spec.cwd ?? '', user: spec.user };
  const size = payloadSize(message);
  const max = message.verb === 'exec' ? MAX_EXEC_MESSAGE : MAX_EXEC_AS_MESSAGE;
  if (size > max) throw new ApiError('invalid_request', `command, environment and cwd take ${size} bytes; at most ${max} are allowed`, 'command');
  return message;
}
