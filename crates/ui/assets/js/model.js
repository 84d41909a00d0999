// What the pages say about apps, tasks and jobs, from the APIs' JSON: one place for each rule.

const ENDED = new Set([
  'TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_LOST', 'TASK_ERROR', 'TASK_DROPPED',
  'TASK_GONE', 'TASK_GONE_BY_OPERATOR', 'TASK_UNKNOWN',
]);

export function taskEnded(state) {
  return ENDED.has(state);
}

/** A /v1 task's ports: "31000", "http 31000→80/tcp". */
export function taskPorts(ports) {
  if (!ports || !ports.length) return '—';
  return ports.map((p) => {
    const name = p.name ? `${p.name} ` : '';
    const inside = p.container_port ? `→${p.container_port}` : '';
    const proto = p.protocol && p.protocol !== 'tcp' ? `/${p.protocol}` : '';
    return `${name}${p.host_port}${inside}${proto}`;
  }).join(', ');
}

/** A task's health: healthy, unhealthy, or none (no health checks). */
export function healthWord(healthy) {
  if (healthy === true) return 'healthy';
  if (healthy === false) return 'unhealthy';
  return '—';
}

/**
 * An app's health in words: {text, note, cls}. "Healthy" when every wanted instance passes
 * its health checks (or, without checks, runs); "N of M healthy" otherwise.
 */
export function appHealth(app) {
  const wanted = app.instances || 0;
  const running = app.tasksRunning || 0;
  const healthy = app.tasksHealthy || 0;
  const checks = (app.healthChecks || []).length > 0;
  if (wanted === 0) return {text: '—', note: 'no instances wanted', cls: 'muted'};
  if (checks) {
    if (healthy >= wanted && !app.tasksUnhealthy) return {text: 'Healthy', note: `all ${wanted} pass their health checks`, cls: 'ok'};
    return {text: `${healthy} of ${wanted} healthy`, note: app.tasksUnhealthy ? `${app.tasksUnhealthy} failing their checks` : '', cls: healthy ? 'warn' : 'bad'};
  }
  if (running >= wanted) return {text: 'Healthy', note: `no health checks; all ${wanted} running`, cls: 'ok'};
  return {text: `${running} of ${wanted} running`, note: 'no health checks', cls: running ? 'warn' : 'bad'};
}

/** An app's state in one word, from its counts, its deployments and the launch queue. */
export function appStatus(app, waiting) {
  if ((app.deployments || []).length) return 'Deploying';
  if (!app.instances) return 'Suspended';
  if (waiting) return 'Waiting';
  if ((app.tasksRunning || 0) >= app.instances) return 'Running';
  return 'Starting';
}

/** Marathon's DNS label of an app (Mesos-DNS): /prod/web -> web-prod. */
export function dnsLabel(appId) {
  return String(appId).split('/').filter(Boolean).reverse().join('-')
    .toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '');
}

/** Whether a DNS record names an app's tasks (web-prod.marathon.mesos., _web-prod._tcp..., ...). */
export function recordOfApp(name, label) {
  const labels = name.toLowerCase().split('.');
  return labels.some((l) => l === label || l === `_${label}`) || labels[0].startsWith(`${label}-`);
}

/** What a job's last run did, from its history summary. */
export function lastResult(history, activeRuns) {
  if (activeRuns && activeRuns.length) return {text: 'Running', cls: 'warn'};
  if (!history) return {text: '—', cls: 'muted'};
  const ok = history.lastSuccessAt ? Date.parse(history.lastSuccessAt.replace(/([+-]\d\d)(\d\d)$/, '$1:$2')) : 0;
  const bad = history.lastFailureAt ? Date.parse(history.lastFailureAt.replace(/([+-]\d\d)(\d\d)$/, '$1:$2')) : 0;
  if (!ok && !bad) return {text: 'Never ran', cls: 'muted'};
  return ok >= bad ? {text: 'Success', at: history.lastSuccessAt, cls: 'ok'} : {text: 'Failed', at: history.lastFailureAt, cls: 'bad'};
}

/** An app's definition as the editor shows it: without what the server adds (counts, tasks). */
export function editableApp(app) {
  const drop = ['tasks', 'tasksStaged', 'tasksRunning', 'tasksHealthy', 'tasksUnhealthy', 'deployments',
    'lastTaskFailure', 'readinessCheckResults', 'taskStats', 'version', 'versionInfo'];
  const out = {};
  for (const [k, v] of Object.entries(app)) if (!drop.includes(k)) out[k] = v;
  return out;
}
