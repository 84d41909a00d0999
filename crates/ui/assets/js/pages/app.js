// One service (Marathon app): its instances, deployments step by step, versions, why instances
// wait, its configuration in an editor, and its DNS names and gateway routes. Scale, restart,
// roll back and delete are each one /v2 call with the user's token.

import {api, all} from '../api.js';
import {
  h, section, table, replace, announce, alertBox, confirmDialog, fmtTime, fmtState, badge,
  appPath, taskHref, newId,
} from '../dom.js';
import {live} from '../events.js';
import {jsonEditor} from '../editor.js';
import {navigate} from '../router.js';
import {appHealth, appStatus, editableApp, dnsLabel, recordOfApp} from '../model.js';

const SHOWN_VERSIONS = 10;

export function render(ctx) {
  const id = `/${ctx.params[0].replace(/^\/+|\/+$/g, '')}`;
  const base = appPath(id);
  ctx.heading(id);

  const summary = h('div', {class: 'summary'});
  const actionErrors = h('div', {class: 'error-slot'});
  const slots = {instances: h('div'), deployments: h('div'), versions: h('div'), why: h('div'), dns: h('div')};
  const whySection = section('Why is it not running', slots.why);
  whySection.hidden = true;

  // Scale, restart, delete.
  const scaleId = newId('scale');
  const scaleInput = h('input', {id: scaleId, type: 'number', min: 0, step: 1, inputmode: 'numeric'});
  let scaleTouched = false;
  scaleInput.addEventListener('input', () => { scaleTouched = true; });
  // An action is one call; `call(force)` makes it. A running deployment of the app refuses it
  // (409) unless forced, which the user may then choose.
  const force = (on, sep = '?') => (on ? `${sep}force=true` : '');
  const act = async (what, call, forced = false) => {
    actionErrors.replaceChildren();
    try {
      const answer = await call(forced);
      announce(answer && answer.deploymentId ? `${what} (deployment ${answer.deploymentId})` : what);
      refreshNow();
      return true;
    } catch (e) {
      actionErrors.append(alertBox(`${what} failed: ${e.message}`));
      if (e.status === 409 && !forced) {
        actionErrors.append(h('button', {type: 'button', onclick: () => act(what, call, true)}, 'Override the running deployment'));
      }
      return false;
    }
  };
  const scaleForm = h('form', {class: 'inline-form'},
    h('label', {for: scaleId}, 'Instances'), scaleInput,
    h('button', {type: 'submit'}, 'Scale'));
  scaleForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const n = Number(scaleInput.value);
    if (!Number.isInteger(n) || n < 0) {
      actionErrors.replaceChildren(alertBox('Instances must be a whole number, 0 or more.'));
      return;
    }
    if (await act(`Scaling ${id} to ${n}`, (f) => api(base + force(f), {method: 'PUT', body: {instances: n}}))) scaleTouched = false;
  });
  const restart = h('button', {type: 'button', onclick: () => act(`Restarting ${id}`, (f) => api(`${base}/restart${force(f)}`, {method: 'POST', body: {}}))}, 'Restart');
  const remove = h('button', {type: 'button', class: 'danger', onclick: async () => {
    const ok = await confirmDialog({title: `Delete ${id}?`, text: 'Its instances are killed and the app is removed with its versions, and a deployment of it in progress is stopped.'});
    if (!ok) return;
    actionErrors.replaceChildren();
    try {
      // Forced: the user confirmed, and an app stuck in a deployment is what one deletes most.
      await api(`${base}?force=true`, {method: 'DELETE'});
      announce(`Deleting ${id}`);
      navigate('/ui/services');
    } catch (e) {
      actionErrors.append(alertBox(`Deleting ${id} failed: ${e.message}`));
    }
  }}, 'Delete');

  // The configuration: the whole definition, put back with partialUpdate=false so that a field
  // removed in the editor is removed from the app.
  let shownVersion = null;
  const editor = jsonEditor({
    label: 'App definition (JSON)',
    button: 'Save',
    onSubmit: async (def) => {
      const answer = await api(`${base}?partialUpdate=false${force(forceSave.checked, '&')}`, {method: 'PUT', body: def});
      announce(`Saved ${id}${answer && answer.deploymentId ? ` (deployment ${answer.deploymentId})` : ''}`);
      shownVersion = null;
      refreshNow();
    },
  });

  const forceId = newId('force');
  const forceSave = h('input', {id: forceId, type: 'checkbox'});
  editor.el.querySelector('.actions').append(forceSave, h('label', {for: forceId}, 'Override a running deployment'));

  ctx.main.append(
    summary,
    section('Actions', actionErrors, h('div', {class: 'toolbar'}, scaleForm, restart, remove)),
    section('Instances', slots.instances),
    section('Deployments', slots.deployments),
    whySection,
    section('Versions', slots.versions),
    section('Configuration', editor.el),
    section('DNS and routes', slots.dns));

  let showAllVersions = false;
  let gone = false;

  const rollBack = async (version) => {
    await act(`Rolling ${id} back to ${version}`, (f) => api(base + force(f), {method: 'PUT', body: {version}}));
  };
  const cancelDeployment = async (d) => {
    const ok = await confirmDialog({title: `Cancel deployment ${d.id}?`, text: 'Marathon rolls its apps back to where they were before it started.'});
    if (ok) await act(`Cancelling deployment ${d.id}`, (f) => api(`/v2/deployments/${encodeURIComponent(d.id)}${force(f)}`, {method: 'DELETE'}));
  };

  const refresh = async () => {
    if (gone) return;
    const [appR, deployments, queue, versions, dns, gateway] = await all([
      api(base, {signal: ctx.signal}),
      api('/v2/deployments', {signal: ctx.signal}),
      api('/v2/queue', {signal: ctx.signal}),
      api(`${base}/versions`, {signal: ctx.signal}),
      api('/v1/dns/records', {signal: ctx.signal}),
      api('/v1/gateway/table', {signal: ctx.signal}),
    ]);
    if (ctx.signal.aborted) return;
    if (appR.error) {
      replace(summary, alertBox(appR.error.status === 404 ? `There is no app ${id}.` : appR.error.message));
      if (appR.error.status === 404) gone = true;
      return;
    }
    const app = appR.value.app;
    const entry = ((queue.value && queue.value.queue) || []).find((q) => q.app && q.app.id === id);
    const waiting = entry && entry.count > 0 ? entry : null;

    // Summary.
    const health = appHealth(app);
    const failure = app.lastTaskFailure;
    replace(summary,
      h('p', {class: 'health-line'},
        h('strong', {class: `health ${health.cls}`}, health.text),
        health.note ? h('span', {class: 'muted'}, ` — ${health.note}`) : null),
      h('dl', {class: 'facts'},
        h('dt', {}, 'Status'), h('dd', {}, appStatus(app, waiting)),
        h('dt', {}, 'Running'), h('dd', {}, `${app.tasksRunning || 0} of ${app.instances}`),
        h('dt', {}, 'Staged'), h('dd', {}, app.tasksStaged || 0),
        h('dt', {}, 'Version'), h('dd', {}, fmtTime(app.version)),
        h('dt', {}, 'Resources'), h('dd', {}, `${app.cpus} cpus, ${app.mem} MB`),
        failure ? [h('dt', {}, 'Last failure'), h('dd', {}, `${fmtState(failure.state)} on ${failure.host || '?'} at ${fmtTime(failure.timestamp)}: ${failure.message || 'no message'}`)] : null));
    if (!scaleTouched && document.activeElement !== scaleInput) scaleInput.value = app.instances;

    // Instances.
    const tasks = [...(app.tasks || [])].sort((a, b) => a.id.localeCompare(b.id));
    replace(slots.instances, table({
      caption: 'Instances',
      label: 'Table of this app\'s tasks',
      columns: ['Task', 'State', 'Health', 'Agent', 'Ports', 'Version', 'Started'],
      rows: tasks.map((t) => {
        const checks = t.healthCheckResults || [];
        const healthy = checks.length ? (checks.every((c) => c.alive) ? 'healthy' : 'unhealthy') : '—';
        return [
          h('a', {href: taskHref(t.id), 'data-key': `task-${t.id}`}, t.id),
          badge(fmtState(t.state)),
          h('span', {class: healthy === 'healthy' ? 'ok' : healthy === 'unhealthy' ? 'bad' : ''}, healthy),
          t.host || '—',
          (t.ports || []).join(', ') || '—',
          fmtTime(t.version),
          fmtTime(t.startedAt),
        ];
      }),
      empty: 'No instances',
    }));

    // Deployments, step by step.
    if (deployments.error) {
      replace(slots.deployments, alertBox(deployments.error.message));
    } else {
      const mine = deployments.value.filter((d) => (d.affectedApps || []).includes(id));
      replace(slots.deployments, mine.length ? mine.map((d) => h('div', {class: 'deployment'},
        h('p', {}, `Deployment ${d.id}, step ${d.currentStep} of ${d.totalSteps}`,
          d.deadline ? h('span', {class: 'muted'}, ` (rolls back if not done by ${fmtTime(d.deadline)})`) : null),
        h('ol', {class: 'steps'}, (d.steps || []).map((step, i) => {
          const n = i + 1;
          const where = n < d.currentStep ? 'done' : n === d.currentStep ? 'in progress' : 'pending';
          const what = (step.actions || []).map((a) => `${a.action} ${a.app}`).join(', ');
          return h('li', {'aria-current': n === d.currentStep ? 'step' : false},
            badge(where, {done: 'ok', 'in progress': 'warn', pending: 'muted'}[where]), ` ${what}`);
        })),
        h('button', {type: 'button', 'data-key': `cancel-${d.id}`, onclick: () => cancelDeployment(d)}, 'Cancel deployment')))
        : h('p', {class: 'muted'}, 'No deployment in progress.'));
    }

    // Why instances wait: the same explanation as `tepui app why`.
    whySection.hidden = !waiting;
    if (waiting) {
      const declined = ((waiting.processedOffersSummary || {}).rejectSummaryLastOffers || [])
        .filter((r) => r.declined > 0);
      replace(slots.why,
        h('p', {}, `${waiting.count} instance(s) waiting for an offer.`),
        waiting.delay && waiting.delay.overdue === false
          ? h('p', {}, `Launches are held back ${waiting.delay.timeLeftSeconds}s after failures (backoff).`) : null,
        declined.length
          ? table({caption: 'Declined offers', columns: ['Reason', 'Declined', 'Of offers'],
            rows: declined.map((r) => [r.reason, r.declined, r.processed])})
          : h('p', {}, 'No offer has been turned down yet.'),
        waiting.why ? h('p', {class: 'why'}, waiting.why) : null);
    }

    // Versions, newest first; each but the current one can be rolled back to.
    if (versions.error) {
      replace(slots.versions, alertBox(versions.error.message));
    } else {
      const list = versions.value.versions || [];
      const shown = showAllVersions ? list : list.slice(0, SHOWN_VERSIONS);
      replace(slots.versions,
        h('ul', {class: 'versions'}, shown.map((v) => h('li', {},
          h('span', {}, fmtTime(v), ' ', h('code', {class: 'muted'}, v)),
          v === app.version
            ? h('span', {class: 'muted'}, ' (current)')
            : h('button', {type: 'button', 'data-key': `rollback-${v}`, onclick: () => rollBack(v)}, `Roll back to ${v}`)))),
        list.length > shown.length
          ? h('button', {type: 'button', onclick: () => { showAllVersions = true; refreshNow(); }}, `Show all ${list.length} versions`)
          : null);
    }

    // The editor follows the app unless the user is changing it.
    if (!editor.dirty() && shownVersion !== app.version) {
      editor.setValue(editableApp(app));
      shownVersion = app.version;
    }

    // DNS names and gateway routes.
    const label = dnsLabel(id);
    const parts = [];
    if (dns.error) parts.push(alertBox(`DNS: ${dns.error.message}`));
    else {
      const records = (dns.value.records || []).filter((r) => recordOfApp(r.name, label));
      parts.push(table({caption: 'DNS names', columns: ['Name', 'Type', 'Data'],
        rows: records.map((r) => [r.name, r.type, r.data]), empty: 'No DNS names (no running instance can be found yet)'}));
    }
    if (gateway.error) parts.push(alertBox(`Gateway: ${gateway.error.message}`));
    else {
      const routes = (gateway.value.routes || []).filter((r) => r.app === id);
      parts.push(table({caption: 'Gateway routes', columns: ['Hosts', 'Path', 'Port index', 'Backends'],
        rows: routes.map((r) => [(r.hosts || []).join(', ') || '(any)', r.path || '/', r.port_index,
          (r.backends || []).map((b) => b.addr).join(', ') || 'none']),
        empty: 'No gateway routes (see the HAPROXY_ labels)'}));
      const vips = (gateway.value.vips || []).filter((v) => (v.apps || []).includes(id));
      if (vips.length) {
        parts.push(table({caption: 'Virtual IPs', columns: ['Name', 'Address', 'Backends'],
          rows: vips.map((v) => [v.name || '—', `${v.ip}:${v.port}/${v.protocol}`, (v.backends || []).map((b) => b.addr).join(', ') || 'none'])}));
      }
    }
    replace(slots.dns, parts);
  };

  // Any event that names this app (its tasks, deployments, health) refreshes the page.
  const refreshNow = live(ctx.signal, {
    // Its own changes, deployments, and what changes why it waits: tasks and agents.
    types: ['app_changed', 'deployment_changed', 'task_changed', 'node_changed'],
    match: (type, data) => type !== 'app_changed' || data.id === id,
  }, refresh);
  return refresh();
}
