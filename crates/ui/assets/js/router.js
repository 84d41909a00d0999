// Client-side routes over the history API. The server answers the same shell for every /ui/...
// path, so a deep link or a reload lands on the page it names.

import {h} from './dom.js';

const routes = [];
let current = null;
let guard = () => null;
let firstRender = true;

/**
 * Adds a route: `pattern` is a RegExp on the path after /ui (its groups become params); `page`
 * is {render(ctx)}.
 */
export function route(pattern, page) {
  routes.push({pattern, page});
}

/**
 * A function of the path that may send the user elsewhere first (the login page when there is
 * no token): it answers a path to go to instead, or null.
 */
export function setGuard(fn) {
  guard = fn;
}

export function navigate(path, {replace = false} = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

/** The path under /ui without its trailing slash: '/ui/services/' -> '/services', '/ui' -> '/'. */
function subpath(pathname) {
  const rest = pathname.replace(/^\/ui/, '').replace(/\/+$/, '');
  return rest || '/';
}

export function render() {
  const redirect = guard(location.pathname + location.search);
  if (redirect) history.replaceState(null, '', redirect);
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  const path = subpath(location.pathname);
  const main = document.getElementById('main');
  main.replaceChildren();
  let page = null;
  let params = [];
  for (const r of routes) {
    const m = path.match(r.pattern);
    if (m) {
      page = r.page;
      params = m.slice(1).map((p) => (p === undefined ? p : decodeURIComponent(p)));
      break;
    }
  }
  markNav(path);
  const ctx = {
    main,
    params,
    signal,
    query: new URLSearchParams(location.search),
    // Sets the page's <h1> and the window title; the first heading of every page.
    heading(text) {
      document.title = `${text} · tepui`;
      const h1 = h('h1', {tabindex: -1}, text);
      main.append(h1);
      return h1;
    },
  };
  if (!page) {
    ctx.heading('Not found');
    main.append(h('p', {}, 'There is no page at this address. Pick one from the menu.'));
  } else {
    try {
      const done = page.render(ctx);
      if (done && done.catch) done.catch((e) => { if (!signal.aborted) console.error(e); });
    } catch (e) {
      console.error(e);
    }
  }
  // After a navigation (not the first load) the new page's heading takes focus, so a screen
  // reader announces it and the keyboard starts from the top of the new content.
  if (!firstRender) {
    const h1 = main.querySelector('h1');
    if (h1) h1.focus({preventScroll: true});
    window.scrollTo(0, 0);
  }
  firstRender = false;
}

function markNav(path) {
  for (const a of document.querySelectorAll('nav a')) {
    const target = subpath(new URL(a.getAttribute('href'), location.href).pathname);
    const on = target === '/' ? path === '/' : path === target || path.startsWith(`${target}/`);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** Links inside the UI navigate without a reload; others (new tab, other sites) are left alone. */
export function start() {
  document.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = e.target.closest('a[href]');
    if (!a || a.target || a.hasAttribute('download')) return;
    const href = a.getAttribute('href');
    if (href.startsWith('#')) return;
    // getAttribute: an SVG link's `href` property is not a string.
    const url = new URL(href, location.href);
    if (url.origin !== location.origin || !/^\/ui(\/|$)/.test(url.pathname) || url.pathname.startsWith('/ui/assets/')) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener('popstate', render);
  render();
}
