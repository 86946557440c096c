//! Whether the tests have a broker: the one place that reads `RABBITMQ_URL`,
//! `RABBITMQ_STREAM_HOST`, `RABBITMQ_STREAM_PORT` and `PUBSUB_RABBITMQCTL`, as
//! `scripts/broker.sh` prints them.
//!
//! A test that needs a variable the environment lacks is skipped, and says so on stderr,
//! unless `PUBSUB_REQUIRE_BROKER` is set (as `scripts/test.sh` sets it): then it fails. So
//! a broker test that `scripts/test.sh` runs never passes by returning early.
//!
//! Only `std` here: `pubsub-amqp`'s unit tests include this file too (by `#[path]`).

use std::process::Command;

/// `RABBITMQ_URL`: the AMQP broker.
pub(crate) const AMQP_URL: &str = "RABBITMQ_URL";
/// `RABBITMQ_STREAM_HOST`: the host of the stream listener (default: `RABBITMQ_HOST`, then
/// localhost, as the streams transport reads them).
pub(crate) const STREAM_HOST: &str = "RABBITMQ_STREAM_HOST";
/// `RABBITMQ_STREAM_PORT`: the port of the stream listener; its presence means a stream
/// broker is configured.
pub(crate) const STREAM_PORT: &str = "RABBITMQ_STREAM_PORT";
/// `PUBSUB_RABBITMQCTL`: the command (prefix) that runs `rabbitmqctl` on the broker.
pub(crate) const RABBITMQCTL: &str = "PUBSUB_RABBITMQCTL";
/// `PUBSUB_REQUIRE_BROKER`: when set, a missing variable fails the test instead of
/// skipping it.
pub(crate) const REQUIRE_BROKER: &str = "PUBSUB_REQUIRE_BROKER";

/// The value of `name`, or `None` after saying that the running test is skipped; panics
/// instead when `PUBSUB_REQUIRE_BROKER` is set.
pub(crate) fn required(name: &str) -> Option<String> {
    if let Ok(value) = std::env::var(name) {
        return Some(value);
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    assert!(
        std::env::var_os(REQUIRE_BROKER).is_none(),
        "{REQUIRE_BROKER} is set but {name} is not: {test} cannot run (see scripts/broker.sh)"
    );
    eprintln!("skipped {test}: no {name} in the environment (run scripts/test.sh)");
    None
}

/// `RABBITMQ_URL`, or `None`: skipped.
pub(crate) fn amqp_url() -> Option<String> {
    required(AMQP_URL)
}

/// `host:port` of the AMQP listener named by `RABBITMQ_URL`, or `None`: skipped.
pub(crate) fn amqp_address() -> Option<String> {
    let url = amqp_url()?;
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let default_port = if url.starts_with("amqps") { 5671 } else { 5672 };
    Some(if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    })
}

/// `host:port` of the stream listener (`RABBITMQ_STREAM_HOST` and `RABBITMQ_STREAM_PORT`),
/// or `None`: skipped.
pub(crate) fn stream_address() -> Option<String> {
    let port = required(STREAM_PORT)?;
    let host = std::env::var(STREAM_HOST)
        .or_else(|_| std::env::var("RABBITMQ_HOST"))
        .unwrap_or_else(|_| "localhost".into());
    Some(format!("{host}:{port}"))
}

/// Whether `rabbitmqctl` can be run on the broker (`PUBSUB_RABBITMQCTL`); `false`: skipped.
pub(crate) fn has_rabbitmqctl() -> bool {
    required(RABBITMQCTL).is_some()
}

/// The shell line that runs `rabbitmqctl args` (empty prefix without `PUBSUB_RABBITMQCTL`).
fn ctl_line(args: &[&str]) -> String {
    let prefix = std::env::var(RABBITMQCTL).unwrap_or_default();
    format!("{prefix} {}", args.join(" "))
}

/// Runs `rabbitmqctl args` on the broker under test and returns what it printed; panics if
/// it fails.
pub(crate) fn ctl(args: &[&str]) -> String {
    let line = ctl_line(args);
    let out = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .output()
        .unwrap_or_else(|e| panic!("running `{line}`: {e}"));
    assert!(
        out.status.success(),
        "`{line}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `rabbitmqctl` with these arguments when dropped: restores the broker even when the
/// test fails.
pub(crate) struct Restore(pub(crate) &'static [&'static str]);

impl Drop for Restore {
    fn drop(&mut self) {
        let line = ctl_line(self.0);
        match Command::new("sh").arg("-c").arg(&line).status() {
            Ok(status) if status.success() => {}
            other => eprintln!("restoring the broker with `{line}` failed: {other:?}"),
        }
    }
}

/// Runs `rabbitmqctl` with these (owned) arguments when dropped, like [`Restore`]: for what
/// a test made under a name of its own (a user, say).
pub(crate) struct RestoreWith(pub(crate) Vec<String>);

impl Drop for RestoreWith {
    fn drop(&mut self) {
        let args: Vec<&str> = self.0.iter().map(String::as_str).collect();
        let line = ctl_line(&args);
        match Command::new("sh").arg("-c").arg(&line).status() {
            Ok(status) if status.success() => {}
            other => eprintln!("restoring the broker with `{line}` failed: {other:?}"),
        }
    }
}

/// Deletes the queues whose names start with `prefix` when dropped (with `rabbitmqctl`).
pub(crate) struct DeleteQueues(pub(crate) String);

impl Drop for DeleteQueues {
    fn drop(&mut self) {
        let prefix = &self.0;
        let list = ctl_line(&["-q", "list_queues", "name", "--no-table-headers"]);
        let delete = ctl_line(&["-q", "delete_queue", "\"$q\""]);
        let script = format!("for q in $({list} | grep '^{prefix}'); do {delete} >/dev/null; done");
        if let Err(error) = Command::new("sh").arg("-c").arg(&script).status() {
            eprintln!("removing the queues of {prefix} failed: {error}");
        }
    }
}

/// A TCP connection to `address` (of the broker's `what` listener), with a 10 s read
/// timeout; panics if it does not answer.
pub(crate) fn tcp(address: &str, what: &str) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(address)
        .unwrap_or_else(|e| panic!("{what} at {address} does not answer: {e}"));
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// `scripts/broker.sh` of the broker under test (`PUBSUB_BROKER_SCRIPT`, which it prints
/// for its own node), to kill and restart the node; `None`: skipped, or failed under
/// `PUBSUB_REQUIRE_BROKER`.
pub(crate) fn broker_script() -> Option<String> {
    required("PUBSUB_BROKER_SCRIPT")
}

/// SIGKILLs the broker's node (`scripts/broker.sh kill`); the returned guard starts it
/// again when dropped, so that a failing test leaves a broker behind.
pub(crate) fn kill_node(script: &str) -> Revive {
    let status = Command::new(script)
        .arg("kill")
        .status()
        .expect("runs scripts/broker.sh kill");
    assert!(status.success(), "`{script} kill` failed: {status}");
    Revive(Some(script.to_owned()))
}

/// Starts the killed node again when dropped (or at [`start`](Self::start)).
pub(crate) struct Revive(Option<String>);

impl Revive {
    /// Starts the node and returns once its ports answer.
    pub(crate) fn start(mut self) {
        if let Some(script) = self.0.take() {
            start_node(&script);
        }
    }
}

impl Drop for Revive {
    fn drop(&mut self) {
        if let Some(script) = self.0.take() {
            start_node(&script);
        }
    }
}

fn start_node(script: &str) {
    let output = Command::new(script)
        .arg("start")
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("runs scripts/broker.sh start");
    assert!(
        output.status.success(),
        "`{script} start` failed: {}",
        output.status
    );
}
