//! A real browser for the tests of pages iotql serves (the dashboard): headless
//! Chromium driven through ChromeDriver's W3C WebDriver HTTP API, with a few
//! calls a test needs (load a page, run a script, wait for a condition, read
//! texts and counts, take a screenshot). `scripts/chromium-up` provides both
//! programs from Debian's packages; each `Browser` has its own ChromeDriver on
//! a free loopback port and its own session, both ended when it is dropped.
//!
//! Errors are values (`BrowserError`) that say which call failed and what
//! ChromeDriver answered, so a test can `?` them and read why it failed.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// What the window is: the page's viewport is this less the frame that
/// headless Chromium still simulates (1400 x 857 with this size).
pub const WINDOW_SIZE: (u32, u32) = (1400, 1000);

/// How long one WebDriver call may take (page loads and scripts time out
/// earlier, at `PAGE_TIMEOUT`, with ChromeDriver's own message).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long ChromeDriver may take to listen.
const DRIVER_START: Duration = Duration::from_secs(30);
/// How often `wait_for` evaluates its condition.
const POLL: Duration = Duration::from_millis(100);

/// Why a browser call failed: the call, and what ChromeDriver (or the
/// system) said. `Debug` prints it as text so that a test returning
/// `Result<(), BrowserError>` shows it readably.
pub struct BrowserError(String);

impl BrowserError {
    fn new(what: impl Into<String>) -> BrowserError {
        BrowserError(what.into())
    }
}

impl fmt::Display for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BrowserError {}

pub type Result<T> = std::result::Result<T, BrowserError>;

/// The programs `scripts/chromium-up` provided.
struct Install {
    chromium: String,
    chromedriver: String,
    /// Folders to put before LD_LIBRARY_PATH (a private install's).
    libs: String,
}

impl Install {
    /// Runs `scripts/chromium-up` (installs on first use, then only looks)
    /// and reads its `NAME=VALUE` lines.
    fn find() -> Result<Install> {
        let script = super::repo().join("scripts/chromium-up");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|e| BrowserError::new(format!("running {}: {e}", script.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(BrowserError::new(format!(
                "{} failed ({}):\n{}{}",
                script.display(),
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let value = |name: &str| {
            stdout
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
                .ok_or_else(|| {
                    BrowserError::new(format!(
                        "{} printed no {name}=:\n{stdout}",
                        script.display()
                    ))
                })
        };
        Ok(Install {
            chromium: value("CHROMIUM")?,
            chromedriver: value("CHROMEDRIVER")?,
            libs: value("LD_LIBRARY_PATH")?,
        })
    }
}

/// A headless Chromium window, through a ChromeDriver of its own.
pub struct Browser {
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT/session/ID`, where the session's calls go.
    session: String,
    driver: Child,
    /// ChromeDriver's output (shown when it fails to start).
    driver_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Installs Chromium if needed, starts ChromeDriver on a free loopback
    /// port and opens a session with a headless window of `WINDOW_SIZE`.
    pub fn start() -> Result<Browser> {
        let install = Install::find()?;
        let dir = tempfile::tempdir().map_err(|e| BrowserError::new(format!("temp dir: {e}")))?;
        let driver_log = dir.path().join("chromedriver.log");
        let port = super::free_port();
        let driver = spawn_driver(&install, port, &driver_log)?;
        let agent = super::http::agent_with_timeout(CALL_TIMEOUT);
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            agent,
            session: String::new(),
            driver,
            driver_log,
            _dir: dir,
        };
        browser.await_driver(&base)?;
        let created = browser.call(
            "POST",
            &format!("{base}/session"),
            Some(&session_request(&install)),
        )?;
        let id = created["sessionId"]
            .as_str()
            .ok_or_else(|| BrowserError::new(format!("new session: no sessionId in {created}")))?;
        browser.session = format!("{base}/session/{id}");
        Ok(browser)
    }

    /// Waits until ChromeDriver says it is ready, or fails with its output
    /// when it exits or takes longer than `DRIVER_START`.
    fn await_driver(&mut self, base: &str) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(status) = self.call("GET", &format!("{base}/status"), None)
                && status["ready"] == json!(true)
            {
                return Ok(());
            }
            let exited = self.driver.try_wait().ok().flatten();
            if exited.is_some() || started.elapsed() > DRIVER_START {
                let why = match exited {
                    Some(status) => format!("exited ({status})"),
                    None => format!("was not ready in {DRIVER_START:?}"),
                };
                let log = fs::read_to_string(&self.driver_log).unwrap_or_default();
                return Err(BrowserError::new(format!(
                    "chromedriver {why}; its output:\n{log}"
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Loads `url` and waits for its load event.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.session_call("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
            .map_err(|e| BrowserError::new(format!("loading {url}: {e}")))
    }

    /// Runs `js` as the body of a function in the page and returns what it
    /// returns (`return document.title`), as JSON; DOM elements come back
    /// as WebDriver references, so return their texts or counts instead.
    pub fn script(&self, js: &str) -> Result<Value> {
        self.script_with(js, &[])
    }

    /// `script` with arguments, which `js` reads as `arguments[0]`, ...
    pub fn script_with(&self, js: &str, args: &[Value]) -> Result<Value> {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": js, "args": args })),
        )
        .map_err(|e| BrowserError::new(format!("script `{}`: {e}", one_line(js))))
    }

    /// Evaluates the expression `condition` every `POLL` until it is truthy
    /// and returns its value. After `timeout` it fails with `what`, the
    /// condition, its last error if it threw, the page's text and the
    /// console's errors: what a person would look at.
    pub fn wait_for(&self, what: &str, timeout: Duration, condition: &str) -> Result<Value> {
        let started = Instant::now();
        let js = format!("return ({condition});");
        loop {
            let last_error = match self.script(&js) {
                Ok(value) if truthy(&value) => return Ok(value),
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            if started.elapsed() > timeout {
                return Err(self.timed_out(what, timeout, condition, last_error));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The error of a `wait_for` that timed out, with what the page shows.
    fn timed_out(
        &self,
        what: &str,
        timeout: Duration,
        condition: &str,
        last_error: Option<String>,
    ) -> BrowserError {
        let text = self
            .script("return document.body ? document.body.innerText : document.documentElement.outerHTML")
            .map(|v| v.as_str().unwrap_or_default().chars().take(3000).collect::<String>())
            .unwrap_or_else(|e| format!("(unreadable: {e})"));
        let errors = self
            .console_errors()
            .map(|errors| errors.join("\n"))
            .unwrap_or_else(|e| format!("(unreadable: {e})"));
        let mut message = format!("timed out after {timeout:?} waiting for {what}: `{condition}`");
        if let Some(e) = last_error {
            message.push_str(&format!(" (it failed: {e})"));
        }
        message.push_str(&format!("\npage text:\n{text}\nconsole errors:\n{errors}"));
        BrowserError::new(message)
    }

    /// The rendered text of the first element that `css` matches (its
    /// `textContent` for SVG elements, which have no `innerText`).
    pub fn text(&self, css: &str) -> Result<String> {
        let value = self.script_with(
            "const e = document.querySelector(arguments[0]);
             return e ? (e.innerText ?? e.textContent) : null;",
            &[json!(css)],
        )?;
        match value {
            Value::String(text) => Ok(text),
            _ => Err(BrowserError::new(format!("no element matches `{css}`"))),
        }
    }

    /// How many elements `css` matches.
    pub fn count(&self, css: &str) -> Result<usize> {
        let value = self.script_with(
            "return document.querySelectorAll(arguments[0]).length;",
            &[json!(css)],
        )?;
        value
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| BrowserError::new(format!("count of `{css}`: not a number: {value}")))
    }

    /// Saves the viewport as a PNG file at `path`.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let encoded = self.session_call("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .map_err(|e| BrowserError::new(format!("screenshot: not base64: {e}")))?;
        fs::write(path, png)
            .map_err(|e| BrowserError::new(format!("writing {}: {e}", path.display())))
    }

    /// Saves the viewport as `NAME.png` in the tests' temporary folder
    /// (`target/tmp/`, kept after the test), where a person can look at
    /// what the test saw, and returns its path.
    pub fn keep_screenshot(&self, name: &str) -> Result<PathBuf> {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
        self.screenshot(&path)?;
        Ok(path)
    }

    /// The console's errors and uncaught exceptions since the last call
    /// (ChromeDriver hands each entry out once).
    pub fn console_errors(&self) -> Result<Vec<String>> {
        let entries = self.session_call("POST", "/se/log", Some(&json!({ "type": "browser" })))?;
        Ok(entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter_map(|entry| entry["message"].as_str().map(str::to_string))
            .collect())
    }

    /// A call on this session (`path` after `/session/ID`).
    fn session_call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.call(method, &format!("{}{path}", self.session), body)
    }

    /// One WebDriver call: its `value`, or an error with ChromeDriver's
    /// `error` and `message` (the stack trace of addresses is left out).
    fn call(&self, method: &str, url: &str, body: Option<&Value>) -> Result<Value> {
        let failed = |e: &dyn fmt::Display| BrowserError::new(format!("{method} {url}: {e}"));
        let response = match (method, body) {
            ("GET", _) => self.agent.get(url).call(),
            ("DELETE", _) => self.agent.delete(url).call(),
            (_, body) => self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(&json!({})).to_string()),
        }
        .map_err(|e| failed(&e))?;
        let status = response.status();
        let text = response
            .into_body()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| failed(&e))?;
        let mut reply: Value = serde_json::from_str(&text)
            .map_err(|e| failed(&format!("{status}, not JSON ({e}): {text}")))?;
        let value = reply["value"].take();
        if status.is_success() {
            return Ok(value);
        }
        Err(failed(&format!(
            "{status}: {}: {}",
            value["error"].as_str().unwrap_or("(no error)"),
            value["message"].as_str().unwrap_or(&text)
        )))
    }
}

impl Drop for Browser {
    /// Ends the session (ChromeDriver closes Chromium), then ChromeDriver's
    /// process group, which holds any Chromium process left.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &self.session, None);
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

/// Starts ChromeDriver on loopback `port` in a process group of its own
/// (so that `Drop` ends the Chromium it starts too), its output in `log`.
fn spawn_driver(install: &Install, port: u16, log: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let output = fs::File::create(log)
        .and_then(|file| Ok((file.try_clone()?, file)))
        .map_err(|e| BrowserError::new(format!("creating {}: {e}", log.display())))?;
    let mut libs = install.libs.clone();
    if let Ok(old) = std::env::var("LD_LIBRARY_PATH")
        && !old.is_empty()
    {
        libs = if libs.is_empty() {
            old
        } else {
            format!("{libs}:{old}")
        };
    }
    Command::new(&install.chromedriver)
        .arg(format!("--port={port}"))
        .env("LD_LIBRARY_PATH", libs)
        .stdin(Stdio::null())
        .stdout(output.0)
        .stderr(output.1)
        .process_group(0)
        .spawn()
        .map_err(|e| BrowserError::new(format!("starting {}: {e}", install.chromedriver)))
}

/// The new-session request: headless Chromium of `WINDOW_SIZE` that can
/// run as root in a container, with its console kept for `console_errors`.
fn session_request(install: &Install) -> Value {
    let (width, height) = WINDOW_SIZE;
    let page_ms = PAGE_TIMEOUT.as_millis() as u64;
    json!({
        "capabilities": {
            "alwaysMatch": {
                "goog:chromeOptions": {
                    "binary": install.chromium,
                    "args": [
                        "--headless=new",
                        // As root (no user namespace in a container).
                        "--no-sandbox",
                        "--disable-gpu",
                        // A container's /dev/shm is small.
                        "--disable-dev-shm-usage",
                        // Pages are on loopback.
                        "--no-proxy-server",
                        "--no-first-run",
                        format!("--window-size={width},{height}"),
                    ],
                },
                "goog:loggingPrefs": { "browser": "ALL" },
                "timeouts": { "pageLoad": page_ms, "script": page_ms },
            }
        }
    })
}

/// JavaScript's truthiness of a returned value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A script shortened for an error message.
fn one_line(js: &str) -> String {
    let line = js.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line,
    }
}

/// The width and height of a PNG file, read from its header; `None` when
/// it is not a PNG.
pub fn png_size(path: &Path) -> Option<(u32, u32)> {
    let bytes = fs::read(path).ok()?;
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((width, height))
}
