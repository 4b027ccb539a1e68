// A bound on every etcd call a user waits for. Without quorum etcd does not
// refuse a request, it lets it wait (and the client retries): a caller would
// hang instead of hearing that the fleet cannot answer.
import { ApiError } from '../vocab/errors.js';

/**
 * The longest a fleet operation waits for etcd before it fails, ms. Above
 * what losing the etcd leader costs a call in flight: etcd answers it after
 * its request timeout (5 s + 2 election timeouts; 9 s with the tests' 2 s),
 * or the client cuts it at its attempt's deadline (3 s for a read or a
 * transaction, 10 s for a plain put or delete: etcd.ts), then sends it to
 * the new leader. Less, and a create during a leader change would fail
 * although the cluster kept its quorum.
 */
export const FLEET_OP_TIMEOUT_MS = 15_000;
/** How long a list waits for the fleet's pending sessions before it answers with the last ones read. */
export const FLEET_READ_TIMEOUT_MS = 1000;

export class FleetTimeout extends Error {}

/** `p`, or a FleetTimeout after `ms` (the work itself is not cancelled; its result is dropped). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FleetTimeout(`${what} did not answer within ${ms} ms (no quorum, or not reachable from this node)`)), ms);
    timer.unref();
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * An etcd call whose failure (or silence: no quorum) the caller reads as one
 * line, a 503: our bound, or the etcd client's own error, whichever comes
 * first. An ApiError of the call's own passes through.
 */
export async function fleetOp<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await within(op(), FLEET_OP_TIMEOUT_MS, "the fleet's etcd");
  } catch (e) {
    if (e instanceof ApiError) throw e;
    if (e instanceof FleetTimeout) throw new ApiError('exhausted', `${e.message}; this node's own sessions keep running and answer here`);
    throw new ApiError('exhausted', `the fleet's etcd did not answer: ${String((e as Error).message).split('\n')[0]!.slice(0, 200)}`);
  }
}
