// One task: its state as it changes (GET /v1/tasks/{id}/watch, one JSON object a line), its
// output followed, a terminal into it, and its sandbox's files.

import {api, stream, aborted} from '../api.js';
import {
  h, section, table, replace, alertBox, announce, confirmDialog, fmtState, fmtTime, fmtBytes,
  fmtNum, badge, appHref,
} from '../dom.js';
import {logView} from '../logs.js';
import {terminalView} from '../terminal.js';
import {taskEnded, taskPorts, healthWord} from '../model.js';

const READ_LENGTH = 64 * 1024;

export function render(ctx) {
  const id = ctx.params[0];
  const base = `/v1/tasks/${encodeURIComponent(id)}`;
  ctx.heading(id);
  const summary = h('div', {}, h('p', {class: 'muted'}, 'Loading…'));
  const errors = h('div', {class: 'error-slot'});
  const kill = h('button', {type: 'button', class: 'danger', onclick: async () => {
    const ok = await confirmDialog({title: `Kill ${id}?`, text: 'It is stopped with its grace period. A service or a job may start another in its place.'});
    if (!ok) return;
    errors.replaceChildren();
    try {
      await api(`${base}/kill`, {method: 'POST', body: {}});
      announce(`Killing ${id}`);
    } catch (e) {
      errors.append(alertBox(`Cannot kill ${id}: ${e.message}`));
    }
  }}, 'Kill task');
  const files = filesView(id, base, ctx);
  ctx.main.append(
    summary,
    section('Actions', errors, h('div', {class: 'toolbar'}, kill)),
    section('Logs', logView(id, ctx.signal)),
    section('Terminal', terminalView(id, ctx.signal)),
    section('Files', files));

  // The app an instance belongs to, for a link back (the /v1 view does not say it).
  let appId = null;
  const findApp = async () => {
    try {
      const all = await api('/v2/tasks', {signal: ctx.signal});
      const t = (all.tasks || []).find((x) => x.id === id);
      appId = t ? t.appId : null;
    } catch { /* no link then */ }
  };

  let lookedForApp = false;
  const show = (t) => {
    if (t.framework === 'tepui-services' && !lookedForApp) {
      lookedForApp = true;
      findApp().then(() => show(t));
    }
    kill.disabled = taskEnded(t.state);
    const item = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
    replace(summary, h('dl', {class: 'facts'},
      item('State', badge(fmtState(t.state))),
      t.message ? item('Message', t.message) : null,
      t.exit_code !== null && t.exit_code !== undefined ? item('Exit code', t.exit_code) : null,
      item('Agent', t.agent_name || String(t.agent_id)),
      item('Ports', taskPorts(t.ports)),
      item('Health', healthWord(t.healthy)),
      appId ? item('App', h('a', {href: appHref(appId)}, appId)) : null,
      item('Framework', t.framework || '—'),
      item('Image', t.image || '(none: the host\'s filesystem)'),
      item('Command', h('code', {}, (t.cmd || []).join(' ') || '(the image\'s)')),
      item('Resources', `${fmtNum(t.cpus)} cpus, ${t.mem_mb} MB memory${t.disk_mb ? `, ${t.disk_mb} MB disk` : ''}`),
      item('Network', t.container_ip ? `${t.network} (${t.container_ip})` : t.network),
      item('Started', fmtTime(t.started_at_ms)),
      t.finished_at_ms ? item('Finished', fmtTime(t.finished_at_ms)) : null));
  };

  // The watch stream ends with the task; it is opened again if it breaks before that.
  const watch = async () => {
    let last = null;
    let buffer = '';
    for (let attempt = 0; !ctx.signal.aborted; attempt += 1) {
      try {
        await stream(`${base}/watch`, {signal: ctx.signal, accept: 'application/x-ndjson', onChunk: (text) => {
          buffer += text;
          let nl;
          while ((nl = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, nl).trim();
            buffer = buffer.slice(nl + 1);
            if (!line) continue;
            try { last = JSON.parse(line); show(last); } catch { /* a partial line */ }
          }
        }});
        if (!last || taskEnded(last.state)) return;
      } catch (e) {
        if (aborted(e) || ctx.signal.aborted) return;
        if (e.status === 404) { replace(summary, alertBox(`There is no task ${id}.`)); return; }
        if (e.status) { replace(summary, alertBox(e.message)); return; }
      }
      buffer = '';
      await new Promise((r) => setTimeout(r, Math.min(1000 * 2 ** attempt, 15000)));
    }
  };
  watch();
}

/** The sandbox: a table of a directory (directories descend), and a file's contents. */
function filesView(id, base, ctx) {
  const wrap = h('div');
  const errors = h('div', {class: 'error-slot'});
  const listing = h('div');
  const contents = h('div');
  wrap.append(errors, listing, contents);
  const name = (path) => path.split('/').filter(Boolean).pop() || '/';
  const parent = (path) => path.split('/').filter(Boolean).slice(0, -1).join('/');
  const clean = (path) => (path || '').replace(/^\/+|\/+$/g, '');

  // Where we are goes in the address (?dir=, ?file=), so a reload or a shared link opens it.
  const remember = (key, path) => {
    const q = new URLSearchParams(location.search);
    q.delete('dir');
    q.delete('file');
    if (path) q.set(key, path);
    const search = q.toString();
    history.replaceState(null, '', location.pathname + (search ? `?${search}` : ''));
  };
  const link = (text, onOpen, href) => h('a', {href, onclick: (e) => { e.preventDefault(); onOpen(); }}, text);

  const browse = async (dir, focusTable = false) => {
    errors.replaceChildren();
    let entries;
    try {
      entries = await api(`${base}/files/browse?path=${encodeURIComponent(dir)}`, {signal: ctx.signal});
    } catch (e) {
      if (aborted(e)) return;
      errors.append(alertBox(`Cannot list ${dir || 'the sandbox'}: ${e.message}`));
      return;
    }
    remember('dir', dir);
    entries.sort((a, b) => (b.mode.startsWith('d') - a.mode.startsWith('d')) || a.path.localeCompare(b.path));
    const rows = entries.map((e) => {
      const path = clean(e.path);
      const isDir = e.mode.startsWith('d');
      return [
        isDir
          ? link(`${name(path)}/`, () => browse(path, true), `?dir=${encodeURIComponent(path)}`)
          : link(name(path), () => read(path, e.size), `?file=${encodeURIComponent(path)}`),
        isDir ? '—' : fmtBytes(e.size),
        fmtTime(e.mtime * 1000),
        h('code', {}, e.mode),
      ];
    });
    if (dir) rows.unshift([link('Parent directory', () => browse(parent(dir), true), `?dir=${encodeURIComponent(parent(dir))}`), '', '', '']);
    replace(listing,
      h('p', {}, 'Sandbox: ', h('code', {}, `/${dir}`)),
      table({caption: 'Files', columns: ['Name', 'Size', 'Modified', 'Mode'], rows, empty: 'Empty directory'}));
    if (focusTable) {
      const first = listing.querySelector('tbody a');
      if (first) first.focus();
    }
  };

  const read = async (path, size) => {
    errors.replaceChildren();
    const offset = size > READ_LENGTH ? size - READ_LENGTH : 0;
    let answer;
    try {
      answer = await api(`${base}/files/read?path=${encodeURIComponent(path)}&offset=${offset}&length=${READ_LENGTH}`, {signal: ctx.signal});
    } catch (e) {
      if (aborted(e)) return;
      errors.append(alertBox(`Cannot read ${path}: ${e.message}`));
      return;
    }
    remember('file', path);
    const pre = h('pre', {class: 'file', role: 'region', 'aria-label': 'File contents', tabindex: 0}, answer.data || '');
    replace(contents,
      h('h3', {}, `Contents of ${path}`),
      offset ? h('p', {class: 'muted'}, `The last ${fmtBytes(READ_LENGTH)} of ${fmtBytes(size)}.`) : null,
      pre,
      h('button', {type: 'button', onclick: () => { contents.replaceChildren(); remember('dir', parent(path)); }}, 'Close file'));
    pre.focus();
  };

  const q = ctx.query;
  if (q.get('file')) {
    const f = clean(q.get('file'));
    browse(parent(f)).then(() => read(f, 0));
  } else {
    browse(clean(q.get('dir') || ''));
  }
  return wrap;
}
