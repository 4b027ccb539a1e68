// The fleet's etcd client (npm etcd3: leases, watches, transactions), made
// from the [cluster] section. One per daemon.
import { readFileSync } from 'node:fs';
import { ConsecutiveBreaker, ExponentialBackoff, TimeoutStrategy, circuitBreaker, handleWhen, isBrokenCircuitError, retry, timeout, wrap } from 'cockatiel';
import { Etcd3, isRecoverableError, type IKeyValue } from 'etcd3';
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
    // Not aborted on return (cockatiel's default): the call is over by then (the retries run within it), and
    // each abort makes a DOMException, a stack captured: about 0.1 ms of CPU on every etcd call.
    timeout(FLEET_OP_TIMEOUT_MS, { strategy: TimeoutStrategy.Cooperative, abortOnReturn: false }),
    retry(handleWhen((e) => isRecoverableError(e) || isBrokenCircuitError(e)), {
      maxAttempts: 12,
      backoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }),
    }),
  ),
};

/**
 * Each attempt of a call (not a stream: watches and lease keepalives live
 * long) ends by a deadline and is sent again (DEADLINE_EXCEEDED is
 * recoverable). A read or a transaction is cut at 3 s: one a member
 * forwarded to a leader that then died is answered only at etcd's request
 * timeout (5 s + 2 election timeouts, 9 s in the tests), and a create
 * whose booking straddled a leader's death took 11-13 s of its placement's
 * 13.5 s bound (placement.ts; past it once in CI); cut and sent again,
 * 5.7-6.8 s. A read sent twice changes nothing; each transaction compares
 * before it writes, and one whose compare fails looks whether the write
 * was its own (placement.ts, names.ts, move.ts, failure.ts). A plain put
 * or delete waits 10 s, past etcd's own timeout, so that it is answered
 * rather than sent again while it may still apply: sent again after its
 * first send applied and something else followed (a pending entry booked
 * and removed), it would undo that.
 */
const COMPARED_ATTEMPT_MS = 3_000;
const PLAIN_ATTEMPT_MS = 10_000;
const compared = (c: { service: string; method: string }) => c.service === 'KV' && (c.method === 'range' || c.method === 'txn');

export function etcdClient(c: ClusterConfig): Etcd3 {
  const credentials = c.tls ? { rootCertificate: readFileSync(c.tls.ca), certChain: readFileSync(c.tls.cert), privateKey: readFileSync(c.tls.key) } : undefined;
  return new Etcd3({
    hosts: c.endpoints,
    ...(credentials ? { credentials } : {}),
    dialTimeout: 3000,
    faultHandling,
    defaultCallOptions: (call) => (call.isStream ? {} : { deadline: Date.now() + (compared(call) ? COMPARED_ATTEMPT_MS : PLAIN_ATTEMPT_MS) }),
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

/** A range to read: one key, or every key under a prefix (`keysOnly`: without their values). */
export type Range = { key: string } | { prefix: string; keysOnly?: boolean };

/** `ranges` read in one transaction, so at one revision: each one's key-values, in order. */
export async function atOneRevision(etcd: Etcd3, ranges: readonly Range[]): Promise<IKeyValue[][]> {
  const ops = await Promise.all(
    ranges.map(async (r) => {
      if ('key' in r) return etcd.get(r.key).op();
      const op = await etcd.getAll().prefix(r.prefix).op();
      if (r.keysOnly && op.request_range) op.request_range.keys_only = true;
      return op;
    }),
  );
  const t = await etcd.kv.txn({ success: ops });
  return ranges.map((_, i) => t.responses[i]?.response_range.kvs ?? []);
}
