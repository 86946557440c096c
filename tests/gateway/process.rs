//! The gateway example as a child process (`support::process`): started with options,
//! waited for until it says it is ready, SIGKILLed when dropped.
// processors of their own, and killing them, are for the AMQP tests
#![cfg_attr(not(feature = "amqp"), allow(dead_code))]

use std::time::Duration;

use crate::support::process::ExampleProcess;

/// What the gateway prints once it listens, before `http://host:port`.
const LISTENING: &str = "gateway listening on http://";
/// What the processor prints once its bus consumes.
const PROCESSOR_READY: &str = "processor ready";
/// How long a start may take (an AMQP connection on a loaded machine included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running gateway example (`--role all`, `gateway` or `processor`).
pub(crate) struct Example(ExampleProcess);

impl Example {
    /// Starts the example with `args` on `transport` (`memory` or `amqp`); returns once it
    /// runs (it may not be ready yet: see [`gateway`](Self::gateway) and
    /// [`processor_ready`](Self::processor_ready)).
    pub(crate) fn start(transport: &str, args: &[&str]) -> Self {
        Self::start_with(transport, args, &[])
    }

    /// [`start`](Self::start), with these environment variables too.
    pub(crate) fn start_with(transport: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self(ExampleProcess::start("gateway", transport, args, env))
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
        let line = example.0.wait_for(LISTENING, START_TIMEOUT).await;
        let address = line[LISTENING.len()..].trim().to_owned();
        (example, address)
    }

    /// Waits until the processor of this process consumes.
    pub(crate) async fn processor_ready(&mut self) {
        self.0.wait_for(PROCESSOR_READY, START_TIMEOUT).await;
    }

    /// SIGKILLs it and waits until it is gone.
    pub(crate) fn kill(self) {
        self.0.kill();
    }

    /// Waits for it to end on its own; its exit status and everything it printed.
    pub(crate) fn finish(self) -> (std::process::ExitStatus, String) {
        self.0.finish()
    }
}
