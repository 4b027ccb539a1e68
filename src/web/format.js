// Small formatting helpers of the dashboard: sizes, percentages, times, and
// element building without innerHTML (every text from the API is text).

/** An element with attributes and children (strings become text nodes). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++;
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

export function percent(p) {
  return p === null || p === undefined ? '–' : `${p >= 10 ? Math.round(p) : p.toFixed(1)}%`;
}

export function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** A one-line message: the API's errors are one line, and so is anything shown in the status bar. */
export function oneLine(s) {
  return String(s).replace(/\s+/g, ' ').trim();
}

/** States a session is gone in: the list drops it (as the list route does). */
export const ENDED = new Set(['destroyed', 'failed']);
/** States in which work is under way: no action but destroy makes sense. */
export const BUSY = new Set(['creating', 'stopping', 'starting', 'destroying']);

export const sessionLabel = (s) => s.name || s.id;
