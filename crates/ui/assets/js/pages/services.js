// The services (Marathon apps): the list with health and instance counts, and the editor for a
// new one.

import {api, all} from '../api.js';
import {h, table, replace, alertBox, announce, appHref, badge, fmtNum} from '../dom.js';
import {live} from '../events.js';
import {jsonEditor} from '../editor.js';
import {navigate} from '../router.js';
import {appHealth, appStatus} from '../model.js';

export function render(ctx) {
  ctx.heading('Services');
  const slot = h('div');
  ctx.main.append(
    h('p', {class: 'actions'}, h('a', {href: '/ui/services/_new', class: 'button'}, 'New service')),
    slot);

  const refresh = async () => {
    const [apps, queue] = await all([
      api('/v2/apps?embed=apps.counts&embed=apps.deployments', {signal: ctx.signal}),
      api('/v2/queue', {signal: ctx.signal}),
    ]);
    if (ctx.signal.aborted) return;
    if (apps.error) { replace(slot, alertBox(apps.error.message)); return; }
    const waiting = new Map(((queue.value && queue.value.queue) || []).map((q) => [q.app && q.app.id, q.count || 0]));
    const list = [...apps.value.apps].sort((a, b) => a.id.localeCompare(b.id));
    const rows = list.map((a) => {
      const health = appHealth(a);
      const status = appStatus(a, waiting.get(a.id));
      return [
        h('a', {href: appHref(a.id), 'data-key': `app-${a.id}`}, a.id),
        h('span', {class: health.cls, title: health.note}, health.text),
        `${a.tasksRunning || 0}/${a.instances}`,
        badge(status, {Running: 'ok', Suspended: 'muted', Deploying: 'warn', Starting: 'warn', Waiting: 'bad'}[status]),
        fmtNum(a.cpus),
        `${fmtNum(a.mem, 0)} MB`,
      ];
    });
    replace(slot, table({
      caption: 'Services',
      columns: ['App', 'Health', 'Instances', 'Status', 'CPUs', 'Memory'],
      rows,
      empty: 'No services yet: deploy one with "New service".',
    }));
  };
  live(ctx.signal, {}, refresh);
  return refresh();
}

const TEMPLATE = {
  id: '/hello',
  cmd: 'while true; do echo hello; sleep 10; done',
  cpus: 0.1,
  mem: 32,
  instances: 1,
};

/** /ui/services/_new: an app definition, deployed with POST /v2/apps. */
export const create = {
  render(ctx) {
    ctx.heading('New service');
    const editor = jsonEditor({
      label: 'App definition (JSON)',
      button: 'Deploy',
      value: TEMPLATE,
      onSubmit: async (def) => {
        const app = await api('/v2/apps', {method: 'POST', body: def, signal: ctx.signal});
        announce(`Deploying ${app.id}`);
        navigate(appHref(app.id));
      },
    });
    ctx.main.append(
      h('p', {}, 'A Marathon app definition. Errors in it are shown below the editor, each with the path of its field.'),
      editor.el);
  },
};
