//! The gateway example as a child process (see `support::example`): a gateway, a processor
//! or both, by `--role`.
// processors of their own are for the AMQP tests
#![cfg_attr(not(feature = "amqp"), allow(dead_code))]

pub(crate) use crate::support::example::Example;

/// What the processor prints once its bus consumes.
const PROCESSOR_READY: &str = "processor ready";

impl Example {
    /// Starts the gateway example with `args` on `transport` (`memory` or `amqp`); returns
    /// once it runs (it may not be ready yet: see [`gateway`](Self::gateway) and
    /// [`processor_ready`](Self::processor_ready)).
    pub(crate) fn start(transport: &str, args: &[&str]) -> Self {
        Self::spawn("gateway", transport, args, &[])
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
        Self::listening("gateway", transport, args, env).await
    }

    /// Waits until the processor of this process consumes.
    pub(crate) async fn processor_ready(&mut self) {
        self.wait_for(PROCESSOR_READY).await;
    }
}
