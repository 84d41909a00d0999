//! The web UI in a real browser (headless Chromium over WebDriver, e2e/src/browser.rs), as its
//! contract says it behaves: without a token every /ui/ route is the login page and no API call
//! succeeds; logging in with the API token, with a wrong one, and with the link `tepui ui
//! --no-open` prints; logging out. Then a user's work: an app deployed from the editor (after a
//! validation error shown at its field, and malformed JSON), seen healthy, scaled; its task's
//! logs, a terminal into it, its sandbox files; a job created, run now, its history; DNS names
//! and routes, a list updating live, the event stream, metrics; a roll back; an agent drained,
//! why the app no longer runs, and the app deleted.
//!
//! Every page is screenshotted (e2e-artifacts/ui under the target dir) and checked: axe-core's
//! WCAG 2 A and AA rules, Tab from the top reaching the main navigation and the page's primary
//! control with a visible focus, and no horizontal scroll on a phone's screen. Those findings,
//! and flows that fail, are gathered and reported together at the end, so that one missing
//! feature does not hide the state of the others.
//!
//! Two `tepui dev`s: 127.0.62.1 (ports 36200-36219, bridge `tpe2e-ui1`, 10.214.62.0/25) for
//! logging in, 127.0.62.2 (36220-36259, `tpe2e-ui2`, 10.214.62.128/25) for the rest. Needs
//! root, busybox-static, chromium, chromium-driver and axe-core (e2e/setup.sh).

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tepui_e2e::browser::{axe_source, keys, xpath_literal, Browser, By, PHONE};
use tepui_e2e::marathon::Marathon;
use tepui_e2e::{
    http_addr, need_root, spawn_dev, tepui, token_with_policy, MarkedProcesses, Sandbox, API_TOKEN, MARKER_VAR,
};
use tepui_image::testimage::{build_docker_archive, require_busybox};

/// What the UI's responses must say about where content may come from.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'";

const LOGIN_IP: &str = "127.0.62.1";
const OPS_IP: &str = "127.0.62.2";
const OPS_NODE: &str = "ui2";
const IMAGE: &str = "tepui-e2e/busybox:ui";
const START: Duration = Duration::from_secs(30);
/// For the UI to show what it has just been told or asked.
const SHOWN: Duration = Duration::from_secs(15);
/// For tasks to start and pass their health checks.
const SETTLE: Duration = Duration::from_secs(60);

/// The names of the main navigation's links, in order.
const NAV: [&str; 7] = ["Overview", "Services", "Jobs", "Tasks", "Network", "Events", "Metrics"];

/// The client routes (under /ui/) that must all be the login page without a token.
const ROUTES: [&str; 13] = [
    "",
    "login",
    "services",
    "services/_new",
    "services/shop/web",
    "jobs",
    "jobs/_new",
    "jobs/nightly",
    "tasks",
    "tasks/web.1234",
    "network",
    "events",
    "metrics",
];

/// The app the tests deploy: a busybox HTTP server with a health check, a DNS name and a
/// gateway route, that prints [`LOG_MARKER`] when it starts.
const APP_ID: &str = "/ui-web";
/// The app's page.
const APP_PAGE: &str = "/ui/services/ui-web";
const LOG_MARKER: &str = "ui-e2e-log-marker";
const VHOST: &str = "ui-web.example.test";

/// The primary control of a page, which Tab must reach.
#[derive(Clone, Copy)]
enum Control {
    Button(&'static str),
    Link(&'static str),
    None,
}

/// Flows that failed and accessibility findings, reported together at the end.
#[derive(Default)]
struct Report {
    failures: Vec<String>,
}

impl Report {
    /// Runs one flow; a panic in it is recorded and the test goes on. Whether it passed.
    fn step(&mut self, name: &str, f: impl FnOnce()) -> bool {
        eprintln!("ui: {name}");
        match std::panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => true,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".into());
                self.failures.push(format!("FLOW {name}: {message}"));
                false
            }
        }
    }

    fn finish(self, ui: &Ui) {
        let mut all = self.failures;
        all.extend(ui.findings.iter().cloned());
        // The browser lists its screenshots when it drops.
        assert!(
            all.is_empty(),
            "{} problems with the web UI:\n\n{}",
            all.len(),
            all.join("\n\n")
        );
    }
}

/// The browser on one server's UI, and the accessibility findings so far.
struct Ui {
    b: Browser,
    base: String,
    axe: String,
    findings: Vec<String>,
}

impl Ui {
    fn new(label: &str, ip: &str) -> Ui {
        Ui {
            b: Browser::start(label),
            base: format!("http://{}", http_addr(ip)),
            axe: axe_source(),
            findings: vec![],
        }
    }

    /// Loads the UI's `path` (after the server's address).
    fn open(&mut self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.load(&url);
    }

    /// Loads `url` and waits for the shell to boot (a title other than "Loading"). Chromium
    /// fails requests in flight with ERR_NETWORK_CHANGED when the host's interfaces change,
    /// which other tests' bridges and containers do at any time: a page whose modules were
    /// lost that way is loaded again.
    fn load(&mut self, url: &str) {
        for _ in 0..3 {
            if let Err(e) = self.b.goto(url) {
                self.b.fail(&format!("cannot load {url}: {e}"));
            }
            let booted = self.b.poll(SHOWN, |b| match read_h1(b)? {
                Some(h) if h != "Loading" => Ok(()),
                seen => Err(format!("the <h1> is {seen:?}")),
            });
            let network_changed = self.b.console_log().iter().any(|l| l.contains("ERR_NETWORK_CHANGED"));
            if booted.is_ok() || !network_changed {
                return;
            }
            eprintln!("ui: the host's network changed while {url} loaded; loading it again");
        }
    }

    /// The text of the first `<h1>` in `<main id="main">`, if there is one.
    fn h1(&self) -> Result<Option<String>, String> {
        read_h1(&self.b)
    }

    /// Waits until the page's `<h1>` in `<main id="main">` says `title`.
    fn wait_h1(&mut self, title: &str) {
        self.b.wait(
            &format!("the page's <main id=\"main\"> <h1> to be {title:?}"),
            SHOWN,
            |b| match read_h1(b)? {
                Some(h) if h == title => Ok(()),
                seen => Err(format!("the <h1> is {seen:?}")),
            },
        );
    }

    /// Waits until `check` accepts the text of `<main id="main">`; that text.
    fn wait_main_text(&mut self, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
        let read = |b: &Browser| -> Result<String, String> {
            let v = b.execute(
                "const m = document.getElementById('main'); return m ? m.innerText : '';",
                vec![],
            )?;
            let text = v.as_str().unwrap_or_default().to_string();
            if check(&text) {
                Ok(text)
            } else {
                Err(format!("main says: {}", text.chars().take(600).collect::<String>()))
            }
        };
        self.b.wait(what, timeout, read)
    }

    /// Clicks the main navigation's link `name` and waits for its page.
    fn nav(&mut self, name: &str) {
        let xpath = format!(
            "//nav[@aria-label='Main']//a[normalize-space()={}]",
            xpath_literal(name)
        );
        let link = self.b.wait_shown(By::XPath(&xpath), SHOWN);
        if let Err(e) = self.b.click(&link) {
            self.b.fail(&format!("cannot click the nav link {name:?}: {e}"));
        }
        self.wait_h1(name);
    }

    /// Types `text` into the control labelled `label`, emptied first.
    fn fill(&mut self, label: &str, text: &str) {
        let field = self
            .b
            .wait(&format!("a control labelled {label:?}"), SHOWN, |b| b.by_label(label));
        let done = self.b.clear(&field).and_then(|_| self.b.send_keys(&field, text));
        if let Err(e) = done {
            self.b.fail(&format!("cannot type into {label:?}: {e}"));
        }
    }

    /// Clicks the `<button>` named `name` once it is shown.
    fn press_button(&mut self, name: &str) {
        let xpath = format!(
            "//button[normalize-space()={0} or @aria-label={0}]",
            xpath_literal(name)
        );
        let button = self.b.wait_shown(By::XPath(&xpath), SHOWN);
        if let Err(e) = self.b.click(&button) {
            self.b.fail(&format!("cannot click the button {name:?}: {e}"));
        }
    }

    /// The text of each body row of the table captioned `caption`.
    fn table_rows(b: &Browser, caption: &str) -> Result<Vec<String>, String> {
        let v = b.execute(
            "const want = arguments[0]; \
             const t = [...document.querySelectorAll('table')].find(t => t.caption && t.caption.innerText.trim() === want); \
             if (!t) return null; \
             const body = t.tBodies.length ? [...t.tBodies].flatMap(b => [...b.rows]) : [...t.rows].slice(1); \
             return body.map(r => r.innerText.replace(/\\s+/g, ' ').trim());",
            vec![json!(caption)],
        )?;
        match v {
            Value::Null => Err(format!("no table captioned {caption:?}")),
            v => Ok(v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()),
        }
    }

    /// Records a finding unless the table captioned `caption` has a column named each of `want`.
    fn expect_columns(&mut self, page: &str, caption: &str, want: &[&str]) {
        let v = self.b.execute(
            "const want = arguments[0]; \
             const t = [...document.querySelectorAll('table')].find(t => t.caption && t.caption.innerText.trim() === want); \
             return t ? [...t.querySelectorAll('th')].map(th => th.innerText.trim()) : null;",
            vec![json!(caption)],
        );
        let headers: Vec<String> = match v {
            Ok(Value::Array(a)) => a.iter().filter_map(|h| h.as_str().map(str::to_string)).collect(),
            other => {
                return self
                    .findings
                    .push(format!("CONTRACT {page}: no table captioned {caption:?} ({other:?})"))
            }
        };
        for w in want {
            if !headers.iter().any(|h| h.eq_ignore_ascii_case(w)) {
                self.findings.push(format!(
                    "CONTRACT {page}: the table {caption:?} has no column {w:?}; its headers: {headers:?}"
                ));
            }
        }
    }

    /// Waits for a row of the table captioned `caption` that `check` accepts; its text.
    fn wait_row(&mut self, caption: &str, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
        let caption = caption.to_string();
        self.b.wait(what, timeout, |b| {
            let rows = Ui::table_rows(b, &caption)?;
            rows.iter()
                .find(|r| check(r))
                .cloned()
                .ok_or_else(|| format!("rows of {caption:?}: {rows:?}"))
        })
    }

    fn screenshot(&mut self, name: &str) {
        self.b.screenshot(name);
    }

    /// Screenshots the page and records what the accessibility checks find on it: axe-core's
    /// WCAG 2 A and AA rules, the keyboard, the page's outline, a phone's screen.
    fn audit(&mut self, page: &str, nav: bool, primary: Control) {
        self.screenshot(page);
        self.axe(page);
        self.dark(page);
        self.structure(page, nav);
        self.keyboard(page, nav, primary);
        self.phone(page);
    }

    /// axe-core's WCAG 2 A and AA rules on the page as it is.
    fn axe(&mut self, page: &str) {
        self.run_axe(
            page,
            "{runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}, resultTypes: ['violations']}",
        );
    }

    /// The page in the dark color scheme: a screenshot, and axe-core's contrast rule.
    fn dark(&mut self, page: &str) {
        if let Err(e) = self.b.set_color_scheme("dark") {
            return self
                .findings
                .push(format!("A11Y {page}: cannot switch to the dark scheme: {e}"));
        }
        // Two frames: the page has restyled.
        let _ = self.b.execute_async(
            "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
            vec![],
        );
        self.screenshot(&format!("{page}-dark"));
        self.run_axe(
            &format!("{page} (dark)"),
            "{runOnly: {type: 'rule', values: ['color-contrast']}, resultTypes: ['violations']}",
        );
        if let Err(e) = self.b.set_color_scheme("light") {
            self.findings
                .push(format!("A11Y {page}: cannot switch back to the light scheme: {e}"));
        }
    }

    /// Runs axe-core with `options` (a JS object literal) and records its violations.
    fn run_axe(&mut self, page: &str, options: &str) {
        let loaded = self
            .b
            .execute("return typeof window.axe === 'object';", vec![])
            .map(|v| v == Value::Bool(true));
        if !matches!(loaded, Ok(true)) {
            let script = format!("{}\nreturn typeof window.axe;", self.axe);
            if let Err(e) = self.b.execute(&script, vec![]) {
                self.findings
                    .push(format!("A11Y {page}: axe-core could not be loaded: {e}"));
                return;
            }
        }
        let run = format!(
            "const done = arguments[arguments.length - 1]; \
             axe.run(document, {options}) \
               .then(r => done({{violations: r.violations.map(v => ({{id: v.id, impact: v.impact, help: v.help, \
                   targets: v.nodes.map(n => n.target.join(' '))}}))}})) \
               .catch(e => done({{error: String(e)}}));"
        );
        match self.b.execute_async(&run, vec![]) {
            Err(e) => self.findings.push(format!("A11Y {page}: axe-core did not run: {e}")),
            Ok(r) if r.get("error").is_some() => self
                .findings
                .push(format!("A11Y {page}: axe-core failed: {}", r["error"])),
            Ok(r) => {
                for v in r["violations"].as_array().into_iter().flatten() {
                    let targets: Vec<&str> = v["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    self.findings.push(format!(
                        "A11Y {page}: axe {} ({}): {} -- at {}",
                        v["id"].as_str().unwrap_or("?"),
                        v["impact"].as_str().unwrap_or("?"),
                        v["help"].as_str().unwrap_or("?"),
                        targets.join(" | ")
                    ));
                }
            }
        }
    }

    /// The contract's outline: a skip link first, one `<main id="main">` whose first heading is
    /// its `<h1>`, the main navigation with its links, labelled form controls.
    fn structure(&mut self, page: &str, nav: bool) {
        let v = self.b.execute(
            "const out = []; \
             const first = document.body.querySelector('a, button, input, select, textarea, [tabindex]'); \
             if (!first || first.tagName !== 'A' || first.innerText.trim() !== 'Skip to content') \
               out.push('the first control in the body is not a \"Skip to content\" link: ' + (first ? first.outerHTML.slice(0, 120) : 'none')); \
             const mains = document.querySelectorAll('main'); \
             if (mains.length !== 1 || mains[0].id !== 'main') out.push(mains.length + ' <main> elements; want one, id=\"main\"'); \
             const h = mains[0] && mains[0].querySelector('h1, h2, h3, h4, h5, h6'); \
             if (!h || h.tagName !== 'H1') out.push('the first heading in <main> is ' + (h ? h.tagName : 'missing') + ', not an <h1>'); \
             for (const c of document.querySelectorAll('input:not([type=hidden]), select, textarea')) { \
               const l = c.id && document.querySelector('label[for=\"' + CSS.escape(c.id) + '\"]'); \
               if (!l || !l.innerText.trim()) out.push('no visible <label for> for ' + c.outerHTML.slice(0, 120)); } \
             for (const t of document.querySelectorAll('main table')) \
               if (!t.caption || !t.caption.innerText.trim()) out.push('a table without a <caption>: ' + t.outerHTML.slice(0, 120)); \
             if (arguments[0]) { \
               const nav = document.querySelector('nav[aria-label=\"Main\"]'); \
               const names = nav ? [...nav.querySelectorAll('a')].map(a => a.innerText.trim()) : []; \
               for (const n of arguments[1]) if (!names.includes(n)) out.push('the Main nav has no link ' + JSON.stringify(n) + ' (has ' + JSON.stringify(names) + ')'); } \
             return out;",
            vec![json!(nav), json!(NAV)],
        );
        match v {
            Err(e) => self
                .findings
                .push(format!("A11Y {page}: the outline check did not run: {e}")),
            Ok(list) => {
                for p in list.as_array().into_iter().flatten() {
                    self.findings
                        .push(format!("A11Y {page}: {}", p.as_str().unwrap_or_default()));
                }
            }
        }
    }

    /// Reloads the page and presses Tab from the top: the skip link comes first, then every
    /// main navigation link and the page's primary control are reached, each with a visible
    /// focus indicator.
    fn keyboard(&mut self, page: &str, nav: bool, primary: Control) {
        let url = match self.b.url() {
            Ok(u) => u,
            Err(e) => return self.findings.push(format!("KEYBOARD {page}: no address: {e}")),
        };
        let Ok(Some(title)) = self.h1() else {
            return self.findings.push(format!("KEYBOARD {page}: no <h1> to come back to"));
        };
        self.load(&url);
        self.wait_h1(&title);
        if let Control::Button(name) | Control::Link(name) = primary {
            let tag = if matches!(primary, Control::Button(_)) {
                "button"
            } else {
                "a"
            };
            let xpath = format!(
                "//{tag}[starts-with(normalize-space(), {0}) or starts-with(@aria-label, {0})]",
                xpath_literal(name)
            );
            let shown = self.b.poll(SHOWN, |b| match b.find_all(By::XPath(&xpath))?.len() {
                0 => Err("not there".to_string()),
                _ => Ok(()),
            });
            if shown.is_err() {
                return self
                    .findings
                    .push(format!("KEYBOARD {page}: no primary control {name:?} after a reload"));
            }
        }
        // Tab starts after the focused element (a page may focus a field by itself): from a
        // point before everything else, as a user who just opened the page.
        if let Err(e) = self.b.execute(
            "const s = document.createElement('span'); s.tabIndex = -1; document.body.prepend(s); s.focus();",
            vec![],
        ) {
            return self
                .findings
                .push(format!("KEYBOARD {page}: cannot put the focus at the top: {e}"));
        }
        let mut wanted: Vec<(String, bool)> = vec![];
        if nav {
            wanted.extend(NAV.iter().map(|n| (n.to_string(), true)));
        }
        match primary {
            Control::Button(n) | Control::Link(n) => wanted.push((n.to_string(), false)),
            Control::None => {}
        }
        let probe = "const el = document.activeElement; \
             if (!el || el === document.body || el === document.documentElement) return null; \
             const cs = getComputedStyle(el); \
             const ring = (cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0) || (cs.boxShadow && cs.boxShadow !== 'none'); \
             const r = el.getBoundingClientRect(); \
             return {tag: el.tagName.toLowerCase(), \
               name: (el.getAttribute('aria-label') || el.innerText || el.value || '').trim().replace(/\\s+/g, ' '), \
               nav: !!el.closest('nav[aria-label=\"Main\"]'), \
               visible: ring && el.matches(':focus-visible') && r.width > 0 && r.height > 0};";
        let mut seen: Vec<String> = vec![];
        let mut reached: Vec<String> = vec![];
        let mut invisible: Vec<String> = vec![];
        let mut first: Option<String> = None;
        for _ in 0..120 {
            if let Err(e) = self.b.press(keys::TAB) {
                return self.findings.push(format!("KEYBOARD {page}: Tab: {e}"));
            }
            let Ok(v) = self.b.execute(probe, vec![]) else { continue };
            if v.is_null() {
                continue;
            }
            let name = v["name"].as_str().unwrap_or_default().to_string();
            let label = format!("{} {name:?}", v["tag"].as_str().unwrap_or("?"));
            if first.is_none() {
                first = Some(label.clone());
            } else if first.as_ref() == Some(&label) {
                break; // Around once.
            }
            if v["visible"] != true && !invisible.contains(&label) {
                invisible.push(label.clone());
            }
            for (want, in_nav) in &wanted {
                let named = name == *want || (!*in_nav && name.starts_with(&format!("{want} ")));
                if named && (!*in_nav || v["nav"] == true) && !reached.contains(want) {
                    reached.push(want.clone());
                }
            }
            seen.push(label);
            if reached.len() == wanted.len() && seen.len() > 1 {
                break;
            }
        }
        if let Some(f) = &first {
            if f != "a \"Skip to content\"" {
                self.findings.push(format!(
                    "KEYBOARD {page}: the first Tab reaches {f}, not the \"Skip to content\" link"
                ));
            }
        }
        let missed: Vec<&String> = wanted.iter().map(|(w, _)| w).filter(|w| !reached.contains(w)).collect();
        if !missed.is_empty() {
            self.findings.push(format!(
                "KEYBOARD {page}: Tab from the top never reaches {missed:?}; it went through {seen:?}"
            ));
        }
        if !invisible.is_empty() {
            self.findings.push(format!(
                "KEYBOARD {page}: no visible focus indicator (outline or box-shadow, :focus-visible) on {invisible:?}"
            ));
        }
        // Leave the page as the flow had it: no focus ring left on a control.
        self.load(&url);
        self.wait_h1(&title);
    }

    /// At a phone's size the page does not scroll sideways.
    fn phone(&mut self, page: &str) {
        if let Err(e) = self.b.set_window_size(PHONE) {
            return self.findings.push(format!("PHONE {page}: cannot resize: {e}"));
        }
        let measured = self.b.poll(SHOWN, |b| {
            let v = b.execute(
                "return {inner: window.innerWidth, scroll: document.documentElement.scrollWidth, \
                   body: document.body.scrollWidth};",
                vec![],
            )?;
            if v["inner"].as_u64().is_some_and(|w| w <= u64::from(PHONE.0)) {
                Ok(v)
            } else {
                Err(format!("not resized yet: {v}"))
            }
        });
        let measured = match measured {
            Ok(m) => m,
            Err(e) => {
                self.findings
                    .push(format!("PHONE {page}: the window did not take a phone's size: {e}"));
                Value::Null
            }
        };
        self.b.screenshot(&format!("{page}-phone"));
        let inner = measured["inner"].as_u64().unwrap_or(0);
        let scroll = measured["scroll"].as_u64().unwrap_or(0);
        if scroll > inner {
            let wide = self
                .b
                .execute(
                    "const w = window.innerWidth; return [...document.querySelectorAll('body *')] \
                       .filter(e => e.getBoundingClientRect().right > w + 1 && !e.closest('[tabindex]')) \
                       .slice(0, 5).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + \
                         (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : ''));",
                    vec![],
                )
                .unwrap_or(Value::Null);
            self.findings.push(format!(
                "PHONE {page}: at {}x{} the page scrolls sideways: document.scrollWidth {scroll} > window width {inner}; too wide: {wide}",
                PHONE.0, PHONE.1
            ));
        }
        if let Err(e) = self.b.set_window_size(tepui_e2e::browser::DESKTOP) {
            self.findings.push(format!("PHONE {page}: cannot resize back: {e}"));
        }
        let _ = self.b.poll(SHOWN, |b| {
            let w = b.execute("return window.innerWidth;", vec![])?;
            if w.as_u64().is_some_and(|w| w > u64::from(PHONE.0)) {
                Ok(())
            } else {
                Err(format!("still {w}"))
            }
        });
    }

    /// The value `tepui.token` holds in the page's sessionStorage.
    fn stored_token(&self) -> Result<Option<String>, String> {
        let v = self
            .b
            .execute("return sessionStorage.getItem('tepui.token');", vec![])?;
        Ok(v.as_str().map(str::to_string))
    }

    /// The page's calls to the API (anything not under /ui/) and their statuses.
    fn api_calls(&self) -> Result<Vec<(String, u64)>, String> {
        let v = self.b.execute(
            "return performance.getEntriesByType('resource') \
               .map(e => ({path: new URL(e.name).pathname, status: e.responseStatus || 0})) \
               .filter(e => !e.path.startsWith('/ui/') && e.path !== '/ui' && e.path !== '/favicon.ico');",
            vec![],
        )?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["path"].as_str().unwrap_or_default().to_string(),
                    e["status"].as_u64().unwrap_or(0),
                )
            })
            .collect())
    }

    /// Logs in on /ui/login with `token` and waits until the page is no longer the login page.
    fn log_in(&mut self, token: &str) {
        self.open("/ui/login");
        self.wait_h1("Log in");
        self.fill("API token", token);
        self.press_button("Log in");
        self.b.wait("the login page to give way", SHOWN, |b| match read_h1(b)? {
            Some(h) if h != "Log in" => Ok(h),
            seen => Err(format!("the <h1> is still {seen:?}")),
        });
    }
}

/// The text of the first `<h1>` in `<main id="main">`, if there is one.
fn read_h1(b: &Browser) -> Result<Option<String>, String> {
    let v = b.execute(
        "const m = document.getElementById('main'); const h = m && m.querySelector('h1'); \
         return h ? h.innerText.trim() : null;",
        vec![],
    )?;
    Ok(v.as_str().map(str::to_string))
}

#[test]
fn without_a_token_only_the_login_page_and_a_login_link_logs_in() {
    need_root();
    tepui_e2e::browser::require_browser();
    let sb = Sandbox::new("ui-login");
    let (_dev, _) = spawn_dev(
        &sb,
        "ui1",
        LOGIN_IP,
        "36200-36219",
        ("tpe2e-ui1", "10.214.62.0/25"),
        START,
    );
    let addr = http_addr(LOGIN_IP);
    let mut ui = Ui::new("login", LOGIN_IP);
    let mut report = Report::default();

    // The server's side: the API refuses a caller without a token; / leads to the UI.
    let anonymous = Marathon::with_authorization(&addr, None);
    for path in ["/v2/apps", "/v1/acl/token/self", "/v1/nodes"] {
        let r = anonymous.call(Method::GET, path, None);
        assert_eq!(r.status, 401, "GET {path} without a token: {}", r.text);
    }
    report.step("GET / redirects to /ui/", || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let (status, location) = rt.block_on(async {
            let r = client.get(format!("http://{addr}/")).send().await.unwrap();
            (
                r.status().as_u16(),
                r.headers()
                    .get("location")
                    .map(|l| l.to_str().unwrap_or("").to_string()),
            )
        });
        assert_eq!((status, location.as_deref()), (303, Some("/ui/")), "GET /");
    });

    report.step(
        "the shell and its assets: content types, caching, security headers",
        || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let get = |path: &str| {
                rt.block_on(async {
                    let r = client.get(format!("http://{addr}{path}")).send().await.unwrap();
                    let status = r.status().as_u16();
                    let headers = r.headers().clone();
                    (status, headers, r.text().await.unwrap_or_default())
                })
            };
            let header = |h: &reqwest::header::HeaderMap, name: &str| {
                h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
            };
            let mut shell = String::new();
            for path in ["/ui", "/ui/", "/ui/services/shop/web", "/ui/login"] {
                let (status, h, body) = get(path);
                assert_eq!(status, 200, "GET {path}");
                assert!(header(&h, "content-type").starts_with("text/html"), "GET {path}: {h:?}");
                assert_eq!(header(&h, "content-security-policy"), CSP, "GET {path}");
                assert_eq!(header(&h, "x-content-type-options"), "nosniff", "GET {path}");
                assert_eq!(header(&h, "referrer-policy"), "no-referrer", "GET {path}");
                shell = body;
            }
            let assets: Vec<&str> = shell
                .split(['"', '\''])
                .filter(|w| w.starts_with("/ui/assets/"))
                .collect();
            assert!(!assets.is_empty(), "the shell loads assets from /ui/assets/: {shell}");
            for asset in assets {
                let (status, h, _) = get(asset);
                assert_eq!(status, 200, "GET {asset}");
                let want = match asset.rsplit('.').next() {
                    Some("css") => "text/css",
                    Some("js") => "text/javascript",
                    Some("svg") => "image/svg+xml",
                    _ => "",
                };
                let ct = header(&h, "content-type");
                assert!(
                    ct.starts_with(want) || (want == "text/javascript" && ct.starts_with("application/javascript")),
                    "GET {asset}: content type {ct:?}"
                );
                assert!(!header(&h, "etag").is_empty(), "GET {asset}: an ETag");
                assert!(!header(&h, "cache-control").is_empty(), "GET {asset}: a Cache-Control");
                assert_eq!(header(&h, "x-content-type-options"), "nosniff", "GET {asset}");
            }
            assert_eq!(get("/ui/assets/no-such-file.js").0, 404, "an unknown asset");
        },
    );

    // Every route: the login page and nothing else, and no API call that succeeds.
    report.step("every /ui/ route is the login page without a token", || {
        for route in ROUTES {
            ui.open(&format!("/ui/{route}"));
            ui.wait_h1("Log in");
            let input = ui.b.by_label("API token");
            assert!(input.is_ok(), "/ui/{route}: no input labelled \"API token\": {input:?}");
            let button = ui.b.button("Log in");
            assert!(button.is_ok(), "/ui/{route}: no button \"Log in\": {button:?}");
            let tables = ui.b.find_all(By::Css("main table")).map(|t| t.len()).unwrap_or(0);
            assert_eq!(tables, 0, "/ui/{route}: the login page shows tables of another page");
            let nav_links = ui
                .b
                .execute(
                    "const n = document.querySelector('nav[aria-label=\"Main\"]'); \
                     return n && n.offsetParent !== null ? n.querySelectorAll('a').length : 0;",
                    vec![],
                )
                .unwrap_or(Value::Null);
            assert_eq!(nav_links, json!(0), "/ui/{route}: the main navigation is shown before logging in");
            let log_out = ui.b.button("Log out").and_then(|b| ui.b.is_displayed(&b)).unwrap_or(false);
            if log_out && !ui.findings.iter().any(|f| f.contains("\"Log out\"")) {
                ui.findings.push(format!(
                    "CONTRACT /ui/{route}: a \"Log out\" button is shown with no token (the login page and nothing else)"
                ));
            }
            let calls = ui.api_calls().unwrap();
            let succeeded: Vec<_> = calls.iter().filter(|(_, s)| (200..300).contains(s)).collect();
            assert!(
                succeeded.is_empty(),
                "/ui/{route}: API calls succeeded without a token: {succeeded:?}"
            );
            if !calls.is_empty() {
                eprintln!("ui: /ui/{route} without a token called {calls:?}");
            }
        }
        ui.open("/ui/login");
        ui.wait_h1("Log in");
        ui.audit("login", false, Control::Button("Log in"));
    });

    report.step("a wrong token is refused with an alert", || {
        ui.open("/ui/login");
        ui.wait_h1("Log in");
        ui.fill("API token", "not-a-token.really-not");
        ui.press_button("Log in");
        let alert = ui.b.wait("an alert saying the token is refused", SHOWN, |b| {
            for e in b.find_all(By::Css("[role=alert]"))? {
                let t = b.text(&e)?;
                if !t.trim().is_empty() {
                    return Ok(t);
                }
            }
            Err("no role=alert with text".to_string())
        });
        assert!(!alert.trim().is_empty());
        assert_eq!(ui.h1().unwrap().as_deref(), Some("Log in"));
        assert_eq!(ui.stored_token().unwrap(), None, "a refused token is not kept");
        ui.screenshot("login-refused");
        ui.axe("login-refused");
    });

    report.step("log in with the API token, then log out", || {
        ui.log_in(API_TOKEN);
        ui.wait_h1("Overview");
        assert_eq!(ui.stored_token().unwrap().as_deref(), Some(API_TOKEN));
        ui.screenshot("overview-after-login");
        ui.press_button("Log out");
        ui.wait_h1("Log in");
        assert_eq!(ui.stored_token().unwrap(), None, "logging out forgets the token");
        // And the app's pages are closed again.
        ui.open("/ui/services");
        ui.wait_h1("Log in");
    });

    report.step("a token revoked while logged in leads back to the login page", || {
        let made = token_with_policy(&addr, "ui-readers", &["--capability", "read"], "ui-reader");
        let secret = made["secret"].as_str().expect("the secret is shown").to_string();
        let accessor = made["accessor"].as_str().expect("the accessor is shown").to_string();
        ui.log_in(&secret);
        ui.wait_h1("Overview");
        tepui(&["acl", "token", "revoke", &accessor, "--addr", &addr]).ok();
        let services = ui.b.wait_shown(
            By::XPath("//nav[@aria-label='Main']//a[normalize-space()='Services']"),
            SHOWN,
        );
        ui.b.click(&services).unwrap();
        ui.wait_h1("Log in");
        ui.b.execute("sessionStorage.clear();", vec![]).unwrap();
    });

    report.step("the link `tepui ui --no-open` prints logs in", || {
        // A management token cannot be derived from: an operator's own token, with policies.
        let made = token_with_policy(
            &addr,
            "ui-operators",
            &["--capability", "read,write,logs,exec"],
            "ui-operator",
        );
        let operator = made["secret"].as_str().expect("the secret is shown").to_string();
        let out = tepui(&["ui", "--no-open", "--addr", &addr, "--api-token", &operator]).ok();
        let link = out
            .stdout
            .split_whitespace()
            .find(|w| w.contains("/ui/login#token="))
            .unwrap_or_else(|| panic!("no /ui/login#token= link in:\n{out}"))
            .to_string();
        let token = link.split("#token=").nth(1).unwrap_or_default().to_string();
        assert!(!token.is_empty(), "{link}");
        assert_ne!(
            token, API_TOKEN,
            "the link carries a short-lived token, not the management one"
        );
        let who = Marathon::with_authorization(&addr, Some(&format!("Bearer {token}")))
            .get("/v1/acl/token/self")
            .unwrap_or_else(|e| panic!("the link's token is valid: {e}"));
        let accessor = who["accessor"].as_str().unwrap_or_default().to_string();
        let listed: Vec<Value> = tepui(&["acl", "token", "ls", "-o", "json", "--addr", &addr])
            .ok()
            .json();
        let expires = listed
            .iter()
            .find(|t| t["accessor"] == accessor.as_str())
            .and_then(|t| t["expires_at_ms"].as_u64())
            .unwrap_or_else(|| panic!("the link's token {accessor} is listed with an expiry: {listed:?}"));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            expires > now_ms && expires <= now_ms + 16 * 60 * 1000,
            "the link's token lives 15 minutes: expires at {expires}, now {now_ms}"
        );
        // As a browser opens it: a new page.
        ui.b.goto("about:blank").unwrap();
        ui.load(&link);
        ui.wait_h1("Overview");
        let url = ui.b.url().unwrap();
        assert!(
            !url.contains('#') && !url.contains(&token),
            "the fragment is removed: {url}"
        );
        assert_eq!(ui.stored_token().unwrap().as_deref(), Some(token.as_str()));
        ui.screenshot("overview-from-link");

        // Pasted into a tab that shows the login page already: only the fragment changes.
        ui.press_button("Log out");
        ui.wait_h1("Log in");
        ui.b.goto(&link).unwrap();
        let pasted = ui.b.poll(SHOWN, |b| match read_h1(b)? {
            Some(h) if h == "Overview" => Ok(()),
            seen => Err(format!("the <h1> is {seen:?}")),
        });
        if let Err(seen) = pasted {
            ui.findings.push(format!(
                "CONTRACT /ui/login#token=...: the link does not log in when the login page is already open \
                 (a same-document navigation: only the fragment changes, no hashchange handling); {seen}"
            ));
        }
    });

    report.finish(&ui);
}

/// The app as a user would type it into the editor.
fn app_definition(marker: &str) -> Value {
    json!({
        "id": APP_ID,
        "instances": 1,
        "cpus": 0.05,
        "mem": 16,
        "container": {"type": "MESOS", "docker": {"image": IMAGE}},
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 0, "name": "http"}],
        "cmd": format!("echo {LOG_MARKER}; mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p $PORT0 -h /tmp/www"),
        "env": {MARKER_VAR: marker},
        "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": VHOST},
        "healthChecks": [{
            "protocol": "HTTP", "path": "/index.html", "portIndex": 0,
            "gracePeriodSeconds": 10, "intervalSeconds": 1, "timeoutSeconds": 2,
            "maxConsecutiveFailures": 3, "delaySeconds": 0
        }]
    })
}

/// The app's running tasks with passing checks, and all its tasks, from the API.
fn app_counts(m: &Marathon) -> Result<(usize, usize, Vec<String>), String> {
    let app = m.get(&format!("/v2/apps{APP_ID}?embed=apps.tasks"))?["app"].clone();
    let tasks = app["tasks"].as_array().cloned().unwrap_or_default();
    let healthy = tasks
        .iter()
        .filter(|t| {
            t["state"] == "TASK_RUNNING"
                && t["healthCheckResults"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty() && r.iter().all(|h| h["alive"] == true))
        })
        .count();
    let ids = tasks
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    Ok((healthy, tasks.len(), ids))
}

fn wait_healthy(m: &Marathon, n: usize) -> Vec<String> {
    tepui_e2e::wait_for(&format!("{APP_ID}: {n} healthy"), SETTLE, || {
        let (healthy, all, ids) = app_counts(m)?;
        if healthy == n && all == n {
            Ok(ids)
        } else {
            Err(format!("{healthy} healthy of {all}"))
        }
    })
}

#[test]
fn apps_jobs_tasks_and_agents_are_operated_from_the_browser() {
    need_root();
    require_busybox().expect("busybox-static is installed (e2e/setup.sh)");
    tepui_e2e::browser::require_browser();
    let marked = MarkedProcesses::new("ui");
    let sb = Sandbox::new("ui-ops");
    let archive = sb.join("busybox.tar");
    build_docker_archive(&archive, IMAGE).expect("the docker archive builds");
    let (_dev, _) = spawn_dev(
        &sb,
        OPS_NODE,
        OPS_IP,
        "36220-36259",
        ("tpe2e-ui2", "10.214.62.128/25"),
        START,
    );
    let addr = http_addr(OPS_IP);
    tepui(&[
        "image",
        "import",
        &archive.display().to_string(),
        "--agent",
        OPS_NODE,
        "--addr",
        &addr,
    ])
    .ok();
    let api = Marathon::new(&addr);
    let mut ui = Ui::new("ops", OPS_IP);
    let mut report = Report::default();

    ui.log_in(API_TOKEN);
    ui.wait_h1("Overview");

    report.step("overview: agents and servers", || {
        ui.wait_row("Agents", "the agent in the Agents table", SHOWN, |r| {
            r.contains(OPS_NODE)
        });
        ui.wait_row("Servers", "the leader in the Servers table", SHOWN, |r| {
            r.contains("leader")
        });
        let drain = format!("Drain {OPS_NODE}");
        ui.b.wait(&format!("a button named {drain:?}"), SHOWN, |b| {
            b.find(By::XPath(&format!(
                "//button[@aria-label={0} or normalize-space()={0}]",
                xpath_literal(&drain)
            )))
        });
        ui.audit("overview", true, Control::Button("Drain"));
    });

    // The editor: a validation error at its field, malformed JSON, then a good app.
    let app = app_definition(marked.value());
    report.step("new service: a validation error is shown at its field", || {
        ui.nav("Services");
        let new = ui.b.wait_shown(By::XPath("//a[normalize-space()='New service']"), SHOWN);
        ui.b.click(&new).unwrap();
        ui.wait_h1("New service");
        let mut bad = app.clone();
        bad["instances"] = json!(-1);
        ui.fill("App definition (JSON)", &bad.to_string());
        ui.press_button("Deploy");
        let errors = ui.b.wait("a .field-error for /instances", SHOWN, |b| {
            let mut seen = vec![];
            for e in b.find_all(By::Css(".field-error"))? {
                let t = b.text(&e)?;
                if t.starts_with("/instances: ") && t.len() > "/instances: ".len() {
                    let role = b.attribute(&e, "role")?;
                    let id = b.attribute(&e, "id")?;
                    return Ok((t, role, id));
                }
                seen.push(t);
            }
            Err(format!("field errors shown: {seen:?}"))
        });
        assert_eq!(errors.1.as_deref(), Some("alert"), "the field error has role=alert: {errors:?}");
        let area = ui.b.by_label("App definition (JSON)").unwrap();
        assert_eq!(ui.b.attribute(&area, "aria-invalid").unwrap().as_deref(), Some("true"));
        let described = ui.b.attribute(&area, "aria-describedby").unwrap().unwrap_or_default();
        let error_id = errors.2.unwrap_or_default();
        let points_at_error = ui
            .b
            .execute(
                "const ids = arguments[0].split(/\\s+/).filter(Boolean); \
                 return ids.some(id => { const e = document.getElementById(id); \
                   return e && (e.classList.contains('field-error') || !!e.querySelector('.field-error')); });",
                vec![json!(described)],
            )
            .unwrap();
        assert!(
            points_at_error == json!(true),
            "the textarea's aria-describedby {described:?} points at the errors (the /instances error has id {error_id:?})"
        );
        assert!(
            api.try_call(Method::GET, &format!("/v2/apps{APP_ID}"), None).unwrap().status == 404,
            "nothing was deployed"
        );
        ui.audit("new-service-invalid", true, Control::Button("Deploy"));

        ui.fill("App definition (JSON)", &format!("{{\"id\": \"{APP_ID}\", \"instances\": }}"));
        ui.press_button("Deploy");
        let parse = ui.b.wait("one error for malformed JSON", SHOWN, |b| {
            let errors = b.find_all(By::Css(".field-error"))?;
            let texts: Vec<String> = errors.iter().filter_map(|e| b.text(e).ok()).collect();
            if texts.len() == 1 && texts[0].chars().any(|c| c.is_ascii_digit()) {
                Ok(texts[0].clone())
            } else {
                Err(format!("field errors: {texts:?}"))
            }
        });
        eprintln!("ui: malformed JSON: {parse}");
        ui.screenshot("new-service-malformed");
    });

    let deployed = report.step("new service: deploy an app from the editor", || {
        ui.open("/ui/services/_new");
        ui.wait_h1("New service");
        ui.fill("App definition (JSON)", &app.to_string());
        ui.press_button("Deploy");
        tepui_e2e::wait_for("the app to be created", SHOWN, || {
            match api.try_call(Method::GET, &format!("/v2/apps{APP_ID}"), None)?.status {
                200 => Ok(()),
                s => Err(format!("GET /v2/apps{APP_ID}: {s}")),
            }
        });
    });
    if !deployed {
        // So that the rest can still be checked.
        let r = api.call(Method::POST, "/v2/apps", Some(&app));
        assert!(
            r.status == 201 || r.status == 409,
            "the app is created through the API: {}",
            r.text
        );
    }

    report.step("services: the app, healthy, on its page", || {
        ui.nav("Services");
        ui.wait_row("Services", "the app healthy in the Services table", SETTLE, |r| {
            r.contains(APP_ID) && r.replace(' ', "").contains("1/1")
        });
        ui.expect_columns("services", "Services", &["Health", "Instances", "Status"]);
        ui.audit("services", true, Control::Link("New service"));
        let link = ui.b.wait_shown(
            By::XPath(&format!(
                "//table[caption[normalize-space()='Services']]//a[normalize-space()='{APP_ID}']"
            )),
            SHOWN,
        );
        ui.b.click(&link).unwrap();
        ui.wait_h1(APP_ID);
        assert!(ui.b.url().unwrap().ends_with(APP_PAGE), "{:?}", ui.b.url());
        ui.wait_main_text("the app to be shown healthy", SETTLE, |t| {
            t.contains("Healthy") || t.contains("1 of 1 healthy")
        });
        for section in [
            "Instances",
            "Deployments",
            "Versions",
            "Configuration",
            "DNS and routes",
        ] {
            let h2 = ui.b.find(By::XPath(&format!(
                "//main//h2[normalize-space()={}]",
                xpath_literal(section)
            )));
            assert!(h2.is_ok(), "the app page has a section {section:?}");
        }
        ui.wait_row("Instances", "a running instance", SHOWN, |r| {
            r.to_lowercase().contains("running")
        });
        ui.expect_columns("app", "Instances", &["State", "Health", "Agent", "Ports"]);
    });

    let scaled = report.step("app page: scale to 2", || {
        ui.open(APP_PAGE);
        ui.wait_h1(APP_ID);
        ui.fill("Instances", "2");
        ui.press_button("Scale");
        wait_healthy(&api, 2);
        ui.b.wait("two running instances in the Instances table", SETTLE, |b| {
            let rows = Ui::table_rows(b, "Instances")?;
            let running = rows.iter().filter(|r| r.to_lowercase().contains("running")).count();
            if running == 2 {
                Ok(())
            } else {
                Err(format!("rows: {rows:?}"))
            }
        });
        ui.wait_main_text("the app to be shown healthy", SETTLE, |t| {
            t.contains("Healthy") || t.contains("2 of 2 healthy")
        });
        ui.audit("app", true, Control::Button("Scale"));
    });
    if !scaled {
        api.call(
            Method::PUT,
            &format!("/v2/apps{APP_ID}"),
            Some(&json!({"instances": 2})),
        );
    }
    let tasks = wait_healthy(&api, 2);
    let task = tasks[0].clone();

    report.step("task page: the logs show what the task printed", || {
        ui.open(APP_PAGE);
        ui.wait_h1(APP_ID);
        let link = ui.b.wait_shown(
            By::XPath(&format!(
                "//table[caption[normalize-space()='Instances']]//a[normalize-space()={}]",
                xpath_literal(&task)
            )),
            SHOWN,
        );
        ui.b.click(&link).unwrap();
        ui.wait_h1(&task);
        ui.b.wait("the marker in the Logs region", SETTLE, |b| {
            let log = b.find(By::Css("[role=log][aria-label='Logs']"))?;
            let text = b.text(&log)?;
            if text.contains(LOG_MARKER) {
                Ok(())
            } else {
                Err(format!("Logs: {text:?}"))
            }
        });
        assert!(
            ui.b.find(By::XPath("//main//h2[normalize-space()='Logs']")).is_ok(),
            "an h2 \"Logs\""
        );
    });

    report.step("task page: a terminal runs a command", || {
        ui.open(&format!("/ui/tasks/{task}"));
        ui.wait_h1(&task);
        ui.press_button("Open terminal");
        let input = ui.b.wait("the terminal input", SHOWN, |b| b.by_label("Terminal input"));
        // The shell computes 42: the tty's echo of the line alone does not contain it.
        ui.b.wait("the terminal to take input", SHOWN, |b| {
            b.send_keys(&input, &format!("echo ui-term-$((6*7))-ok{}", keys::ENTER))
                .map_err(|e| {
                    // What the page says about the session (it may have ended).
                    let said = b
                        .execute(
                            "return [...document.querySelectorAll('main [role=alert], main [role=status]')] \
                               .map(e => e.innerText.trim()).filter(Boolean).join(' | ');",
                            vec![],
                        )
                        .unwrap_or(Value::Null);
                    format!("{e}; the page says: {said}")
                })
        });
        ui.b.wait("the command's output in Terminal output", SHOWN, |b| {
            let out = b.find(By::Css("[role=log][aria-label='Terminal output']"))?;
            let text = b.text(&out)?;
            if text.contains("ui-term-42-ok") {
                Ok(())
            } else {
                Err(format!("Terminal output: {text:?}"))
            }
        });
        ui.audit("task", true, Control::Button("Open terminal"));
    });

    report.step("task page: the sandbox's files", || {
        ui.open(&format!("/ui/tasks/{task}"));
        ui.wait_h1(&task);
        ui.wait_row("Files", "the sandbox's files", SHOWN, |r| r.contains("stdout"));
        let stdout = ui.b.wait_shown(
            By::XPath("//table[caption[normalize-space()='Files']]//a[normalize-space()='stdout']"),
            SHOWN,
        );
        ui.b.click(&stdout).unwrap();
        ui.b.wait("stdout's contents", SHOWN, |b| {
            let pre = b.find(By::Css("pre[aria-label='File contents']"))?;
            let text = b.text(&pre)?;
            if text.contains(LOG_MARKER) {
                Ok(())
            } else {
                Err(format!("File contents: {text:?}"))
            }
        });
        ui.screenshot("task-files");
    });

    report.step("network: the app's DNS name and route", || {
        ui.nav("Network");
        ui.wait_main_text("the app's name and its virtual host", SHOWN, |t| {
            t.contains(&format!("{}.marathon.mesos", &APP_ID[1..])) && t.contains(VHOST)
        });
        ui.audit("network", true, Control::None);
    });

    report.step("jobs: create, run now, history", || {
        ui.nav("Jobs");
        let new = ui.b.wait_shown(By::XPath("//a[normalize-space()='New job']"), SHOWN);
        ui.audit("jobs", true, Control::Link("New job"));
        let new = ui.b.find(By::XPath("//a[normalize-space()='New job']")).unwrap_or(new);
        ui.b.click(&new).unwrap();
        ui.b.wait("/ui/jobs/_new", SHOWN, |b| {
            let u = b.url()?;
            if u.ends_with("/ui/jobs/_new") {
                Ok(())
            } else {
                Err(u)
            }
        });
        let job = json!({"id": "ui-report", "description": "made in the browser",
            "run": {"cmd": "echo report done", "cpus": 0.05, "mem": 32, "docker": {"image": IMAGE},
                    "env": {MARKER_VAR: marked.value()}}});
        ui.fill("Job definition (JSON)", &job.to_string());
        ui.audit("new-job", true, Control::Button("Create"));
        ui.fill("Job definition (JSON)", &job.to_string());
        ui.press_button("Create");
        tepui_e2e::wait_for("the job to be created", SHOWN, || api.get("/v1/jobs/ui-report"));
        ui.open("/ui/jobs/ui-report");
        ui.wait_h1("ui-report");
        ui.press_button("Run now");
        ui.wait_row("History", "a successful run in History", SETTLE, |r| {
            r.to_lowercase().contains("succe")
        });
        let graph = ui.b.find(By::Css("svg[role=img][aria-label='Dependency graph']"));
        assert!(graph.is_ok(), "the job page draws its dependency graph");
        assert!(
            ui.b.find(By::XPath("//main//h2[normalize-space()='Dependencies']"))
                .is_ok(),
            "an h2 \"Dependencies\""
        );
        ui.audit("job", true, Control::Button("Run now"));
        ui.nav("Jobs");
        ui.wait_row("Jobs", "the job's last result in the Jobs table", SHOWN, |r| {
            r.contains("ui-report") && r.to_lowercase().contains("succe")
        });
        ui.expect_columns("jobs", "Jobs", &["Schedule", "Next run", "Last result"]);
    });

    report.step("services: a new app appears with no reload", || {
        ui.nav("Services");
        ui.b.execute("window.__e2eSamePage = true;", vec![]).unwrap();
        let r = api.call(
            Method::POST,
            "/v2/apps",
            Some(&json!({"id": "/ui-events", "cmd": "sleep 1000", "instances": 0, "cpus": 0.01, "mem": 8})),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        ui.wait_row("Services", "the new app in the Services table, live", SHOWN, |r| {
            r.contains("/ui-events")
        });
        let same = ui.b.execute("return window.__e2eSamePage === true;", vec![]).unwrap();
        assert_eq!(same, json!(true), "the page was not reloaded");
    });

    report.step("events: the stream shows what happens", || {
        ui.nav("Events");
        ui.audit("events", true, Control::None);
        // Something happens while the page is open: an app is deleted (a deployment).
        let r = api.call(Method::DELETE, "/v2/apps/ui-events", None);
        assert_eq!(r.status, 200, "{}", r.text);
        ui.wait_main_text("a deployment event", SHOWN, |t| t.contains("deployment_"));
        // And the cluster's stream (/v1/events): a job run, its task, its job's new history.
        let r = api.call(Method::POST, "/v1/jobs/ui-report/runs", Some(&json!({})));
        assert_eq!(r.status, 201, "{}", r.text);
        ui.wait_main_text("the run's and its task's events", SETTLE, |t| {
            t.contains("job_run_changed") && t.contains("task_changed") && t.contains("job ui-report")
        });
        ui.screenshot("events-live");
    });

    report.step("metrics: plots of the last hour", || {
        ui.nav("Metrics");
        ui.b.wait("a plot (svg or canvas) in main", SHOWN, |b| {
            let n = b.find_all(By::Css("main svg, main canvas"))?.len();
            if n > 0 {
                Ok(())
            } else {
                Err("no svg or canvas in main".to_string())
            }
        });
        ui.audit("metrics", true, Control::None);
    });

    report.step("tasks: the list", || {
        ui.nav("Tasks");
        ui.wait_main_text("the app's tasks", SHOWN, |t| t.contains(&task));
        ui.audit("tasks", true, Control::None);
    });

    report.step("app page: roll back to the first version", || {
        let versions = api.get(&format!("/v2/apps{APP_ID}/versions")).unwrap();
        let first = versions["versions"]
            .as_array()
            .and_then(|v| v.iter().filter_map(Value::as_str).min().map(str::to_string))
            .unwrap_or_else(|| panic!("the app's versions: {versions}"));
        ui.open(APP_PAGE);
        ui.wait_h1(APP_ID);
        ui.press_button(&format!("Roll back to {first}"));
        // A dialog may ask first.
        if let Ok(confirm) =
            ui.b.find(By::XPath("//dialog[@open]//button[normalize-space()='Confirm']"))
        {
            ui.b.click(&confirm).unwrap();
        }
        wait_healthy(&api, 1);
        ui.wait_main_text("the app shown with one instance", SETTLE, |t| {
            t.contains("1 of 1") && (t.contains("Healthy") || t.contains("1 of 1 healthy"))
        });
    });

    report.step("overview: drain the agent", || {
        ui.nav("Overview");
        let name = format!("Drain {OPS_NODE}");
        ui.press_button(&name);
        let confirm =
            ui.b.wait_shown(By::XPath("//dialog[@open]//button[normalize-space()='Confirm']"), SHOWN);
        ui.screenshot("overview-drain-dialog");
        ui.b.click(&confirm).unwrap();
        tepui_e2e::wait_for("the agent to be draining or drained", SHOWN, || {
            let nodes = api.get("/v1/nodes")?;
            let node = nodes
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["name"] == OPS_NODE)
                .cloned()
                .ok_or_else(|| format!("no {OPS_NODE} in {nodes}"))?;
            let m = node["maintenance"].as_str().unwrap_or_default().to_lowercase();
            if m.contains("drain") {
                Ok(())
            } else {
                Err(format!("maintenance {m:?}"))
            }
        });
        ui.wait_row("Agents", "the agent shown draining or drained", SETTLE, |r| {
            let r = r.to_lowercase();
            r.contains(OPS_NODE) && (r.contains("draining") || r.contains("drained"))
        });
        ui.screenshot("overview-drained");
    });

    report.step("app page: why it is not running", || {
        ui.open(APP_PAGE);
        ui.wait_h1(APP_ID);
        ui.b.wait("a section \"Why is it not running\"", SETTLE, |b| {
            b.find(By::XPath("//main//h2[normalize-space()='Why is it not running']"))
        });
        ui.screenshot("app-why");
    });

    report.step("app page: delete, after a confirmation", || {
        ui.open(APP_PAGE);
        ui.wait_h1(APP_ID);
        ui.press_button("Delete");
        let confirm =
            ui.b.wait_shown(By::XPath("//dialog[@open]//button[normalize-space()='Confirm']"), SHOWN);
        ui.screenshot("app-delete-dialog");
        ui.b.click(&confirm).unwrap();
        tepui_e2e::wait_for("the app to be gone", SETTLE, || {
            match api.try_call(Method::GET, &format!("/v2/apps{APP_ID}"), None)?.status {
                404 => Ok(()),
                s => Err(format!("GET /v2/apps{APP_ID}: {s}")),
            }
        });
    });

    report.finish(&ui);
}
