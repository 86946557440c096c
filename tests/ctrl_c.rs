//! Ctrl-C, in a process of its own: this binary runs itself as the child
//! (`PUBSUB_CTRL_C_CHILD=1`), whose bus runs a handler that never finishes; the parent
//! sends it SIGINT (with the `kill` command: no crate needed, and `libc::kill` would need
//! `unsafe`, which the workspace forbids). After the first one the child logs, at INFO,
//! what it waits for and for how long, and stays alive; after the second it gives the
//! delivery up unacked (requeued) and exits at once, long before its 60 s shutdown timeout.
//!
//! `harness = false`: the child must be a plain `main`, and signals are process-wide.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD: &str = "PUBSUB_CTRL_C_CHILD";
/// What the child prints when its handler runs, and when its run ended.
const READY: &str = "CHILD READY";
const ENDED: &str = "CHILD ENDED";

fn main() -> ExitCode {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    #[cfg(unix)]
    parent::second_ctrl_c_requeues_and_exits_at_once();
    ExitCode::SUCCESS
}

/// A bus whose one handler never finishes, run until Ctrl-C twice.
#[tokio::main]
async fn child() -> ExitCode {
    use pubsub::prelude::*;
    use pubsub::transport::Bytes;
    use pubsub::{HandlerSelection, MemoryTransport};

    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let signal = pubsub::shutdown_signal(); // listens from now on
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let running = std::sync::Arc::clone(&started);
    let stuck = Handler::raw("stuck", "job.#", move |_: RawEvent, _: Context| {
        running.notify_one();
        std::future::pending::<Result<(), HandlerError>>()
    });
    let broker = MemoryTransport::new();
    let bus = Bus::builder()
        .service("ctrl-c")
        .transport(broker.clone())
        .select_handlers(HandlerSelection::None)
        .handler(stuck)
        .handler_timeout(Duration::from_secs(3600)) // it is never timed out
        .shutdown_timeout(Duration::from_secs(60))
        .build()
        .await
        .expect("the bus");
    bus.publish_message(Message::new("job.run", Bytes::from_static(b"{}")))
        .await
        .expect("the job");
    let run = bus.run_until(signal);
    tokio::pin!(run);
    let result = tokio::select! {
        () = started.notified() => {
            println!("{READY}");
            run.await
        }
        result = &mut run => result,
    };
    let stats = bus.stats();
    let queue = broker.queue_depth("ctrl-c").expect("the queue");
    println!(
        "{ENDED} ok={} acked={} requeued={} ready={}",
        result.is_ok(),
        stats.acked,
        stats.requeued,
        queue.ready
    );
    ExitCode::SUCCESS
}

#[cfg(unix)]
mod parent {
    use super::*;

    /// The child's output lines, from both streams, as they come.
    struct Output(mpsc::Receiver<String>, Vec<String>);

    impl Output {
        /// Waits for a line containing `text`, at most `within`.
        fn wait_for(&mut self, text: &str, within: Duration) -> String {
            let deadline = Instant::now() + within;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.0.recv_timeout(left) {
                    Ok(line) => {
                        self.1.push(line.clone());
                        if line.contains(text) {
                            return line;
                        }
                    }
                    Err(_) => panic!(
                        "no line with {text:?} within {within:?}; the child said:\n{}",
                        self.1.join("\n")
                    ),
                }
            }
        }
    }

    /// Kills the child if the test fails before it ended.
    struct KillOnDrop(u32);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    fn interrupt(pid: u32) {
        let status = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("the kill command");
        assert!(status.success(), "kill -INT {pid}: {status}");
    }

    pub(super) fn second_ctrl_c_requeues_and_exits_at_once() {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .env(CHILD, "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the child");
        let pid = child.id();
        let guard = KillOnDrop(pid);
        let (lines, received) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = lines.send(line);
                }
            });
        }
        let mut output = Output(received, Vec::new());
        output.wait_for(READY, Duration::from_secs(30));

        let first = Instant::now();
        interrupt(pid);
        let waiting = output.wait_for("stopping: waiting up to 60s", Duration::from_secs(5));
        eprintln!("first Ctrl-C, after {:?}: {waiting}", first.elapsed());
        assert!(waiting.contains("INFO"), "{waiting}");
        assert!(waiting.contains("for 1 delivery in flight"), "{waiting}");
        assert!(waiting.contains("stuck"), "names the handler: {waiting}");
        assert!(
            child.try_wait().expect("the child's state").is_none(),
            "the first Ctrl-C waits for the handler"
        );

        let second = Instant::now();
        interrupt(pid);
        let (exited, exit) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exited.send(child.wait());
        });
        let status = exit
            .recv_timeout(Duration::from_secs(10))
            .expect("the child exits within 10 s of the second Ctrl-C")
            .expect("its exit status");
        eprintln!("second Ctrl-C, exited after {:?}", second.elapsed());
        drop(guard);
        assert!(status.success(), "{status}");
        let ended = output.wait_for(ENDED, Duration::from_secs(5));
        assert_eq!(
            ended,
            format!("{ENDED} ok=true acked=0 requeued=1 ready=1"),
            "the delivery went back to the queue unacked"
        );
        assert!(
            output
                .1
                .iter()
                .any(|l| l.contains("abandoning 1 unfinished delivery")),
            "{:?}",
            output.1
        );
    }
}
