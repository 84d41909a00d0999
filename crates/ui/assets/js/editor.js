// A JSON editor: a labelled textarea, a submit button, and the API's validation errors shown
// beside it, one per field ("/instances: must be greater than or equal to 0").

import {h, newId, alertBox, announce} from './dom.js';
import {aborted} from './api.js';

/**
 * The offset of the first JSON syntax error in `text` (browsers' messages do not all say where),
 * by a scan of JSON's grammar; -1 when there is none.
 */
export function syntaxErrorAt(text) {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i += 1; };
  const fail = () => { throw i; };
  const lit = (word) => { if (text.startsWith(word, i)) i += word.length; else fail(); };
  const string = () => {
    i += 1;
    while (i < text.length && text[i] !== '"') {
      if (text[i] < ' ') fail();
      if (text[i] === '\\') {
        i += 1;
        if (text[i] === 'u') { if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail(); i += 4; }
        else if (!'"\\/bfnrt'.includes(text[i] || 'x')) fail();
      }
      i += 1;
    }
    if (i >= text.length) fail();
    i += 1;
  };
  const number = () => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m || !m[0] || m[0] === '-') fail();
    i += m[0].length;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i += 1;
      ws();
      if (text[i] === close) { i += 1; return; }
      for (;;) {
        if (c === '{') {
          ws();
          if (text[i] !== '"') fail();
          string();
          ws();
          if (text[i] !== ':') fail();
          i += 1;
        }
        value();
        ws();
        if (text[i] === ',') { i += 1; continue; }
        if (text[i] === close) { i += 1; return; }
        fail();
      }
    }
    if (c === '"') return string();
    if (c === 't') return lit('true');
    if (c === 'f') return lit('false');
    if (c === 'n') return lit('null');
    return number();
  };
  try {
    value();
    ws();
    return i < text.length ? i : -1;
  } catch (at) {
    return typeof at === 'number' ? at : -1;
  }
}

/** A JSON.parse error with where it happened: "... at position 42 (line 3, column 5)". */
function parsePosition(text, message) {
  if (/line \d+/.test(message)) return message;
  const m = message.match(/position (\d+)/);
  const pos = m ? Number(m[1]) : syntaxErrorAt(text);
  if (pos < 0) return message;
  const before = text.slice(0, pos).split('\n');
  const where = `line ${before.length}, column ${before[before.length - 1].length + 1}`;
  return m ? `${message} (${where})` : `${message} (at position ${pos}: ${where})`;
}

/**
 * label: the textarea's label; button: its button's text; value: the initial object;
 * onSubmit(obj): performs the call, may throw an ApiError whose details are shown per field.
 * Returns {el, setValue(obj), dirty()}.
 */
export function jsonEditor({label, button, value, onSubmit}) {
  const id = newId('editor');
  const errorsId = `${id}-errors`;
  let dirty = false;
  const area = h('textarea', {id, class: 'code', rows: 18, spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off'});
  const errors = h('div', {id: errorsId, class: 'field-errors'});
  const submit = h('button', {type: 'submit', class: 'primary'}, button);
  const form = h('form', {class: 'editor', novalidate: true},
    h('label', {for: id}, label),
    area,
    errors,
    h('div', {class: 'actions'}, submit));
  area.addEventListener('input', () => { dirty = true; });

  const clear = () => {
    errors.replaceChildren();
    area.removeAttribute('aria-invalid');
    area.removeAttribute('aria-describedby');
  };

  // Each field's errors in an alert of its own, tied to the textarea by aria-describedby.
  const showDetails = (details) => {
    clear();
    const ids = details.map((d, i) => {
      const eid = `${errorsId}-${i}`;
      const messages = Array.isArray(d.errors) ? d.errors.join('; ') : String(d.errors || '');
      errors.append(h('p', {id: eid, class: 'field-error', role: 'alert'}, `${d.path || '/'}: ${messages}`));
      return eid;
    });
    area.setAttribute('aria-invalid', 'true');
    area.setAttribute('aria-describedby', ids.join(' '));
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let obj;
    try {
      obj = JSON.parse(area.value);
    } catch (err) {
      showDetails([{path: '/', errors: [parsePosition(area.value, err.message)]}]);
      return;
    }
    clear();
    submit.disabled = true;
    try {
      await onSubmit(obj);
      dirty = false;
    } catch (err) {
      if (aborted(err)) return;
      if (err.details && err.details.length) {
        showDetails(err.details);
        announce(`${err.message}: ${err.details.length} field(s) to fix`);
      } else {
        errors.append(alertBox(err.message || String(err)));
      }
    } finally {
      submit.disabled = false;
    }
  });

  const setValue = (v) => {
    area.value = typeof v === 'string' ? v : JSON.stringify(v, null, 2);
    dirty = false;
  };
  if (value !== undefined) setValue(value);
  return {el: form, setValue, dirty: () => dirty, textarea: area};
}
