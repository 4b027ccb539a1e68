// Waiting for a node's report on a session it was given (/enclave/status/ID):
// a create waits for it on the node that took the create, a drain's move on
// the drained node.
import type { Etcd3 } from 'etcd3';
import { key, parseValue, statusSchema, type Status } from './keys.js';
import type { WatchedFleet } from './watched.js';

/**
 * The session's report once `accept` takes it, or undefined after `timeoutMs`.
 * While the watched copy follows etcd, the report's write wakes the wait at
 * once (and etcd is read only every 250 ms, in case the watch drops);
 * otherwise etcd is read often at first (a create takes tens of ms: every
 * poll step is added to it), then less often.
 */
export async function awaitReport(etcd: Etcd3, id: string, accept: (s: Status) => boolean, timeoutMs: number, watched?: WatchedFleet): Promise<Status | undefined> {
  const k = key.status(id);
  const start = Date.now();
  let heard: string | undefined;
  let wake = () => {};
  const stop = watched?.onPut(k, (v) => {
    heard = v;
    wake();
  });
  try {
    // Listening before the first read: a report written in between is heard.
    while (Date.now() - start < timeoutMs) {
      let v: string | null;
      if (heard !== undefined) {
        v = heard;
        heard = undefined;
      } else v = await etcd.get(k).string().catch(() => null);
      const s = v === null ? undefined : parseValue(statusSchema, k, v);
      if (s && accept(s)) return s;
      const waited = Date.now() - start;
      const pause = watched?.following ? 250 : waited < 300 ? 5 : waited < 3000 ? 25 : 100;
      if (heard === undefined) await new Promise<void>((r) => setTimeout((wake = r), pause));
    }
    return undefined;
  } finally {
    stop?.();
  }
}
