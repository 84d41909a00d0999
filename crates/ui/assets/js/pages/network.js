// DNS names and gateway routes: what this server's DNS answers (/v1/dns/records) and what the
// gateways serve (/v1/gateway/table, and each agent's live view in /v1/gateway/routes).

import {api, all} from '../api.js';
import {h, section, table, replace, alertBox, appHref, newId} from '../dom.js';
import {live} from '../events.js';

const SHOWN = 500;

export function render(ctx) {
  ctx.heading('Network');
  const filterId = newId('filter');
  const filter = h('input', {id: filterId, type: 'search', autocomplete: 'off', spellcheck: 'false'});
  const slots = {dns: h('div'), routes: h('div'), vips: h('div'), certs: h('div'), problems: h('div')};
  ctx.main.append(
    section('DNS',
      h('p', {class: 'toolbar'}, h('label', {for: filterId}, 'Filter records'), filter),
      slots.dns),
    section('Gateway routes', slots.routes),
    section('Virtual IPs', slots.vips),
    section('Certificates', slots.certs),
    section('Problems', slots.problems));

  let dns = null;
  const drawDns = () => {
    if (!dns) return;
    if (dns.error) { replace(slots.dns, alertBox(dns.error.message)); return; }
    const words = filter.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const records = (dns.value.records || []).filter((r) => {
      const line = `${r.name} ${r.type} ${r.data}`.toLowerCase();
      return words.every((w) => line.includes(w));
    });
    replace(slots.dns,
      h('p', {}, `Domain ${dns.value.domain}, serial ${dns.value.serial}: ${records.length} record(s)`,
        records.length > SHOWN ? `, the first ${SHOWN} shown` : '', '.'),
      table({caption: 'DNS records', columns: ['Name', 'Type', 'TTL', 'Data'],
        rows: records.slice(0, SHOWN).map((r) => [r.name, r.type, r.ttl, r.data]), empty: 'No records'}));
  };
  filter.addEventListener('input', drawDns);

  const refresh = async () => {
    const [records, gateway] = await all([
      api('/v1/dns/records', {signal: ctx.signal}),
      api('/v1/gateway/table', {signal: ctx.signal}),
    ]);
    if (ctx.signal.aborted) return;
    dns = records;
    drawDns();
    if (gateway.error) {
      replace(slots.routes, alertBox(gateway.error.message));
      return;
    }
    const g = gateway.value;
    const backends = (list) => (list || []).map((b) => b.addr).join(', ') || 'none';
    replace(slots.routes, table({
      caption: 'Gateway routes',
      columns: ['App', 'Hosts', 'Path', 'Port index', 'Balance', 'Backends'],
      rows: (g.routes || []).map((r) => [h('a', {href: appHref(r.app)}, r.app), (r.hosts || []).join(', ') || '(any)',
        r.path || '/', r.port_index, `${r.balance || 'roundrobin'}${r.sticky ? ', sticky' : ''}${r.redirect_to_https ? ', to HTTPS' : ''}`, backends(r.backends)]),
      empty: 'No routes: apps get them with HAPROXY_GROUP and HAPROXY_0_VHOST labels',
    }));
    replace(slots.vips, table({
      caption: 'Virtual IPs',
      columns: ['Name', 'Address', 'Apps', 'Backends'],
      rows: (g.vips || []).map((v) => [v.name || '—', `${v.ip}:${v.port}/${v.protocol}`,
        h('span', {}, (v.apps || []).map((a, i) => [i ? ', ' : '', h('a', {href: appHref(a)}, a)])), backends(v.backends)]),
      empty: 'No virtual IPs',
    }));
    replace(slots.certs, table({
      caption: 'Certificates',
      columns: ['Host', 'Serves', 'Valid until', 'Problem'],
      rows: (g.certificates || []).map((c) => [c.host, (c.hosts || []).join(', ') || '—', c.not_after || '—', c.problem || '—']),
      empty: 'No certificates',
    }));
    replace(slots.problems, (g.problems || []).length
      ? h('ul', {}, g.problems.map((p) => h('li', {}, `${p.source} ${p.field}: ${p.message}`)))
      : h('p', {class: 'muted'}, 'None: every label and certificate is understood.'));
  };
  live(ctx.signal, {types: ['app_changed', 'task_changed']}, refresh);
  return refresh();
}
