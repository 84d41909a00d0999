// The event stream as it comes: the newest first, each with its type, time and what it is
// about, and its JSON on demand.

import {h, newId, fmtTime, badge} from '../dom.js';
import {onEvent, onState, connectionState} from '../events.js';

const KEEP = 200;

/** One line on what an event is about. */
function about(type, e) {
  const parts = [];
  if (e.appId) parts.push(e.appId);
  if (e.taskId) parts.push(e.taskId);
  if (e.instanceId && !e.taskId) parts.push(e.instanceId);
  if (e.taskStatus) parts.push(e.taskStatus);
  if (e.condition) parts.push(e.condition);
  if (e.alive !== undefined) parts.push(e.alive ? 'healthy' : 'unhealthy');
  if (e.plan && e.plan.id) parts.push(`deployment ${e.plan.id}`);
  if (e.id && type.startsWith('deployment')) parts.push(`deployment ${e.id}`);
  if (e.currentStep && e.currentStep.actions) parts.push(e.currentStep.actions.map((a) => `${a.action} ${a.app}`).join(', '));
  if (e.uri) parts.push(e.uri);
  if (type.endsWith('_changed')) {
    if (e.jobId) parts.push(`job ${e.jobId}`);
    if (e.id !== undefined || e.name) parts.push(e.name || String(e.id));
    if (e.role) parts.push(`role ${e.role}`);
    if (e.state || e.status) parts.push(e.state || e.status);
    if (type === 'leader_changed') parts.push(e.leader == null ? 'no leader' : `leader ${e.leader}`);
    if (e.removed) parts.push('removed');
  }
  if (e.message) parts.push(e.message);
  return parts.join(' · ');
}

export function render(ctx) {
  ctx.heading('Events');
  const filterId = newId('type');
  const filter = h('select', {id: filterId}, h('option', {value: ''}, 'All types'));
  const pause = h('button', {type: 'button'}, 'Pause');
  const state = h('span', {class: 'muted'});
  const list = h('ol', {class: 'events', reversed: true});
  const log = h('div', {role: 'log', 'aria-label': 'Event stream', tabindex: 0, class: 'event-log'}, list);
  ctx.main.append(
    h('p', {}, 'The cluster\'s event stream (/v1/events), as this page receives it.'),
    h('div', {class: 'toolbar'}, h('label', {for: filterId}, 'Event type'), filter, pause, state),
    log);

  const seen = new Set();
  const events = [];
  let paused = false;

  const item = (ev) => h('li', {'data-type': ev.type, hidden: Boolean(filter.value && filter.value !== ev.type)},
    h('details', {},
      h('summary', {}, badge(ev.type, ev.type.includes('failed') ? 'bad' : ev.type.includes('success') ? 'ok' : 'muted'),
        ' ', h('time', {}, fmtTime(ev.at)), ' ', about(ev.type, ev.data || {})),
      h('pre', {class: 'json'}, JSON.stringify(ev.data, null, 2))));

  const add = (type, data) => {
    if (type.startsWith('_')) return;
    const ev = {type, data, at: Date.now()};
    events.unshift(ev);
    events.length = Math.min(events.length, KEEP);
    if (!seen.has(type)) {
      seen.add(type);
      filter.append(h('option', {value: type}, type));
    }
    if (paused) return;
    list.prepend(item(ev));
    while (list.children.length > KEEP) list.lastChild.remove();
  };
  filter.addEventListener('change', () => {
    for (const li of list.children) li.hidden = Boolean(filter.value && filter.value !== li.dataset.type);
  });
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) list.replaceChildren(...events.map(item));
  });

  const words = {
    closed: 'Not connected', connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…',
  };
  const showState = (s, detail) => { state.textContent = `${words[s] || s}${detail ? `: ${detail}` : ''}`; };
  const offState = onState(showState);
  const offEvents = onEvent(add);
  showState(connectionState());
  ctx.signal.addEventListener('abort', () => { offState(); offEvents(); }, {once: true});
}
