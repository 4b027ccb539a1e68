// Exclusive host ID ranges: slot n of the configured pool maps a session's
// IDs 0..size-1 onto host IDs base+n*size .. base+(n+1)*size-1.
export interface IdPool {
  base: number;
  size: number;
  slots: number;
}

export interface IdRange {
  hostBase: number;
  size: number;
}

export function rangeForSlot(pool: IdPool, slot: number): IdRange {
  if (!Number.isInteger(slot) || slot < 0 || slot >= pool.slots) throw new RangeError(`ID slot ${slot} outside 0..${pool.slots - 1}`);
  return { hostBase: pool.base + slot * pool.size, size: pool.size };
}

export function rangesOverlap(a: IdRange, b: IdRange): boolean {
  return a.hostBase < b.hostBase + b.size && b.hostBase < a.hostBase + a.size;
}
