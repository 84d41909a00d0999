//! A headless Chromium driven over W3C WebDriver, for the web UI's tests (e2e/tests/ui.rs).
//!
//! [`Browser::start`] runs `chromedriver` on a free loopback port (it picks one itself with
//! `--port=0` and prints it) and opens a session with headless Chromium. The client is raw
//! WebDriver over HTTP with the crate's reqwest: navigate, find elements by CSS or XPath, click,
//! type, read text and attributes, run scripts (sync and async), press keys, take screenshots.
//! [`Browser::wait`] polls a condition to a deadline and, when it runs out, panics with a
//! screenshot, the address and the page's text. Dropping the browser (also while a test
//! panics) ends the session and kills chromedriver and every browser process it started.
//!
//! Screenshots go to [`artifacts_dir`] (`$CARGO_TARGET_DIR/e2e-artifacts/ui/`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (e2e/setup.sh).

use std::fmt::Display;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::{MarkedProcesses, MARKER_VAR};

/// The key WebDriver uses for an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take (a navigation waits for the page's load).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`Browser::wait`] looks again.
const POLL: Duration = Duration::from_millis(100);

/// The desktop window every session starts with.
pub const DESKTOP: (u32, u32) = (1280, 900);

/// A phone's screen in CSS pixels (an iPhone 12-14 held upright).
pub const PHONE: (u32, u32) = (390, 844);

/// WebDriver keys (the Unicode private-use code points of the W3C spec).
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const ESCAPE: &str = "\u{E00C}";
}

/// What went wrong with one WebDriver command.
#[derive(Debug, Clone)]
pub struct DriverError {
    /// The WebDriver error code (`no such element`, `javascript error`, ...), or `transport`
    /// when no answer came.
    pub code: String,
    pub message: String,
}

impl Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Chromedriver's messages end with a long stack trace; the first line says it.
        let first = self.message.lines().next().unwrap_or_default();
        write!(f, "{}: {first}", self.code)
    }
}

impl std::error::Error for DriverError {}

impl From<DriverError> for String {
    fn from(e: DriverError) -> String {
        e.to_string()
    }
}

pub type DriverResult<T> = Result<T, DriverError>;

/// How an element is looked for.
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    Css(&'a str),
    XPath(&'a str),
}

impl By<'_> {
    fn strategy(&self) -> (&'static str, &str) {
        match self {
            By::Css(s) => ("css selector", s),
            By::XPath(s) => ("xpath", s),
        }
    }
}

impl Display for By<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            By::Css(s) => write!(f, "css `{s}`"),
            By::XPath(s) => write!(f, "xpath `{s}`"),
        }
    }
}

/// An element of the current page, valid until the page changes under it (then commands on it
/// fail with `stale element reference`).
#[derive(Debug, Clone)]
pub struct Element {
    id: String,
}

impl Element {
    /// The JSON that passes this element to a script as an argument.
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }
}

/// `$CARGO_TARGET_DIR/e2e-artifacts/ui`: where screenshots go. Without the variable, the target
/// dir is found from the test executable (`TARGET/debug/deps/ui-HASH`), else `target`.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            // deps -> profile -> target
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("e2e-artifacts").join("ui")
}

/// The accessibility engine the tests load into pages: e2e/ui/node_modules/axe-core/axe.min.js,
/// which e2e/setup.sh installs with npm.
pub fn axe_source() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run e2e/setup.sh, which installs it",
            path.display()
        )
    })
}

/// Panics, saying what to install, unless chromium and chromedriver are there.
pub fn require_browser() {
    for (program, package) in [("chromedriver", "chromium-driver"), ("chromium", "chromium")] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "{program} is not installed: the web UI's browser tests need Debian's {package} (run e2e/setup.sh as root)"
        );
    }
}

/// The Chromium executable itself: Debian's /usr/bin/chromium is a shell wrapper that reads
/// /etc/chromium.d; the tests give every flag themselves.
fn chromium_binary() -> String {
    let direct = Path::new("/usr/lib/chromium/chromium");
    if direct.is_file() {
        direct.display().to_string()
    } else {
        "chromium".to_string()
    }
}

/// A headless Chromium session. Dropping it ends the session and kills the processes.
pub struct Browser {
    label: String,
    driver: Option<Child>,
    /// Marks chromedriver's environment, which the browser processes inherit, so that Drop
    /// finds and kills every one of them even if the session could not be ended.
    marked: MarkedProcesses,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    profile: Option<tempfile::TempDir>,
    driver_log: PathBuf,
    shots: Vec<PathBuf>,
    console: Vec<String>,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at [`DESKTOP`] size. `label` prefixes the
    /// screenshots' file names (earlier ones with that label are removed).
    pub fn start(label: &str) -> Browser {
        require_browser();
        // reqwest's rustls (linked in for registry pulls) needs a provider, even for plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let profile = tempfile::Builder::new()
            .prefix(&format!("tepui-e2e-chromium-{label}-"))
            .tempdir()
            .expect("a temp dir for the browser profile");
        let driver_log = profile.path().join("chromedriver.log");
        let marked = MarkedProcesses::new(&format!("chromium-{label}"));
        let stdout_path = profile.path().join("chromedriver.stdout");
        let stdout = File::create(&stdout_path).expect("chromedriver's stdout file");
        let mut cmd = Command::new("chromedriver");
        cmd.arg("--port=0")
            .arg(format!("--log-path={}", driver_log.display()))
            .env(MARKER_VAR, marked.value())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null());
        own_process_group(&mut cmd);
        let driver = cmd.spawn().expect("chromedriver starts (e2e/setup.sh installs it)");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime builds");
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(COMMAND_TIMEOUT)
            .build()
            .expect("a plain HTTP client builds");
        let mut b = Browser {
            label: label.to_string(),
            driver: Some(driver),
            marked,
            rt,
            http,
            session: String::new(),
            profile: Some(profile),
            driver_log,
            shots: vec![],
            console: vec![],
        };
        let port = b.driver_port(&stdout_path);
        b.session = format!("http://127.0.0.1:{port}/session");
        let user_data = b.profile.as_ref().expect("the profile lives").path().join("profile");
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-extensions".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            // English, whatever the machine says.
            "--lang=en-US".into(),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
            format!("--user-data-dir={}", user_data.display()),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": {"binary": chromium_binary(), "args": args},
                    "goog:loggingPrefs": {"browser": "ALL"},
                }
            }
        });
        let created = b
            .raw(Method::POST, &b.session.clone(), Some(caps))
            .unwrap_or_else(|e| panic!("a chromium session starts: {e}\n{}", b.driver_log_tail()));
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a session id in {created}"))
            .to_string();
        b.session = format!("{}/{id}", b.session);
        b.cmd(
            Method::POST,
            "/timeouts",
            json!({"implicit": 0, "pageLoad": 30_000, "script": 30_000}),
        )
        .expect("timeouts are set");
        b.set_window_size(DESKTOP).expect("the window is sized");
        b.set_color_scheme("light").expect("the light color scheme is set");
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let prefix = format!("{label}-");
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) && name.ends_with(".png") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        b
    }

    /// The port chromedriver printed (`... started successfully on port N.`).
    fn driver_port(&mut self, stdout: &Path) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut text = String::new();
            if let Ok(mut f) = File::open(stdout) {
                let _ = f.read_to_string(&mut text);
            }
            if let Some(port) = text
                .lines()
                .find_map(|l| l.split("started successfully on port ").nth(1))
                .and_then(|rest| rest.trim().trim_end_matches('.').parse().ok())
            {
                return port;
            }
            if let Some(status) = self.driver.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("chromedriver exited ({status}) before it listened:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not say its port within 20 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn raw(&self, method: Method, url: &str, body: Option<Value>) -> DriverResult<Value> {
        let transport = |e: reqwest::Error| DriverError {
            code: "transport".into(),
            message: format!("{method} {url}: {e}"),
        };
        self.rt.block_on(async {
            let mut req = self.http.request(method.clone(), url);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.map_err(transport)?;
            let status = resp.status();
            let text = resp.text().await.map_err(transport)?;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() {
                Ok(v["value"].clone())
            } else {
                Err(DriverError {
                    code: v["value"]["error"].as_str().unwrap_or("unknown error").to_string(),
                    message: v["value"]["message"].as_str().unwrap_or(&text).to_string(),
                })
            }
        })
    }

    /// One command of this session: `path` after `/session/ID`.
    fn cmd(&self, method: Method, path: &str, body: Value) -> DriverResult<Value> {
        let body = if method == Method::GET || method == Method::DELETE {
            None
        } else {
            Some(body)
        };
        self.raw(method, &format!("{}{path}", self.session), body)
    }

    // --- navigation and window

    /// Loads `url` and waits for its `load` event.
    pub fn goto(&self, url: &str) -> DriverResult<()> {
        self.cmd(Method::POST, "/url", json!({ "url": url })).map(drop)
    }

    /// The address bar.
    pub fn url(&self) -> DriverResult<String> {
        Ok(self
            .cmd(Method::GET, "/url", Value::Null)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The window's outer size; the page's viewport follows from it.
    pub fn set_window_size(&self, (width, height): (u32, u32)) -> DriverResult<()> {
        self.cmd(Method::POST, "/window/rect", json!({"width": width, "height": height}))
            .map(drop)
    }

    /// Makes pages see `prefers-color-scheme: SCHEME` (`light` or `dark`), from now on and
    /// across navigations.
    pub fn set_color_scheme(&self, scheme: &str) -> DriverResult<()> {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        )
        .map(drop)
    }

    /// A Chrome DevTools Protocol command, through chromedriver.
    pub fn cdp(&self, command: &str, params: Value) -> DriverResult<Value> {
        self.cmd(
            Method::POST,
            "/goog/cdp/execute",
            json!({"cmd": command, "params": params}),
        )
    }

    // --- elements

    /// The first element that matches.
    pub fn find(&self, by: By) -> DriverResult<Element> {
        let (using, value) = by.strategy();
        let v = self.cmd(Method::POST, "/element", json!({"using": using, "value": value}))?;
        element_of(&v)
    }

    /// Every element that matches, in document order (none is not an error).
    pub fn find_all(&self, by: By) -> DriverResult<Vec<Element>> {
        let (using, value) = by.strategy();
        let v = self.cmd(Method::POST, "/elements", json!({"using": using, "value": value}))?;
        v.as_array().into_iter().flatten().map(element_of).collect()
    }

    /// The first element matching `by` inside `parent`.
    pub fn find_in(&self, parent: &Element, by: By) -> DriverResult<Element> {
        let (using, value) = by.strategy();
        let v = self.cmd(
            Method::POST,
            &format!("/element/{}/element", parent.id),
            json!({"using": using, "value": value}),
        )?;
        element_of(&v)
    }

    /// The form control a `<label>` with exactly this text points at with `for`.
    pub fn by_label(&self, label: &str) -> DriverResult<Element> {
        let xpath = format!("//label[normalize-space()={}]", xpath_literal(label));
        let l = self.find(By::XPath(&xpath))?;
        let target = self.attribute(&l, "for")?.ok_or_else(|| DriverError {
            code: "no such element".into(),
            message: format!("the label {label:?} has no `for`"),
        })?;
        self.find(By::Css(&format!("[id=\"{}\"]", target.replace('"', "\\\""))))
    }

    /// The `<button>` whose visible text is exactly `text`.
    pub fn button(&self, text: &str) -> DriverResult<Element> {
        self.find(By::XPath(&format!(
            "//button[normalize-space()={}]",
            xpath_literal(text)
        )))
    }

    /// The link whose visible text is exactly `text`.
    pub fn link(&self, text: &str) -> DriverResult<Element> {
        self.find(By::XPath(&format!("//a[normalize-space()={}]", xpath_literal(text))))
    }

    pub fn click(&self, e: &Element) -> DriverResult<()> {
        self.cmd(Method::POST, &format!("/element/{}/click", e.id), json!({}))
            .map(drop)
    }

    /// Empties an input or a textarea.
    pub fn clear(&self, e: &Element) -> DriverResult<()> {
        self.cmd(Method::POST, &format!("/element/{}/clear", e.id), json!({}))
            .map(drop)
    }

    /// Types `text` into the element (focusing it first); [`keys`] for special keys.
    pub fn send_keys(&self, e: &Element, text: &str) -> DriverResult<()> {
        self.cmd(
            Method::POST,
            &format!("/element/{}/value", e.id),
            json!({ "text": text }),
        )
        .map(drop)
    }

    /// The element's rendered text (what a user sees).
    pub fn text(&self, e: &Element) -> DriverResult<String> {
        Ok(self
            .cmd(Method::GET, &format!("/element/{}/text", e.id), Value::Null)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// An HTML attribute, `None` when absent.
    pub fn attribute(&self, e: &Element, name: &str) -> DriverResult<Option<String>> {
        let v = self.cmd(Method::GET, &format!("/element/{}/attribute/{name}", e.id), Value::Null)?;
        Ok(v.as_str().map(str::to_string))
    }

    /// A DOM property (`value`, `checked`, ...).
    pub fn property(&self, e: &Element, name: &str) -> DriverResult<Value> {
        self.cmd(Method::GET, &format!("/element/{}/property/{name}", e.id), Value::Null)
    }

    pub fn is_displayed(&self, e: &Element) -> DriverResult<bool> {
        Ok(self
            .cmd(Method::GET, &format!("/element/{}/displayed", e.id), Value::Null)?
            .as_bool()
            .unwrap_or(false))
    }

    /// The element that has the focus.
    pub fn active_element(&self) -> DriverResult<Element> {
        element_of(&self.cmd(Method::GET, "/element/active", Value::Null)?)
    }

    /// Presses and releases `key` (one of [`keys`] or a character) wherever the focus is.
    pub fn press(&self, key: &str) -> DriverResult<()> {
        self.cmd(
            Method::POST,
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
            ]}]}),
        )?;
        self.cmd(Method::DELETE, "/actions", Value::Null).map(drop)
    }

    // --- scripts

    /// Runs `script` as a function body with `args` (`arguments[i]`); its return value.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> DriverResult<Value> {
        self.cmd(Method::POST, "/execute/sync", json!({"script": script, "args": args}))
    }

    /// Runs `script` as a function body whose last argument is a callback; the value it was
    /// called with (at most the session's 30 s script timeout).
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> DriverResult<Value> {
        self.cmd(Method::POST, "/execute/async", json!({"script": script, "args": args}))
    }

    /// The page's visible text (`document.body.innerText`).
    pub fn page_text(&self) -> DriverResult<String> {
        Ok(self
            .execute("return document.body ? document.body.innerText : '';", vec![])?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// What the page wrote to its console since the last call (chromedriver's browser log).
    pub fn console_log(&mut self) -> Vec<String> {
        let v = self
            .cmd(Method::POST, "/se/log", json!({"type": "browser"}))
            .unwrap_or(Value::Null);
        let lines: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{} {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect();
        self.console.extend(lines.iter().cloned());
        lines
    }

    // --- screenshots

    /// Saves a PNG of the viewport as `LABEL-NAME.png` under [`artifacts_dir`]; its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        self.try_screenshot(name)
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"))
    }

    fn try_screenshot(&mut self, name: &str) -> Result<PathBuf, String> {
        let b64 = self.cmd(Method::GET, "/screenshot", Value::Null)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .map_err(|e| format!("not base64: {e}"))?;
        if !png.starts_with(b"\x89PNG") {
            return Err("not a PNG".into());
        }
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let path = artifacts_dir().join(format!("{}-{safe}.png", self.label));
        std::fs::write(&path, png).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.shots.push(path.clone());
        Ok(path)
    }

    /// The screenshots saved so far.
    pub fn screenshots(&self) -> &[PathBuf] {
        &self.shots
    }

    // --- waiting

    /// Waits until `check` returns `Ok`, looking again every 100 ms, and returns its value.
    /// After `timeout`, saves a screenshot and panics with `what`, the last reason, the
    /// address, the page's text and its console.
    pub fn wait<T, E: Display>(
        &mut self,
        what: &str,
        timeout: Duration,
        check: impl FnMut(&Browser) -> Result<T, E>,
    ) -> T {
        match self.poll(timeout, check) {
            Ok(v) => v,
            Err(reason) => self.fail(&format!(
                "timed out after {timeout:?} waiting for {what}; last: {reason}"
            )),
        }
    }

    /// Like [`Browser::wait`], but the last reason is returned instead of a panic.
    pub fn poll<T, E: Display>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Browser) -> Result<T, E>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let reason = match check(self) {
                Ok(v) => return Ok(v),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(reason);
            }
            std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    /// Waits for an element to be there and shown.
    pub fn wait_shown(&mut self, by: By, timeout: Duration) -> Element {
        self.wait(&format!("{by} to be shown"), timeout, |b| {
            let e = b.find(by)?;
            if b.is_displayed(&e)? {
                Ok(e)
            } else {
                Err(format!("{by} is there but hidden"))
            }
        })
    }

    /// Panics with `message` and what the page shows, after a screenshot of it.
    pub fn fail(&mut self, message: &str) -> ! {
        let url = self.url().unwrap_or_else(|e| format!("(unknown: {e})"));
        let text = self.page_text().unwrap_or_else(|e| format!("(unreadable: {e})"));
        let text: String = text.chars().take(3000).collect();
        let shot = match self.try_screenshot("failure") {
            Ok(p) => p.display().to_string(),
            Err(e) => format!("(none: {e})"),
        };
        let console = self.console_log().join("\n");
        panic!("{message}\n--- at {url}\n--- screenshot {shot}\n--- page text\n{text}\n--- console\n{console}");
    }

    fn driver_log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.driver_log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session: chromedriver closes the browser. Not waited for long: the kills
        // below are what guarantees nothing is left.
        if self.session.contains("/session/") {
            let url = self.session.clone();
            let http = self.http.clone();
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), http.delete(url).send()).await });
        }
        if let Some(mut driver) = self.driver.take() {
            // SAFETY: killpg(2) on the process group chromedriver leads (it was started as
            // its group's leader and has not been reaped yet, so the id is still its own).
            unsafe { libc::killpg(driver.id() as libc::pid_t, libc::SIGKILL) };
            let _ = driver.kill();
            let _ = driver.wait();
        }
        // Browser processes that left the group (or were re-parented): found by their marker.
        for pid in self.marked.pids() {
            // SAFETY: kill(2) on a process of this browser (its marker is in its environment).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if std::thread::panicking() {
            if let Some(dir) = self.profile.take() {
                eprintln!("e2e: kept {} for chromedriver's log", dir.keep().display());
            }
        }
        if !self.shots.is_empty() {
            eprintln!("e2e: screenshots of the web UI ({}):", self.label);
            for s in &self.shots {
                eprintln!("  {}", s.display());
            }
        }
    }
}

fn element_of(v: &Value) -> DriverResult<Element> {
    v[ELEMENT_KEY]
        .as_str()
        .map(|id| Element { id: id.to_string() })
        .ok_or_else(|| DriverError {
            code: "unexpected answer".into(),
            message: format!("no element reference in {v}"),
        })
}

/// `s` as an XPath 1.0 string literal (which has no escapes: quotes are joined with concat).
pub fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

/// chromedriver leads a process group of its own, so that Drop can kill it and the browser
/// it starts together; and dies with the test thread that started it.
#[cfg(target_os = "linux")]
fn own_process_group(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    crate::die_with_parent(cmd);
}

#[cfg(not(target_os = "linux"))]
fn own_process_group(_cmd: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::xpath_literal;

    #[test]
    fn xpath_literals_quote_any_text() {
        assert_eq!(xpath_literal("Log in"), "'Log in'");
        assert_eq!(xpath_literal("it's"), "\"it's\"");
        assert_eq!(xpath_literal("a'b\"c"), "concat('a', \"'\", 'b\"c')");
    }
}
