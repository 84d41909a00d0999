// DOM helpers. Every page builds its elements with these: data only ever becomes text
// (textContent, attribute values), never markup, so an app id or a log line cannot inject HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** Appends children: nodes, strings and numbers (as text), arrays; null and false are skipped. */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h('a', {href: '/ui/'}, 'Overview'). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

let uid = 0;
/** A fresh id for aria-labelledby and friends. */
export function newId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/**
 * A section with an <h2>: h2 text first, then its content. It is labelled by its heading, so
 * screen readers can jump between sections.
 */
export function section(title, ...children) {
  const id = newId('sec');
  return h('section', {'aria-labelledby': id}, h('h2', {id}, title), ...children);
}

/**
 * A table with a caption, inside its own scroll container (focusable, labelled) so that a wide
 * table scrolls by itself and never the whole page on a phone.
 * columns: header texts; rows: arrays of cells (text or nodes); empty: the text of the single
 * row shown when there are none.
 */
export function table({caption, label, columns, rows, empty = 'None'}) {
  const body = rows.length
    ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
    : [h('tr', {}, h('td', {colspan: columns.length, class: 'muted'}, empty))];
  return h('div', {class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': label || `${caption} table`},
    h('table', {},
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', {scope: 'col'}, c)))),
      h('tbody', {}, body)));
}

/**
 * Replaces a container's children (a live refresh) without dropping the keyboard's place: focus
 * goes back to the element with the same data-key. Children equal to the ones shown are kept.
 */
export function replace(container, ...children) {
  // Nothing changed: the page stays as it is (no flicker, a screen reader's place, and the
  // elements a script or a test holds stay valid).
  const fresh = append(document.createElement('div'), children);
  const now = container.childNodes;
  if (fresh.childNodes.length === now.length && [...fresh.childNodes].every((n, i) => n.isEqualNode(now[i]))) return;
  const active = document.activeElement;
  const inside = active && active !== container && container.contains(active);
  const key = inside ? active.dataset.key : undefined;
  container.replaceChildren(...fresh.childNodes);
  if (inside) {
    // The same control again, or (it is gone) the new content's first stop, never <body>.
    const again = (key && [...container.querySelectorAll('[data-key]')].find((e) => e.dataset.key === key))
      || container.querySelector('[tabindex="0"], a[href], button:not([disabled])');
    if (again) again.focus({preventScroll: true});
  }
}

let statusTimer = null;
/** Says something in the page's status live region (screen readers read it out). */
export function announce(text) {
  const el = document.getElementById('status');
  if (!el) return;
  el.textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { el.textContent = ''; }, 10000);
}

/** An error message, read out at once. */
export function alertBox(message) {
  return h('p', {class: 'error', role: 'alert'}, message);
}

/** Shows an error (or nothing) in a slot element. */
export function showError(slot, err) {
  slot.replaceChildren();
  if (err) slot.append(alertBox(err.message || String(err)));
}

/**
 * Asks for confirmation in a modal <dialog>. Escape and "Cancel" say no; focus goes back to
 * what had it before. Resolves true when the user confirms.
 */
export function confirmDialog({title, text, confirm = 'Confirm'}) {
  const opener = document.activeElement;
  const openerKey = opener && opener.dataset ? opener.dataset.key : undefined;
  const titleId = newId('dlg');
  return new Promise((resolve) => {
    let answer = false;
    const dialog = h('dialog', {'aria-labelledby': titleId, class: 'dialog'},
      h('h2', {id: titleId}, title),
      text ? h('p', {}, text) : null,
      h('div', {class: 'actions'},
        h('button', {type: 'button', class: 'danger', onclick: () => { answer = true; dialog.close(); }}, confirm),
        h('button', {type: 'button', autofocus: true, onclick: () => dialog.close()}, 'Cancel')));
    dialog.addEventListener('close', () => {
      dialog.remove();
      let back = opener && opener.isConnected ? opener : null;
      if (!back && openerKey) back = document.querySelector(`[data-key="${CSS.escape(openerKey)}"]`);
      if (back) back.focus();
      resolve(answer);
    });
    (document.getElementById('main') || document.body).append(dialog);
    dialog.showModal();
  });
}

// ---- formatting ----

/** A time (Unix ms, or an ISO string as Marathon and Metronome send) in the local zone. */
export function fmtTime(t) {
  if (t === null || t === undefined || t === '') return '—';
  const d = typeof t === 'number' ? new Date(t) : new Date(normalizeIso(t));
  if (Number.isNaN(d.getTime())) return String(t);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Metronome writes offsets as +0000, which Date does not read everywhere. */
function normalizeIso(t) {
  return String(t).replace(/([+-]\d\d)(\d\d)$/, '$1:$2');
}

/** Milliseconds since the epoch of a time as the APIs send it. */
export function toMs(t) {
  if (t === null || t === undefined || t === '') return null;
  if (typeof t === 'number') return t;
  const ms = new Date(normalizeIso(t)).getTime();
  return Number.isNaN(ms) ? null : ms;
}

/** "3 min ago", "in 2 h". */
export function fmtRelative(t) {
  const ms = toMs(t);
  if (ms === null) return '—';
  const diff = Math.round((ms - Date.now()) / 1000);
  const abs = Math.abs(diff);
  const [n, unit] = abs < 60 ? [abs, 's'] : abs < 3600 ? [Math.round(abs / 60), 'min']
    : abs < 86400 ? [Math.round(abs / 3600), 'h'] : [Math.round(abs / 86400), 'd'];
  return diff >= 0 ? `in ${n} ${unit}` : `${n} ${unit} ago`;
}

/** A number without float noise: 0.30000000000000004 -> 0.3. */
export function fmtNum(n, digits = 2) {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return String(Math.round(n * 10 ** digits) / 10 ** digits);
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${fmtNum(v, i ? 1 : 0)} ${units[i]}`;
}

/** Mesos task states without the prefix: TASK_RUNNING -> running. */
export function fmtState(state) {
  return state ? String(state).replace(/^TASK_/, '').toLowerCase().replace(/_/g, ' ') : '—';
}

/** A CSS class for a state's colour. */
export function stateClass(state) {
  const s = String(state || '').toUpperCase();
  if (/RUNNING|SUCCESS|FINISHED|READY|ACTIVE$|HEALTHY/.test(s) && !/UNHEALTHY/.test(s)) return 'ok';
  if (/FAIL|ERROR|LOST|UNREACHABLE|GONE|DROPPED|UNHEALTHY|KILLED/.test(s)) return 'bad';
  return 'warn';
}

/** A small badge with text (never colour alone). */
export function badge(text, cls) {
  return h('span', {class: `badge ${cls || stateClass(text)}`}, text);
}

/** The path of a UI page for an app id: /shop/web -> /ui/services/shop/web. */
export function appHref(id) {
  return `/ui/services/${String(id).replace(/^\//, '').split('/').map(encodeURIComponent).join('/')}`;
}

export function taskHref(id) {
  return `/ui/tasks/${encodeURIComponent(id)}`;
}

export function jobHref(id) {
  return `/ui/jobs/${encodeURIComponent(id)}`;
}

/** An app id as the /v2 API path takes it. */
export function appPath(id) {
  return `/v2/apps/${String(id).replace(/^\//, '').split('/').map(encodeURIComponent).join('/')}`;
}

/** Escape sequences (colours, cursor moves, titles) and other controls, out of terminal text. */
export function stripAnsi(text) {
  return text
    .replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, '')
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, '')
    .replace(/\x1b[@-Z\\-_]/g, '')
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, '');
}
