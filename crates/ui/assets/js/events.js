// The cluster's event stream (GET /v1/events: nodes, apps, deployments, tasks, frameworks,
// roles, jobs, runs, the leader), read with fetch because EventSource cannot send the
// Authorization header. One connection serves every page (a browser has six per server over
// HTTP/1.1; a stream holds one for as long as it is open); it opens while someone listens and
// reconnects with backoff when it breaks. Marathon's /v2/events is for Marathon's clients.

import {api, aborted} from './api.js';

const listeners = new Set();
const stateListeners = new Set();
let controller = null;
let state = 'closed';
let lingering = null;

function setState(next, detail) {
  state = next;
  for (const fn of stateListeners) fn(next, detail);
}

/** The connection's state: closed, connecting, connected or reconnecting. */
export function connectionState() {
  return state;
}

/** Calls fn(state, detail) on each change of the connection's state; returns the unsubscribe. */
export function onState(fn) {
  stateListeners.add(fn);
  return () => stateListeners.delete(fn);
}

/**
 * Calls fn(type, data) for every event; returns the unsubscribe. After a reconnect, fn gets
 * ('_reconnected', null): events may have been missed, so pages fetch again.
 */
export function onEvent(fn) {
  listeners.add(fn);
  clearTimeout(lingering);
  if (!controller) start();
  return () => {
    listeners.delete(fn);
    // Kept open a moment: the next page subscribes again right after the last one left.
    if (!listeners.size) lingering = setTimeout(stop, 5000);
  };
}

function dispatch(type, data) {
  for (const fn of [...listeners]) {
    try { fn(type, data); } catch (e) { console.error(e); }
  }
}

export function stop() {
  clearTimeout(lingering);
  if (controller) controller.abort();
  controller = null;
  setState('closed');
}

const SOURCES = ['/v1/events'];
const connected = new Set();

function start() {
  controller = new AbortController();
  connected.clear();
  for (const path of SOURCES) run(path, controller.signal);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, {once: true});
  });
}

/** One SSE block: `event:` and `data:` lines (several data lines join with newlines). */
function parseBlock(block) {
  let type = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  if (!data.length) return;
  let parsed;
  try { parsed = JSON.parse(data.join('\n')); } catch { parsed = data.join('\n'); }
  dispatch(type, parsed);
}

async function run(path, signal) {
  let delay = 1000;
  let connectedBefore = false;
  while (!signal.aborted) {
    connected.delete(path);
    setState(connectedBefore ? 'reconnecting' : 'connecting');
    try {
      const resp = await api(path, {signal, raw: true, accept: 'text/event-stream'});
      connected.add(path);
      // Connected once every stream is.
      if (connected.size === SOURCES.length) setState('connected');
      if (connectedBefore) dispatch('_reconnected', null);
      connectedBefore = true;
      delay = 1000;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const {value, done} = await reader.read();
        if (done) { connected.delete(path); break; }
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          parseBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (err) {
      if (aborted(err) || signal.aborted) return;
      // A 401 has already logged out (and stopped this loop); anything else is retried.
      connected.delete(path);
      setState('reconnecting', err.message);
    }
    if (signal.aborted) return;
    // Jitter, so that every browser does not come back at the same instant after a failover.
    await sleep(delay * (0.75 + Math.random() / 2), signal);
    delay = Math.min(delay * 2, 30000);
  }
}

/**
 * Keeps a page fresh: calls `refresh` (debounced) when an event of `types` (any, when absent)
 * passes `match`, and after a reconnect (events may have been missed); `every` ms while the
 * tab is visible only for what no event tells. Stops when `signal` aborts. Returns a function
 * that asks for a refresh now (after an action).
 */
export function live(signal, {types, match, every, debounce = 400}, refresh) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    try { await refresh(); } catch (e) { if (!aborted(e)) console.error(e); }
    running = false;
    if (again && !signal.aborted) { again = false; schedule(); }
  };
  const schedule = (ms = debounce) => {
    if (!timer && !signal.aborted) timer = setTimeout(run, ms);
  };
  const off = onEvent((type, data) => {
    if (type === '_reconnected' || ((!types || types.includes(type)) && (!match || match(type, data)))) schedule();
  });
  const poll = every ? setInterval(() => { if (!document.hidden) schedule(0); }, every) : null;
  signal.addEventListener('abort', () => { off(); clearTimeout(timer); clearInterval(poll); }, {once: true});
  return () => schedule(0);
}
