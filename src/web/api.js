// Calls to the daemon's API from the page. The sign-in is an HttpOnly
// cookie the browser sends by itself (same origin only); the page never
// holds the token after it has traded it for that cookie.
import { oneLine } from './format.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onSignedOut = () => {};
/** Called when the daemon answers 401: the sign-in ended (expired, signed out elsewhere, a new key). */
export function whenSignedOut(f) {
  onSignedOut = f;
}

async function call(method, path, { body, headers = {}, text = false } = {}) {
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'connection', 'the daemon cannot be reached (is it running?)');
  }
  if (res.status === 204) return null;
  if (text && res.ok) return res.text();
  let data = null;
  try {
    data = await res.json();
  } catch {
    /* not JSON: the status says it */
  }
  if (!res.ok) {
    const e = data && data.error;
    const err = new ApiError(res.status, e ? e.code : 'http', oneLine(e ? e.message : `HTTP ${res.status}`));
    if (res.status === 401 && !path.startsWith('/v1/login')) onSignedOut(err);
    throw err;
  }
  return data;
}

export const api = {
  get: (path) => call('GET', path),
  text: (path) => call('GET', path, { text: true }),
  post: (path, body) => call('POST', path, { body }),
  del: (path) => call('DELETE', path),
  /** The token buys the cookie; it is sent once, in a header, and not kept. */
  login: (token) => call('POST', '/v1/login', { headers: { authorization: `Bearer ${token}` } }),
  logout: () => call('POST', '/v1/logout'),
};

/** A session's path: its id (names are per owner; the id is what the list gave). */
export const sessionPath = (id, rest = '') => `/v1/sessions/${encodeURIComponent(id)}${rest}`;
