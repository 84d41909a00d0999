// Every task of the cluster (/v1/tasks): state, agent, ports, health.

import {api} from '../api.js';
import {h, table, replace, alertBox, fmtState, fmtTime, badge, taskHref, newId} from '../dom.js';
import {live} from '../events.js';
import {taskEnded, taskPorts, healthWord} from '../model.js';

export function render(ctx) {
  ctx.heading('Tasks');
  const slot = h('div');
  const showId = newId('ended');
  const showEnded = h('input', {id: showId, type: 'checkbox'});
  ctx.main.append(
    h('p', {class: 'toolbar'}, showEnded, h('label', {for: showId}, 'Show ended tasks')),
    slot);
  let tasks = [];

  const draw = () => {
    const list = tasks
      .filter((t) => showEnded.checked || !taskEnded(t.state))
      .sort((a, b) => b.created_at_ms - a.created_at_ms);
    replace(slot, table({
      caption: 'Tasks',
      columns: ['Task', 'Name', 'State', 'Agent', 'Ports', 'Health', 'Framework', 'Started'],
      rows: list.map((t) => [
        h('a', {href: taskHref(t.id), 'data-key': `task-${t.id}`}, t.id),
        t.name || '—',
        badge(fmtState(t.state)),
        t.agent_name || String(t.agent_id),
        taskPorts(t.ports),
        healthWord(t.healthy),
        t.framework || '—',
        fmtTime(t.started_at_ms),
      ]),
      empty: showEnded.checked ? 'No tasks' : 'No live tasks',
    }));
  };
  showEnded.addEventListener('change', draw);

  const refresh = async () => {
    try {
      tasks = await api('/v1/tasks', {signal: ctx.signal});
    } catch (e) {
      if (!ctx.signal.aborted) replace(slot, alertBox(e.message));
      return;
    }
    if (!ctx.signal.aborted) draw();
  };
  live(ctx.signal, {types: ['task_changed']}, refresh);
  return refresh();
}
