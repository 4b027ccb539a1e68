// Objects shared between lists (a row, a view, a node's kept answer): frozen
// whole, so that a list made of one cannot change the next.

export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}
