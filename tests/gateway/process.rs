//! The gateway example as a child process: the binary `cargo test` builds beside this
//! test's (`target/debug/examples/gateway`), started with options, waited for until it
//! says it is ready, and SIGKILLed when dropped, so that a failing test leaves nothing
//! running. What it printed is shown when the test fails.
// processors of their own, and killing them, are for the AMQP tests
#![cfg_attr(not(feature = "amqp"), allow(dead_code))]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

/// What the gateway prints once it listens, before `http://host:port`.
const LISTENING: &str = "gateway listening on http://";
/// What the processor prints once its bus consumes.
const PROCESSOR_READY: &str = "processor ready";
/// How long a start may take (an AMQP connection on a loaded machine included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `target/debug/examples/gateway`, or a panic saying how to build it.
fn binary() -> PathBuf {
    // this test is target/debug/deps/gateway-<hash>
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps");
    let example = profile
        .join("examples")
        .join(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    assert!(
        example.is_file(),
        "{} is missing: `cargo test --workspace --all-features` builds it with the tests, \
         a run filtered with `--test gateway` does not: `cargo build --example gateway` \
         first, with the tests' features",
        example.display()
    );
    assert_fresh(&example);
    example
}

/// Panics if a source the example was built from (as its dep-info file `gateway.d` lists
/// them) changed since: a run filtered with `--test gateway` does not rebuild it.
fn assert_fresh(example: &Path) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let built = modified(example).expect("the example's modification time");
    let dep_info = std::fs::read_to_string(example.with_extension("d")).unwrap_or_default();
    let sources = dep_info
        .lines()
        .next()
        .and_then(|rule| rule.split_once(": "));
    for source in sources
        .map(|(_, s)| s)
        .unwrap_or_default()
        .split_whitespace()
    {
        let changed = modified(Path::new(source)).is_some_and(|m| m > built);
        assert!(
            !changed,
            "{} is older than {source}: `cargo build --example gateway` with the tests' \
             features (`cargo test --workspace --all-features` builds it)",
            example.display()
        );
    }
}

/// A running gateway example (`--role all`, `gateway` or `processor`).
pub(crate) struct Example {
    child: Child,
    /// Its stdout lines, as they come.
    lines: mpsc::UnboundedReceiver<String>,
    /// Everything it printed (stdout and stderr), for the failure message.
    output: Arc<Mutex<Vec<String>>>,
    /// The threads reading its stdout and stderr.
    readers: Vec<std::thread::JoinHandle<()>>,
    what: String,
}

impl Example {
    /// Starts the example with `args` on `transport` (`memory` or `amqp`); returns once it
    /// runs (it may not be ready yet: see [`gateway`](Self::gateway) and
    /// [`processor_ready`](Self::processor_ready)).
    pub(crate) fn start(transport: &str, args: &[&str]) -> Self {
        Self::start_with(transport, args, &[])
    }

    /// [`start`](Self::start), with these environment variables too.
    pub(crate) fn start_with(transport: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let what = format!("gateway example {}", args.join(" "));
        let mut child = Command::new(binary())
            .args(args)
            .env("PUBSUB_TRANSPORT", transport)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the {what}: {e}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        let (sender, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![
            forward(stdout, Some(sender), Arc::clone(&output)),
            forward(stderr, None, Arc::clone(&output)),
        ];
        Self {
            child,
            lines,
            output,
            readers,
            what,
        }
    }

    /// Starts a gateway (`--port 0` added) and returns it with its `host:port`.
    pub(crate) async fn gateway(transport: &str, args: &[&str]) -> (Self, String) {
        Self::gateway_with(transport, args, &[]).await
    }

    /// [`gateway`](Self::gateway), with these environment variables too.
    pub(crate) async fn gateway_with(
        transport: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Self, String) {
        let args: Vec<&str> = args.iter().copied().chain(["--port", "0"]).collect();
        let mut example = Self::start_with(transport, &args, env);
        let line = example.wait_for(LISTENING).await;
        let address = line[LISTENING.len()..].trim().to_owned();
        (example, address)
    }

    /// Waits until the processor of this process consumes.
    pub(crate) async fn processor_ready(&mut self) {
        self.wait_for(PROCESSOR_READY).await;
    }

    /// The next stdout line starting with `prefix`; panics if the process ends first or
    /// none comes in [`START_TIMEOUT`].
    async fn wait_for(&mut self, prefix: &str) -> String {
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = self.lines.recv().await {
                if line.starts_with(prefix) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => {
                let status = self.child.wait().expect("its exit status");
                panic!(
                    "the {} ended ({status}) before printing {prefix:?}",
                    self.what
                )
            }
            Err(_) => panic!(
                "the {} printed no {prefix:?} in {START_TIMEOUT:?}",
                self.what
            ),
        }
    }

    /// SIGKILLs it and waits until it is gone.
    pub(crate) fn kill(mut self) {
        self.stop();
    }

    /// Waits for it to end on its own; its exit status and everything it printed.
    pub(crate) fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().expect("its exit status");
        for reader in self.readers.drain(..) {
            let _ = reader.join(); // they end at the end of the pipes
        }
        let output = self.output.lock().expect("the output").join("\n");
        (status, output)
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let output = self.output.lock().map(|o| o.join("\n")).unwrap_or_default();
            eprintln!("--- what the {} printed:\n{output}\n---", self.what);
        }
    }
}

/// Reads `pipe` line by line on a thread of its own, into `output` and to `lines`.
fn forward(
    pipe: impl Read + Send + 'static,
    lines: Option<mpsc::UnboundedSender<String>>,
    output: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut output) = output.lock() {
                output.push(line.clone());
            }
            if let Some(lines) = &lines {
                let _ = lines.send(line);
            }
        }
    })
}
