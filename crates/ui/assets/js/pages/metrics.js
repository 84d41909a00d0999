// Metrics over the last hour (GET /v1/metrics/history: a sample every interval_seconds, kept
// in each server's memory), drawn as line charts; related series share a chart.

import {api} from '../api.js';
import {h, section, replace, alertBox, fmtNum, fmtBytes} from '../dom.js';
import {lineChart} from '../plot.js';

const GROUPS = [
  {title: 'Tasks', names: ['tasks_running', 'tasks_staging']},
  {title: 'Apps and deployments', names: ['apps', 'deployments_in_progress']},
  {title: 'CPUs', names: ['cpus_used', 'cpus_total']},
  {title: 'Memory', names: ['mem_used_bytes', 'mem_total_bytes']},
  {title: 'API requests per second', names: ['api_requests_per_second']},
  {title: 'Active job runs', names: ['job_runs_active']},
];

export function render(ctx) {
  ctx.heading('Metrics');
  const intro = h('p', {class: 'muted'}, 'The last hour, as this server sampled it.');
  const slot = h('div', {class: 'charts'});
  ctx.main.append(intro, slot);
  let timer = null;
  ctx.signal.addEventListener('abort', () => clearTimeout(timer), {once: true});

  const refresh = async () => {
    let history;
    try {
      history = await api('/v1/metrics/history', {signal: ctx.signal});
    } catch (e) {
      if (ctx.signal.aborted) return;
      replace(slot, alertBox(`Cannot read the metrics: ${e.message}`));
      timer = setTimeout(refresh, 30000);
      return;
    }
    if (ctx.signal.aborted) return;
    const byName = new Map((history.series || []).map((x) => [x.name, x]));
    const grouped = new Set(GROUPS.flatMap((g) => g.names));
    const groups = [
      ...GROUPS,
      ...[...byName.keys()].filter((n) => !grouped.has(n)).map((n) => ({title: n, names: [n]})),
    ];
    const charts = groups
      .map((g) => ({...g, series: g.names.map((n) => byName.get(n)).filter(Boolean)}))
      .filter((g) => g.series.length)
      .map((g) => {
        const bytes = g.series.some((x) => x.unit === 'bytes' || x.name.endsWith('_bytes'));
        const help = g.series.map((x) => x.help).filter(Boolean).join(' ');
        return section(g.title,
          help ? h('p', {class: 'muted'}, help) : null,
          lineChart({
            title: g.title,
            series: g.series.map((x) => ({name: x.name, points: x.points || []})),
            format: bytes ? fmtBytes : (v) => fmtNum(v),
          }));
      });
    replace(slot, charts.length ? charts : h('p', {}, 'No series yet.'));
    const every = Math.max(5, history.interval_seconds || 10) * 1000;
    timer = setTimeout(refresh, document.hidden ? every * 3 : every);
  };
  return refresh();
}
