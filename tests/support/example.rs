//! An example of this package as a child process: the binary `cargo test` builds beside
//! the test's (`target/debug/examples/{name}`), started with options, waited for until it
//! says it is ready, and SIGKILLed when dropped, so that a failing test leaves nothing
//! running. What it printed is shown when the test fails.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

/// How long a start may take (an AMQP connection on a loaded machine included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `target/debug/examples/{name}`, or a panic saying how to build it.
fn binary(name: &str) -> PathBuf {
    // this test is target/debug/deps/{test}-<hash>
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is in target/<profile>/deps");
    let example = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        example.is_file(),
        "{} is missing: `cargo test --workspace --all-features` builds it with the tests, \
         a run filtered with `--test {name}` does not: `cargo build --example {name}` \
         first, with the tests' features",
        example.display()
    );
    assert_fresh(&example, name);
    example
}

/// Panics if a source the example was built from (as its dep-info file `{name}.d` lists
/// them) changed since: a run filtered with `--test {name}` does not rebuild it.
fn assert_fresh(example: &Path, name: &str) {
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
            "{} is older than {source}: `cargo build --example {name}` with the tests' \
             features (`cargo test --workspace --all-features` builds it)",
            example.display()
        );
    }
}

/// A running example.
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
    /// Starts the example `name` with `args` and `env` on `transport` (`memory`, `amqp`,
    /// `streams`); returns once it runs (it may not be ready yet: see
    /// [`wait_for`](Self::wait_for)).
    pub(crate) fn spawn(name: &str, transport: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let what = format!("{name} example {}", args.join(" "));
        let mut child = Command::new(binary(name))
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

    /// Starts the example `name` with `--port 0` added, waits until it prints
    /// `{name} listening on http://{host:port}`, and returns it with its `host:port`.
    pub(crate) async fn listening(
        name: &str,
        transport: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Self, String) {
        let args: Vec<&str> = args.iter().copied().chain(["--port", "0"]).collect();
        let mut example = Self::spawn(name, transport, &args, env);
        let listening = format!("{name} listening on http://");
        let line = example.wait_for(&listening).await;
        let address = line[listening.len()..].trim().to_owned();
        (example, address)
    }

    /// The next stdout line starting with `prefix`; panics if the process ends first or
    /// none comes in [`START_TIMEOUT`].
    pub(crate) async fn wait_for(&mut self, prefix: &str) -> String {
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

    /// SIGKILLs it and waits until it is gone; everything it printed until then.
    pub(crate) fn kill(mut self) -> String {
        self.stop();
        self.collect()
    }

    /// Waits for it to end on its own; its exit status and everything it printed.
    pub(crate) fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().expect("its exit status");
        (status, self.collect())
    }

    /// Everything it printed, once its pipes have ended.
    fn collect(&mut self) -> String {
        for reader in self.readers.drain(..) {
            let _ = reader.join(); // they end at the end of the pipes
        }
        self.output.lock().expect("the output").join("\n")
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
