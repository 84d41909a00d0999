// Batch jobs (Metronome): the list with schedules, next and last runs, the dependency graph of
// them all, and the editor for a new job.

import {api} from '../api.js';
import {h, section, table, replace, alertBox, announce, jobHref, fmtTime, fmtRelative, badge} from '../dom.js';
import {live} from '../events.js';
import {jsonEditor} from '../editor.js';
import {navigate} from '../router.js';
import {lastResult} from '../model.js';
import {dependencyGraph} from '../graph.js';

/** The soonest nextRunAt of a job's schedules. */
function nextRun(job) {
  const times = (job.schedules || []).map((s) => s.nextRunAt).filter(Boolean).sort();
  return times[0] || null;
}

export function render(ctx) {
  ctx.heading('Jobs');
  const slot = h('div');
  const graphSlot = h('div');
  const graphSection = section('Dependencies', graphSlot);
  graphSection.hidden = true;
  ctx.main.append(
    h('p', {class: 'actions'}, h('a', {href: '/ui/jobs/_new', class: 'button'}, 'New job')),
    slot,
    graphSection);

  const refresh = async () => {
    let jobs;
    try {
      jobs = await api('/v1/jobs?embed=historySummary&embed=activeRuns&embed=schedules', {signal: ctx.signal});
    } catch (e) {
      if (!ctx.signal.aborted) replace(slot, alertBox(e.message));
      return;
    }
    if (ctx.signal.aborted) return;
    jobs.sort((a, b) => a.id.localeCompare(b.id));
    replace(slot, table({
      caption: 'Jobs',
      columns: ['Job', 'Schedule', 'Next run', 'Last result', 'Runs'],
      rows: jobs.map((j) => {
        const schedules = (j.schedules || []).map((s) => `${s.cron} (${s.timezone || 'UTC'})${s.enabled === false ? ', disabled' : ''}`);
        const next = nextRun(j);
        const last = lastResult(j.historySummary, j.activeRuns);
        const summary = j.historySummary || {};
        return [
          h('a', {href: jobHref(j.id), 'data-key': `job-${j.id}`}, j.id),
          schedules.length ? schedules.join('; ') : (j.dependencies || []).length ? 'after its parents' : 'by hand',
          next ? h('span', {title: fmtTime(next)}, `${fmtTime(next)} (${fmtRelative(next)})`) : (j.disabled ? 'disabled' : '—'),
          h('span', {}, badge(last.text, last.cls), last.at ? ` ${fmtTime(last.at)}` : ''),
          `${summary.successCount || 0} ok, ${summary.failureCount || 0} failed`,
        ];
      }),
      empty: 'No jobs yet: create one with "New job".',
    }));
    const parents = new Map(jobs.map((j) => [j.id, (j.dependencies || []).map((d) => (typeof d === 'string' ? d : d.id))]));
    const linked = [...parents.values()].some((p) => p.length);
    graphSection.hidden = !linked;
    if (linked) replace(graphSlot, h('div', {class: 'graph-wrap'}, dependencyGraph(parents, null)));
  };
  live(ctx.signal, {types: ['job_changed', 'job_run_changed']}, refresh);
  return refresh();
}

const TEMPLATE = {
  id: 'hello',
  description: 'says hello',
  run: {cmd: 'echo hello', cpus: 0.1, mem: 32, disk: 0},
  schedules: [],
};

/** /ui/jobs/_new: a Metronome job definition, created with POST /v1/jobs. */
export const create = {
  render(ctx) {
    ctx.heading('New job');
    const editor = jsonEditor({
      label: 'Job definition (JSON)',
      button: 'Create',
      value: TEMPLATE,
      onSubmit: async (def) => {
        const job = await api('/v1/jobs', {method: 'POST', body: def, signal: ctx.signal});
        announce(`Created job ${job.id}`);
        navigate(jobHref(job.id));
      },
    });
    ctx.main.append(
      h('p', {}, 'A Metronome job definition; add ',
        h('code', {}, '"schedules": [{"id": "daily", "cron": "0 3 * * *"}]'),
        ' to run it on a schedule, or ', h('code', {}, '"dependencies": [{"id": "parent"}]'),
        ' to run it after other jobs.'),
      editor.el);
  },
};
