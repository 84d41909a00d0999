// Calls to the server's APIs with the user's token. Every action in the UI is one of these calls,
// made with the user's own token, so the UI can do exactly what that token may.

const TOKEN_KEY = 'tepui.token';

// The token lives in sessionStorage: it is gone when the tab closes, and no other tab or site
// sees it. It is never put in a cookie, so no other page can make the browser send it.
export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** An API call that failed: its status, message and, for Marathon and Metronome, field details. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
    // [{path: "/instances", errors: ["..."]}] on 422s (and Marathon's 400 "Invalid JSON").
    this.details = body && Array.isArray(body.details) ? body.details : [];
  }
}

let unauthorized = () => {};
/** What happens on a 401: the app returns to the login page. */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

async function errorOf(resp) {
  const text = await resp.text().catch(() => '');
  let body = null;
  try { body = JSON.parse(text); } catch { /* plain text, as Mesos' errors are */ }
  let message = body && typeof body === 'object'
    ? body.message || body.error || body.code
    : text.trim();
  if (!message) message = `${resp.status} ${resp.statusText}`;
  return new ApiError(resp.status, message, body);
}

/**
 * Calls the API. `body` is sent as JSON. Answers the parsed JSON (null when empty), or the
 * Response itself with `raw`, for streams. Throws ApiError; a 401 also logs out, unless an
 * explicit `token` is being tried (the login page's check).
 */
export async function api(path, {method = 'GET', body, signal, token: explicit, raw = false, accept} = {}) {
  const headers = {Accept: accept || 'application/json'};
  const t = explicit || token.get();
  if (t) headers.Authorization = `Bearer ${t}`;
  let payload;
  if (body !== undefined) {
    // JSON, always: the server refuses the content types a foreign page could send.
    headers['Content-Type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, {method, headers, body: payload, signal, cache: 'no-store', credentials: 'omit'});
  if (!resp.ok) {
    const err = await errorOf(resp);
    if (resp.status === 401 && !explicit) unauthorized(err.message);
    throw err;
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  const text = await resp.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return text; }
}

/**
 * Reads a streamed answer (logs, events) chunk by chunk as text until it ends or `signal`
 * aborts. Resolves when the stream ends.
 */
export async function stream(path, {signal, accept, onChunk}) {
  const resp = await api(path, {signal, raw: true, accept});
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      if (value) onChunk(value);
    }
  } finally {
    reader.releaseLock();
  }
}

/** Several calls at once; each answer is {value} or {error}, so one failure spoils nothing else. */
export async function all(calls) {
  const settled = await Promise.allSettled(calls);
  return settled.map((r) => (r.status === 'fulfilled' ? {value: r.value} : {error: r.reason}));
}

/** base64url without padding, as the websocket's bearer subprotocol carries the token. */
export function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Is this the error of an aborted call (a page left)? */
export function aborted(err) {
  return err && err.name === 'AbortError';
}
