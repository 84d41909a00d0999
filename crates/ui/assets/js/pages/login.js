// The login page: an API token, checked with GET /v1/acl/token/self before it is kept.

import {api, token, aborted} from '../api.js';
import {h, announce, alertBox} from '../dom.js';
import {navigate} from '../router.js';

let next = null;
let reason = null;
let fromLink = null;

/** Where to go after logging in, and why the user is here (a 401's message). */
export function rememberNext(path, message) {
  if (!path.startsWith('/ui/login')) next = path;
  if (message) reason = message;
}

/** A token from a login link, tried as soon as the login page shows. */
export function linkToken(t) {
  fromLink = t;
}

export function render(ctx) {
  ctx.heading('Log in');
  const errors = h('div', {class: 'error-slot'});
  const input = h('input', {id: 'login-token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'login-help'});
  const button = h('button', {type: 'submit', class: 'primary'}, 'Log in');
  const form = h('form', {class: 'login', novalidate: true},
    h('label', {for: 'login-token'}, 'API token'),
    input,
    h('p', {id: 'login-help', class: 'muted'},
      'The bootstrap token is in the first server\'s data directory (file api-token). ',
      h('code', {}, 'tepui ui'), ' prints a login link with a short-lived token.'),
    h('div', {class: 'actions'}, button));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    tryToken(input.value.trim());
  });
  ctx.main.append(form, errors);
  if (reason) {
    errors.append(alertBox(`You were logged out: ${reason}`));
    reason = null;
  }

  async function tryToken(t) {
    errors.replaceChildren();
    if (!t) {
      errors.append(alertBox('Paste an API token first.'));
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      const me = await api('/v1/acl/token/self', {token: t, signal: ctx.signal});
      token.set(t);
      document.dispatchEvent(new CustomEvent('tepui:login'));
      const to = next || '/ui/';
      next = null;
      navigate(to, {replace: true});
      announce(me && me.name ? `Logged in as ${me.name}` : 'Logged in');
    } catch (e) {
      if (aborted(e)) return;
      button.disabled = false;
      const why = e.status === 401 ? `The token was refused: ${e.message}` : `Cannot check the token: ${e.message}`;
      errors.append(alertBox(why));
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  }

  if (fromLink) {
    const t = fromLink;
    fromLink = null;
    tryToken(t);
  } else {
    input.focus();
  }
}
