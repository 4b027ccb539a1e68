// The fleet's etcd client (npm etcd3: leases, watches, transactions), made
// from the [cluster] section. One per daemon.
import { readFileSync } from 'node:fs';
import { ConsecutiveBreaker, ExponentialBackoff, TimeoutStrategy, circuitBreaker, handleWhen, isBrokenCircuitError, retry, timeout, wrap } from 'cockatiel';
import { Etcd3, isRecoverableError } from 'etcd3';
import type { Config } from '../config/schema.js';
import { FLEET_OP_TIMEOUT_MS } from './deadline.js';

export type ClusterConfig = NonNullable<Config['cluster']>;

/**
 * How the client rides out an etcd leader change. The client's defaults (a
 * breaker per member opened by 3 failures in a row for 5 s, 3 retries at once)
 * are made for a member that is down: during an election the live members
 * refuse too, and a burst of calls opens every breaker within milliseconds;
 * the calls then fail with "circuit breaker is open" although the cluster
 * keeps its quorum (a 100-create burst over a leader kill lost creates so).
 * Here a member's breaker tries again after 1 s, and a call whose members all
 * refused, or whose breakers are all open, is tried again with backoff for
 * about 8 s: past an election (2 election timeouts), under the 15 s that a
 * fleet operation waits at most (FLEET_OP_TIMEOUT_MS), and no retry starts
 * after that bound (a caller told "did not answer" must not have its call
 * land much later). A re-sent write whose first send applied but whose
 * answer was lost fails its compare: each transaction then looks whether
 * the write was its own (placement.ts, names.ts, move.ts).
 */
const faultHandling = {
  host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
  global: wrap(
    timeout(FLEET_OP_TIMEOUT_MS, TimeoutStrategy.Cooperative),
    retry(handleWhen((e) => isRecoverableError(e) || isBrokenCircuitError(e)), {
      maxAttempts: 12,
      backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }),
    }),
  ),
};

/**
 * Each attempt of a call (not a stream: watches and lease keepalives live
 * long) ends by this deadline, ms, and is sent again (DEADLINE_EXCEEDED is
 * recoverable). A call a member forwarded to a leader that then died is
 * answered only at etcd's request timeout (5 s + 2 election timeouts, 9 s in
 * the tests); waiting that out left a placement started at a leader's death
 * 11-13 s long, at the edge of its 13.5 s bound (placement.ts), and past it
 * once in CI. Cut at 3 s and sent again, it is placed within 5-7 s (the
 * burst in test/integration/fleetFailure.test.ts). Sending again is safe:
 * the same bytes, and each transaction checks whether a write that fails
 * its compare was its own (placement.ts, names.ts, move.ts); a write the
 * dead leader had replicated is committed when the next leader is elected,
 * before that leader serves the next send. With a quorum a call is answered
 * in milliseconds: 3 s is no load's latency.
 */
const ATTEMPT_MS = 3_000;

export function etcdClient(c: ClusterConfig): Etcd3 {
  const credentials = c.tls ? { rootCertificate: readFileSync(c.tls.ca), certChain: readFileSync(c.tls.cert), privateKey: readFileSync(c.tls.key) } : undefined;
  return new Etcd3({
    hosts: c.endpoints,
    ...(credentials ? { credentials } : {}),
    dialTimeout: 3000,
    faultHandling,
    defaultCallOptions: (call) => (call.isStream ? {} : { deadline: Date.now() + ATTEMPT_MS }),
  });
}

/** A key's value and its modification revision (0: the key does not exist), for a compare-and-swap. */
export async function getWithRev(etcd: Etcd3, k: string): Promise<{ value: string | null; rev: string }> {
  const r = await etcd.get(k).exec();
  const kv = r.kvs[0];
  return kv ? { value: kv.value.toString(), rev: kv.mod_revision } : { value: null, rev: '0' };
}

/** Every key under a prefix, with its value as text. */
export async function getPrefix(etcd: Etcd3, p: string): Promise<Map<string, string>> {
  const r = await etcd.getAll().prefix(p).strings();
  return new Map(Object.entries(r));
}
