// A task's output, followed: GET /v1/tasks/{id}/logs?follow=true streams the raw bytes of its
// stdout (or stderr with stderr=true) as the agent reads them, as text/plain, until the task
// ends. The last lines come first (tail), then whatever the task writes.

import {stream, aborted} from './api.js';
import {h, newId, stripAnsi} from './dom.js';

const KEEP = 256 * 1024; // characters kept on screen; older output is dropped
const TAIL = 500;

/** Appends text to a scrolling <pre>, keeping it at the bottom if the reader was there. */
export function appendTo(pre, text, keep = KEEP) {
  const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
  if (!pre.firstChild) pre.append(document.createTextNode(''));
  const node = pre.firstChild;
  node.appendData(text);
  if (node.length > keep) node.deleteData(0, node.length - keep);
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

/** Terminal text made readable: escape sequences out, CRLF as LF. */
export function clean(text) {
  return stripAnsi(text.replace(/\r\n/g, '\n').replace(/\r/g, '\n'));
}

/** The Logs section's content for task `id`: a stream picker, the followed output, its state. */
export function logView(id, pageSignal) {
  const selectId = newId('stream');
  const select = h('select', {id: selectId},
    h('option', {value: 'stdout'}, 'stdout'),
    h('option', {value: 'stderr'}, 'stderr'));
  const pre = h('pre', {class: 'log', role: 'log', 'aria-label': 'Logs', tabindex: 0});
  const state = h('span', {class: 'muted'});
  const again = h('button', {type: 'button', hidden: true}, 'Follow again');
  let current = null;

  const follow = () => {
    if (current) current.abort();
    current = new AbortController();
    const signal = current.signal;
    pre.replaceChildren();
    again.hidden = true;
    state.textContent = 'Following…';
    const stderr = select.value === 'stderr';
    const path = `/v1/tasks/${encodeURIComponent(id)}/logs?follow=true&stderr=${stderr}&tail=${TAIL}`;
    stream(path, {signal, accept: 'text/plain', onChunk: (text) => appendTo(pre, clean(text))})
      .then(() => {
        state.textContent = 'The output ended (the task is no longer running).';
        again.hidden = false;
      })
      .catch((e) => {
        if (aborted(e) || signal.aborted) return;
        state.textContent = `Cannot follow the output: ${e.message}`;
        again.hidden = false;
      });
  };
  pageSignal.addEventListener('abort', () => current && current.abort(), {once: true});
  select.addEventListener('change', follow);
  again.addEventListener('click', follow);
  follow();
  return h('div', {class: 'logs'},
    h('div', {class: 'toolbar'}, h('label', {for: selectId}, 'Stream'), select, state, again),
    pre);
}
