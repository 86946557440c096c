//! The in-memory broker as a [`Transport`]: each call goes to the queue broker or the
//! stream broker, by what it names.

use std::time::Duration;

use async_trait::async_trait;

use super::MemoryTransport;
use super::broker::Topics;
use super::replies::ReplyInbox;
use crate::health::{ConnectionHealth, ConnectionState, TransportHealth};
use crate::metadata::Message;
use crate::stream::StreamNaming;
use crate::transport::{
    Capabilities, Confirmation, Consumer, DeadLetteredMessage, DelayedRedelivery, Outgoing,
    Subscription, Transport, TransportError,
};

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        match self.broker.topics {
            Topics::Queues => "memory",
            Topics::Streams => "memory-streams",
        }
    }

    fn capabilities(&self) -> Capabilities {
        match self.broker.topics {
            Topics::Streams => Capabilities::stream(),
            Topics::Queues => Capabilities {
                delayed_redelivery: DelayedRedelivery::InProcess,
                request_reply: true,
                delivery_count: true,
                ..Capabilities::queue()
            },
        }
    }

    fn stream_naming(&self) -> Option<StreamNaming> {
        (self.broker.topics == Topics::Streams).then(|| self.broker.streams.naming.clone())
    }

    fn health(&self) -> TransportHealth {
        let state = if self.connection.is_closed() {
            ConnectionState::Closed
        } else {
            ConnectionState::Up
        };
        let mut health = TransportHealth::new(self.name());
        health
            .connections
            .push(ConnectionHealth::new("memory", state));
        health
    }

    async fn dead_letters(
        &self,
        service: &str,
    ) -> Result<Vec<DeadLetteredMessage>, TransportError> {
        self.connection.check_open()?;
        MemoryTransport::dead_lettered(self, service)
            .map_err(|e| TransportError::topology(e.to_string()))
    }

    async fn send(&self, outgoing: Outgoing) -> Result<Confirmation, TransportError> {
        self.connection.check_open()?;
        // a long publishing loop gives the other tasks of its thread their turn
        tokio::task::consume_budget().await;
        let Outgoing {
            message,
            destination,
        } = outgoing;
        Ok(Confirmation::ready(
            self.broker.publish(message, destination),
        ))
    }

    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError> {
        self.connection.check_open()?;
        self.broker.declare(subscription)
    }

    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        self.connection.check_open()?;
        self.broker.consume(subscription, &self.connection)
    }

    async fn request(
        &self,
        request: Outgoing,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        if self.broker.topics == Topics::Streams {
            return Err(TransportError::Unsupported {
                what: "request/reply (streams have no reply-to; use MemoryTransport::new())",
                transport: self.name(),
            });
        }
        self.connection.check_open()?;
        let Outgoing {
            mut message,
            destination,
        } = request;
        let inbox = &self.connection.inbox;
        self.broker.queues.open_inbox(inbox);
        let correlation_id = message.metadata.correlation_or_id();
        let reply = inbox.wait(&correlation_id)?;
        // stops waiting however this ends: replied, timed out, failed or dropped
        let _waiting = Waiting(inbox, &correlation_id);
        message.metadata.correlation_id = Some(correlation_id.clone());
        message.metadata.reply_to = Some(inbox.address.clone());
        // mandatory: nothing bound to the key is reported now (no responder)
        self.publish(Outgoing::new(message, destination)).await?;
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => Err(TransportError::TimedOut {
                operation: "request",
                after: timeout,
            }),
        }
    }

    fn dropped_replies(&self) -> Option<u64> {
        Some(self.broker.queues.dropped_replies())
    }

    fn attach(&self) {
        self.connection.buses.attach();
    }

    fn detach(&self) -> bool {
        self.connection.buses.detach()
    }

    async fn close(&self) -> Result<(), TransportError> {
        self.connection.close();
        Ok(())
    }
}

/// A request waiting at its connection's reply address, until dropped.
struct Waiting<'a>(&'a ReplyInbox, &'a str);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::MemoryTransport;
    use crate::transport::{Transport, into_shared};

    #[test]
    fn a_shared_transport_is_not_wrapped_again() {
        let shared: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
        assert!(Arc::ptr_eq(&into_shared(Arc::clone(&shared)), &shared));
        assert_eq!(Arc::strong_count(&shared), 1, "the clone given was dropped");
        assert_eq!(
            into_shared(MemoryTransport::stream_backed()).name(),
            "memory-streams"
        );
    }
}
