// The overview: the servers and their Raft health, the agents with what their tasks use,
// frameworks, roles and quota, and the cluster's totals. Kept fresh by the event stream and a
// short poll (agents and Raft have no events).

import {api, all} from '../api.js';
import {h, section, table, replace, announce, alertBox, confirmDialog, fmtNum, badge} from '../dom.js';
import {live} from '../events.js';
import {taskEnded} from '../model.js';

/** What the live tasks on each agent hold: {agentId: {cpus, mem, disk, tasks}}. */
function usage(tasks) {
  const used = {};
  for (const t of tasks || []) {
    if (taskEnded(t.state)) continue;
    const u = used[t.agent_id] || (used[t.agent_id] = {cpus: 0, mem: 0, disk: 0, tasks: 0});
    u.cpus += t.cpus || 0;
    u.mem += t.mem_mb || 0;
    u.disk += t.disk_mb || 0;
    u.tasks += 1;
  }
  return used;
}

/** One resource as text and a meter: "cpus 0.5 of 2". */
function meter(name, used, total, unit = '') {
  const label = `${name} ${fmtNum(used)}${unit} of ${fmtNum(total)}${unit}`;
  const m = h('meter', {min: 0, max: total || 1, value: Math.min(used, total || 1), 'aria-label': label, low: (total || 1) * 0.7, high: (total || 1) * 0.9, optimum: 0});
  return h('div', {class: 'resource'}, h('span', {}, label), m);
}

function show(slot, result, build) {
  if (result.error) replace(slot, alertBox(result.error.message));
  else replace(slot, build(result.value));
}

export function render(ctx) {
  ctx.heading('Overview');
  const slots = {
    totals: h('div'), servers: h('div'), agents: h('div'), frameworks: h('div'), roles: h('div'),
  };
  const agentErrors = h('div', {class: 'error-slot'});
  ctx.main.append(
    section('Cluster', slots.totals),
    section('Servers', slots.servers),
    section('Agents', agentErrors, slots.agents),
    section('Frameworks', slots.frameworks),
    section('Roles and quota', slots.roles));

  const drain = async (node) => {
    const ok = await confirmDialog({
      title: `Drain ${node.name}?`,
      text: `${node.name} gets no new tasks, and its tasks are killed with their grace periods. Reactivate it to use it again.`,
    });
    if (!ok) return;
    agentErrors.replaceChildren();
    try {
      await api(`/v1/nodes/${encodeURIComponent(node.id)}/drain`, {method: 'POST', body: {}});
      announce(`Draining ${node.name}`);
    } catch (e) {
      agentErrors.append(alertBox(`Cannot drain ${node.name}: ${e.message}`));
      return;
    }
    refreshNow();
  };
  const reactivate = async (node) => {
    agentErrors.replaceChildren();
    try {
      await api(`/v1/nodes/${encodeURIComponent(node.id)}/reactivate`, {method: 'POST', body: {}});
      announce(`${node.name} is active again`);
    } catch (e) {
      agentErrors.append(alertBox(`Cannot reactivate ${node.name}: ${e.message}`));
    }
    refreshNow();
  };

  const refresh = async () => {
    const [status, members, nodes, tasks, frameworks, roles, apps] = await all([
      api('/v1/status', {signal: ctx.signal}),
      api('/v1/members', {signal: ctx.signal}),
      api('/v1/nodes', {signal: ctx.signal}),
      api('/v1/tasks', {signal: ctx.signal}),
      api('/v1/frameworks', {signal: ctx.signal}),
      api('/v1/roles', {signal: ctx.signal}),
      api('/v2/apps', {signal: ctx.signal}),
    ]);
    if (ctx.signal.aborted) return;
    const used = usage(tasks.value);
    const nodeList = nodes.value || [];
    const agents = nodeList.filter((n) => n.resources);

    show(slots.totals, status, (st) => {
      const total = {cpus: 0, mem: 0};
      const sum = {cpus: 0, mem: 0, tasks: 0};
      for (const a of agents) {
        total.cpus += a.resources.cpus;
        total.mem += a.resources.mem_mb;
        const u = used[a.id];
        if (u) { sum.cpus += u.cpus; sum.mem += u.mem; sum.tasks += u.tasks; }
      }
      const item = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
      return h('dl', {class: 'facts'},
        item('Leader', st.leader ? st.leader.name : 'none (an election is running)'),
        item('Term', st.term),
        item('Servers', st.servers),
        item('Agents', `${st.agents_ready} of ${st.agents} ready`),
        item('Live tasks', tasks.error ? '—' : sum.tasks),
        item('Apps', apps.error ? '—' : (apps.value.apps || []).length),
        item('CPUs', `${fmtNum(sum.cpus)} of ${fmtNum(total.cpus)} used`),
        item('Memory', `${fmtNum(sum.mem, 0)} of ${fmtNum(total.mem, 0)} MB used`),
        item('Applied index', st.applied_index),
        item('Version', st.version));
    });

    show(slots.servers, members, (list) => {
      const byId = new Map(nodeList.map((n) => [n.id, n]));
      const leaderMatched = Math.max(0, ...list.map((m) => m.matched_index || 0));
      const rows = list.map((m) => {
        const n = byId.get(m.id);
        const leader = m.raft_role === 'leader';
        const version = leader && status.value ? status.value.version : (n && n.version) || '—';
        let health = n ? n.status : '—';
        if (m.matched_index !== null && m.matched_index !== undefined && !leader) {
          const behind = leaderMatched - m.matched_index;
          health += behind > 0 ? `, ${behind} entries behind` : ', up to date';
        }
        return [
          m.name || `node ${m.id}`,
          leader ? badge('leader', 'ok') : m.raft_role,
          m.voter ? 'yes' : 'no',
          h('span', {class: n && n.status !== 'ready' ? 'bad' : ''}, health),
          m.http_addr || '—',
          version,
        ];
      });
      return table({caption: 'Servers', columns: ['Name', 'Raft role', 'Voter', 'Health', 'API address', 'Version'], rows, empty: 'No servers'});
    });

    show(slots.agents, nodes, () => {
      const rows = agents.map((n) => {
        const u = used[n.id] || {cpus: 0, mem: 0, disk: 0, tasks: 0};
        const r = n.resources;
        const attrs = Object.entries(n.attributes || {}).map(([k, v]) => `${k}=${v}`).join(', ') || '—';
        const maintenance = n.maintenance && n.maintenance !== 'active' ? ` (${n.maintenance})` : '';
        const actions = [];
        if (!n.maintenance || n.maintenance === 'active' || n.maintenance === 'deactivated') {
          actions.push(h('button', {type: 'button', 'aria-label': `Drain ${n.name}`, 'data-key': `maintenance-${n.id}`, onclick: () => drain(n)}, 'Drain'));
        }
        if (n.maintenance && n.maintenance !== 'active') {
          actions.push(h('button', {type: 'button', 'aria-label': `Reactivate ${n.name}`, 'data-key': `maintenance-${n.id}`, onclick: () => reactivate(n)}, 'Reactivate'));
        }
        return [
          h('span', {}, n.name, n.roles !== 'agent' ? h('span', {class: 'muted'}, ` (${n.roles})`) : null),
          badge(`${n.status}${maintenance}`, n.status === 'ready' && !maintenance ? 'ok' : n.status === 'ready' ? 'warn' : 'bad'),
          h('div', {class: 'resources'},
            meter('cpus', u.cpus, r.cpus),
            meter('mem', u.mem, r.mem_mb, ' MB'),
            r.disk_mb ? meter('disk', u.disk, r.disk_mb, ' MB') : null),
          u.tasks,
          attrs,
          h('div', {class: 'actions'}, actions),
        ];
      });
      return table({caption: 'Agents', columns: ['Name', 'State', 'Resources (used of total)', 'Tasks', 'Attributes', 'Actions'], rows, empty: 'No agents'});
    });

    show(slots.frameworks, frameworks, (list) => table({
      caption: 'Frameworks',
      columns: ['Name', 'ID', 'Roles', 'Connected', 'Tasks', 'CPUs', 'Memory'],
      rows: list.map((f) => [f.name, h('code', {}, f.id || '""'), (f.roles || []).join(', ') || '*',
        f.connected ? 'yes' : 'no', f.tasks, fmtNum(f.cpus), `${f.mem_mb} MB`]),
      empty: 'No frameworks',
    }));

    show(slots.roles, roles, (list) => {
      const q = (m) => Object.entries(m || {}).map(([k, v]) => `${k} ${fmtNum(v)}`).join(', ') || '—';
      return table({
        caption: 'Roles',
        columns: ['Role', 'Weight', 'Frameworks', 'CPUs held', 'Memory held', 'Guarantee', 'Limit'],
        rows: list.map((r) => [r.name, fmtNum(r.weight), (r.frameworks || []).length, fmtNum(r.cpus), `${r.mem_mb} MB`, q(r.guarantees), q(r.limits)]),
        empty: 'No roles',
      });
    });
  };

  // Everything on it is in some event: agents, servers, tasks, frameworks, roles, apps.
  const refreshNow = live(ctx.signal, {}, refresh);
  return refresh();
}
