// The fleet's background loops (failure checks, old copies, pending
// sessions, compaction): a run `ms` after the previous one ended, so two
// never overlap however long etcd takes, until stopped.

export interface Every {
  stop(): void;
}

/** Run `f` every `ms` after the previous run ended; a rejection goes to `failed`. `unref`: the loop keeps no process alive. */
export function every(ms: number, f: () => Promise<unknown>, failed: (e: Error) => void, unref = false): Every {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const next = () => {
    if (stopped) return;
    timer = setTimeout(() => void f().catch(failed).finally(next), ms);
    if (unref) timer.unref();
  };
  next();
  return {
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
