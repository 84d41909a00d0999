// The entry point: routes, the login guard, the header, and the login link's token.

import {api, token, onUnauthorized} from './api.js';
import {announce} from './dom.js';
import {stop as stopEvents} from './events.js';
import {route, setGuard, navigate, start, render} from './router.js';
import * as login from './pages/login.js';
import * as overview from './pages/overview.js';
import * as services from './pages/services.js';
import * as app from './pages/app.js';
import * as jobs from './pages/jobs.js';
import * as job from './pages/job.js';
import * as tasks from './pages/tasks.js';
import * as task from './pages/task.js';
import * as network from './pages/network.js';
import * as events from './pages/events.js';
import * as metrics from './pages/metrics.js';

route(/^\/login$/, login);
route(/^\/$/, overview);
route(/^\/services$/, services);
// The editors' paths cannot be ids: Marathon's and Metronome's ids have no '_'.
route(/^\/services\/_new$/, services.create);
route(/^\/services\/(.+)$/, app);
route(/^\/jobs$/, jobs);
route(/^\/jobs\/_new$/, jobs.create);
route(/^\/jobs\/([^/]+)$/, job);
route(/^\/tasks$/, tasks);
route(/^\/tasks\/([^/]+)$/, task);
route(/^\/network$/, network);
route(/^\/events$/, events);
route(/^\/metrics$/, metrics);

/** Shows the menu and the session's controls only to a logged-in user. */
function updateHeader() {
  const on = Boolean(token.get());
  document.getElementById('nav').hidden = !on;
  document.getElementById('session').hidden = !on;
  const who = document.getElementById('whoami');
  who.textContent = '';
  if (on) {
    api('/v1/acl/token/self').then((me) => {
      if (token.get()) who.textContent = me && me.name ? `as ${me.name}` : '';
    }).catch(() => {});
  }
}

// Without a token every page is the login page, and no API call is made.
setGuard((path) => {
  if (token.get() || path.startsWith('/ui/login')) return null;
  login.rememberNext(path);
  return '/ui/login';
});

document.addEventListener('tepui:login', updateHeader);

onUnauthorized((message) => {
  const here = location.pathname + location.search;
  token.clear();
  stopEvents();
  updateHeader();
  login.rememberNext(here, message);
  navigate('/ui/login', {replace: true});
});

document.getElementById('logout').addEventListener('click', () => {
  token.clear();
  stopEvents();
  updateHeader();
  navigate('/ui/login');
  announce('Logged out');
});

// A login link (`tepui ui`): /ui/login#token=TOKEN. The fragment never reaches the server; it
// is taken out of the address bar (and so out of the history) before anything else happens.
// The link's token is tried on the login page (even over a session's token), then the page the
// link named opens.
function takeLinkToken() {
  const m = location.hash.match(/^#token=(.+)$/);
  if (!m) return false;
  login.rememberNext(location.pathname + location.search);
  history.replaceState(null, '', '/ui/login');
  let t = m[1];
  try { t = decodeURIComponent(t); } catch { /* used as it is */ }
  login.linkToken(t);
  return true;
}
takeLinkToken();
// Opening a link while a UI page is already open only changes the fragment: no reload.
window.addEventListener('hashchange', () => {
  if (takeLinkToken()) render();
});

updateHeader();
start();
