// One job: run it now, its runs (active and finished), schedules, its place in the dependency
// graph, and its definition. It refreshes on the cluster's job events (this job's, and its
// runs').

import {api, all} from '../api.js';
import {live} from '../events.js';
import {
  h, section, table, replace, alertBox, announce, confirmDialog, fmtTime, fmtRelative, badge,
  taskHref, jobHref,
} from '../dom.js';
import {jsonEditor} from '../editor.js';
import {navigate} from '../router.js';
import {dependencyGraph, component} from '../graph.js';

const parentIds = (job) => (job.dependencies || []).map((d) => (typeof d === 'string' ? d : d.id));

export function render(ctx) {
  const id = ctx.params[0];
  const base = `/v1/jobs/${encodeURIComponent(id)}`;
  ctx.heading(id);

  const errors = h('div', {class: 'error-slot'});
  const summary = h('div');
  const slots = {history: h('div'), schedules: h('div'), graph: h('div')};
  const runNow = h('button', {type: 'button', class: 'primary', onclick: async () => {
    errors.replaceChildren();
    runNow.disabled = true;
    try {
      const run = await api(`${base}/runs`, {method: 'POST', body: {}});
      announce(`Run ${run.id} of ${id} started`);
      refreshNow();
    } catch (e) {
      errors.append(alertBox(`Cannot start a run: ${e.message}`));
    } finally {
      runNow.disabled = false;
    }
  }}, 'Run now');
  const remove = h('button', {type: 'button', class: 'danger', onclick: async () => {
    const ok = await confirmDialog({title: `Delete job ${id}?`, text: 'Its schedules and history go with it.'});
    if (!ok) return;
    errors.replaceChildren();
    try {
      await api(base, {method: 'DELETE'});
      announce(`Deleted job ${id}`);
      navigate('/ui/jobs');
    } catch (e) {
      errors.append(alertBox(`Cannot delete ${id}: ${e.message}`));
    }
  }}, 'Delete');

  let shown = null;
  const editor = jsonEditor({
    label: 'Job definition (JSON)',
    button: 'Save',
    onSubmit: async (def) => {
      await api(base, {method: 'PUT', body: def});
      announce(`Saved job ${id}`);
      shown = null;
      refreshNow();
    },
  });

  ctx.main.append(
    summary,
    section('Actions', errors, h('div', {class: 'toolbar'}, runNow, remove)),
    section('History', slots.history),
    section('Schedules', slots.schedules),
    section('Dependencies', slots.graph),
    section('Definition', editor.el));

  const refreshNow = live(ctx.signal, {
    types: ['job_changed', 'job_run_changed'],
    match: (type, data) => (type === 'job_changed' ? data.id : data.jobId) === id,
  }, refresh);

  async function refresh() {
    const [jobR, jobs] = await all([
      api(`${base}?embed=history&embed=activeRuns&embed=schedules`, {signal: ctx.signal}),
      api('/v1/jobs', {signal: ctx.signal}),
    ]);
    if (ctx.signal.aborted) return;
    if (jobR.error) {
      replace(summary, alertBox(jobR.error.status === 404 ? `There is no job ${id}.` : jobR.error.message));
      return;
    }
    const job = jobR.value;
    const history = job.history || {};
    const runs = job.activeRuns || [];

    replace(summary, h('dl', {class: 'facts'},
      h('dt', {}, 'Description'), h('dd', {}, job.description || '—'),
      h('dt', {}, 'Command'), h('dd', {}, h('code', {}, (job.run && job.run.cmd) || '(the image\'s)')),
      h('dt', {}, 'Image'), h('dd', {}, (job.run && job.run.docker && job.run.docker.image) || '—'),
      h('dt', {}, 'Runs'), h('dd', {}, `${history.successCount || 0} succeeded, ${history.failureCount || 0} failed`),
      job.disabled ? [h('dt', {}, 'State'), h('dd', {}, 'disabled')] : null));

    const taskLinks = (tasks) => (tasks || []).map((t) => {
      const tid = typeof t === 'string' ? t : t.id;
      return h('a', {href: taskHref(tid)}, tid);
    });
    const rows = [
      ...runs.map((r) => ({
        id: r.id, status: r.status, started: r.createdAt, finished: null, tasks: r.tasks, note: '',
      })),
      ...(history.successfulFinishedRuns || []).map((r) => ({...r, status: 'SUCCESS', started: r.createdAt, finished: r.finishedAt})),
      ...(history.failedFinishedRuns || []).map((r) => ({...r, status: 'FAILED', started: r.createdAt, finished: r.finishedAt})),
    ];
    rows.sort((a, b) => String(b.started).localeCompare(String(a.started)));
    replace(slots.history, table({
      caption: 'History',
      columns: ['Run', 'Status', 'Started', 'Finished', 'Tasks', 'Result'],
      rows: rows.map((r) => [
        r.id,
        badge(r.status),
        fmtTime(r.started),
        r.finished ? fmtTime(r.finished) : '—',
        h('span', {class: 'links'}, taskLinks(r.tasks)),
        [r.exitCode !== undefined ? `exit code ${r.exitCode}` : '', r.message || ''].filter(Boolean).join(': ') || '—',
      ]),
      empty: 'No runs yet',
    }));

    replace(slots.schedules, table({
      caption: 'Schedules',
      columns: ['Schedule', 'Cron', 'Time zone', 'Enabled', 'Next run', 'Concurrency'],
      rows: (job.schedules || []).map((s) => [s.id, h('code', {}, s.cron), s.timezone || 'UTC',
        s.enabled === false ? 'no' : 'yes',
        s.nextRunAt ? `${fmtTime(s.nextRunAt)} (${fmtRelative(s.nextRunAt)})` : '—', s.concurrencyPolicy || 'ALLOW']),
      empty: 'No schedules: it runs by hand or after its parents',
    }));

    // The graph of the jobs connected to this one, and the same in words with links.
    const allParents = new Map((jobs.value || [job]).map((j) => [j.id, parentIds(j)]));
    allParents.set(id, parentIds(job));
    const mine = component(allParents, id);
    const children = [...allParents].filter(([, ps]) => ps.includes(id)).map(([c]) => c);
    const links = (ids) => ids.length ? ids.map((j, i) => [i ? ', ' : '', h('a', {href: jobHref(j)}, j)]) : 'none';
    replace(slots.graph,
      h('p', {}, 'Runs after: ', links(parentIds(job)), '. Starts: ', links(children), '.'),
      h('div', {class: 'graph-wrap'}, dependencyGraph(mine, id)));

    if (!editor.dirty() && shown === null) {
      const def = {...job};
      // Schedules are kept apart (PUT /v1/jobs/{id} leaves them as they are).
      for (const k of ['history', 'activeRuns', 'historySummary', 'schedules']) delete def[k];
      editor.setValue(def);
      shown = true;
    }
  }
  return refresh();
}
