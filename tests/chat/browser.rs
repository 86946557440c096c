//! Headless Chromium, driven through chromedriver (WebDriver, with fantoccini): Debian's
//! `chromium` and `chromium-driver`, which `scripts/browser.sh` installs. Without them
//! the browser tests are skipped with a message, or fail when `PUBSUB_REQUIRE_BROWSER` is
//! set (`scripts/test.sh` sets it).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::web::PATIENCE;

/// Set: a missing browser fails the test instead of skipping it.
pub(crate) const REQUIRE_BROWSER: &str = "PUBSUB_REQUIRE_BROWSER";
/// The browser (`PUBSUB_CHROMIUM` overrides it).
const CHROMIUM: &str = "/usr/bin/chromium";
/// The WebDriver server (`PUBSUB_CHROMEDRIVER` overrides it).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// What chromedriver prints once it listens, before its port.
const STARTED: &str = "started successfully on port ";

/// A chromedriver with one browser session; both end when it is dropped.
pub(crate) struct Browser {
    client: Client,
    driver: Child,
    port: u16,
    session: Option<String>,
}

/// `PUBSUB_{name}` or the default, if that file exists.
fn program(variable: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(variable).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.is_file().then_some(path)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a phone-sized window; `None` (and a
    /// message) when either is missing, unless [`REQUIRE_BROWSER`] is set: then it panics.
    pub(crate) async fn start() -> Option<Self> {
        let programs = (
            program("PUBSUB_CHROMIUM", CHROMIUM),
            program("PUBSUB_CHROMEDRIVER", CHROMEDRIVER),
        );
        let (Some(chromium), Some(chromedriver)) = programs else {
            let why = format!(
                "no {CHROMIUM} and {CHROMEDRIVER} (Debian's chromium and chromium-driver: \
                 scripts/browser.sh installs them)"
            );
            assert!(
                std::env::var_os(REQUIRE_BROWSER).is_none(),
                "{REQUIRE_BROWSER} is set, but there is {why}"
            );
            eprintln!("skipping the browser test: {why}");
            return None;
        };
        let (driver, port) = chromedriver_on_a_free_port(&chromedriver);
        // as root, without a sandbox; and no background networking: this machine's closed
        // network refuses it
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=412,760",
        ];
        let options = json!({ "binary": chromium, "args": args });
        let capabilities = json!({ "goog:chromeOptions": options });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!("starting {} through chromedriver: {e}", chromium.display())
            });
        let session = client.session_id().await.ok().flatten();
        Some(Self {
            client,
            driver,
            port,
            session,
        })
    }

    /// Opens `url` in a new tab (the first call: in the window that is there) and returns
    /// the tab.
    pub(crate) async fn open(&mut self, url: &str, first: bool) -> WindowHandle {
        let tab = if first {
            self.client.window().await.expect("the first window")
        } else {
            self.client
                .new_window(true)
                .await
                .expect("a new tab")
                .handle
        };
        self.show(&tab).await;
        self.client.goto(url).await.expect("the page loads");
        tab
    }

    /// Makes `tab` the one the next commands act on.
    pub(crate) async fn show(&self, tab: &WindowHandle) {
        self.client
            .switch_to_window(tab.clone())
            .await
            .expect("switching tabs");
    }

    /// Types `text` into the input with id `id` of the current tab, first emptying it.
    pub(crate) async fn fill(&self, id: &str, text: &str) {
        let input = self.client.find(Locator::Id(id)).await.expect("the input");
        input.clear().await.expect("emptying the input");
        input.send_keys(text).await.expect("typing");
    }

    /// Clicks the element `css` selects in the current tab.
    pub(crate) async fn click(&self, css: &str) {
        let element = self.client.find(Locator::Css(css)).await.expect(css);
        element.click().await.expect("clicking");
    }

    /// Runs `script` (a function body that `return`s) in the current tab.
    pub(crate) async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("running {script:?}: {e}"))
    }

    /// Runs `script` in the current tab every 50 ms until `done` holds for its result,
    /// for [`PATIENCE`] at most; the last result.
    pub(crate) async fn eval_until(
        &self,
        script: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.eval(script).await;
            if done(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "the page is not {what} after {PATIENCE:?}: {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG of the current tab to `path`.
    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).expect("the screenshots' folder");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Closes `tab` and shows `next`.
    pub(crate) async fn close_tab(&self, tab: &WindowHandle, next: &WindowHandle) {
        self.show(tab).await;
        self.client.close_window().await.expect("closing the tab");
        self.show(next).await;
    }

    /// Ends the browser and chromedriver.
    pub(crate) async fn close(mut self) {
        if let Ok(()) = self.client.clone().close().await {
            self.session = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // a failed test ends here without `close`: end the session (and so Chromium)
        // through chromedriver, synchronously, before killing chromedriver (which ignores
        // HTTP/1.0)
        if let Some(session) = self.session.take()
            && let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port))
        {
            let request = format!(
                "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n",
                self.port
            );
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.write_all(request.as_bytes());
            let _ = std::io::Read::read_to_end(&mut stream, &mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Starts `chromedriver --port=0` and reads which port it took.
fn chromedriver_on_a_free_port(chromedriver: &Path) -> (Child, u16) {
    let mut driver = Command::new(chromedriver)
        .arg("--port=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
    let stdout = driver.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
        let (_, rest) = line.split_once(STARTED)?;
        rest.trim_end_matches('.').trim().parse::<u16>().ok()
    });
    let Some(port) = port else {
        let _ = driver.kill();
        panic!("{} ended without saying its port", chromedriver.display());
    };
    // keep reading its stdout, so that it never blocks on a full pipe
    std::thread::spawn(move || lines.for_each(drop));
    (driver, port)
}
