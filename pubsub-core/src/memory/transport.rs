//! The in-memory broker as a [`Transport`]: publishing, declaring, consuming, requests
//! and closing a connection, in queue mode or stream mode.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::MemoryTransport;
use super::broker::{Broker, lock};
use super::consumer::MemoryConsumer;
use super::routing::push_all;
use crate::error::TransportError;
use crate::health::{ConnectionHealth, ConnectionState, TransportHealth};
use crate::metadata::Message;
use crate::stream::StreamNaming;
use crate::transport::{
    Capabilities, Confirmation, Consumer, DeadLetteredMessage, DelayedRedelivery, Destination,
    Outgoing, Subscription, Transport,
};

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        if self.stream_mode().is_some() {
            "memory-streams"
        } else {
            "memory"
        }
    }

    fn capabilities(&self) -> Capabilities {
        if self.stream_mode().is_some() {
            return Capabilities::stream();
        }
        Capabilities {
            delayed_redelivery: DelayedRedelivery::InProcess,
            request_reply: true,
            delivery_count: true,
            ..Capabilities::queue()
        }
    }

    fn stream_naming(&self) -> Option<StreamNaming> {
        self.stream_mode().map(|streams| streams.naming.clone())
    }

    fn health(&self) -> TransportHealth {
        let state = if self.check_open().is_ok() {
            ConnectionState::Up
        } else {
            ConnectionState::Closed
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
        self.check_open()?;
        MemoryTransport::dead_letters(self, service)
            .map_err(|e| TransportError::topology(e.to_string()))
    }

    async fn send(&self, outgoing: Outgoing) -> Result<Confirmation, TransportError> {
        self.check_open()?;
        // a long publishing loop gives the other tasks of its thread their turn
        tokio::task::consume_budget().await;
        let Outgoing {
            message,
            destination,
        } = outgoing;
        if self.broker.recording.load(Ordering::Relaxed) {
            lock(&self.broker.published).push(message.clone());
        }
        let message = Arc::new(message);
        if self.stream_mode().is_some() {
            return Ok(Confirmation::ready(self.append(message, destination)));
        }
        let result = match destination {
            Destination::Topic => self.route(&message),
            Destination::Queue(name) => match self.queue(&name) {
                Some(queue) => push_all(&message, [&queue]),
                None => Err(self.refuse_unroutable(&message)),
            },
            Destination::Reply(address) => {
                let waiter = lock(&self.broker.replies).remove(&address);
                match waiter {
                    Some(reply) => {
                        // a requester that gave up dropped its receiver: the reply is lost,
                        // as direct reply-to loses it on the broker
                        let _ = reply.send(Message::clone(&message));
                    }
                    None => {
                        tracing::warn!(%address, id = %message.metadata.id, "no request waits at this reply address; reply dropped")
                    }
                }
                Ok(())
            }
            Destination::Stream { .. } => Err(TransportError::Unsupported {
                what: "streams (yet)",
                transport: "memory",
            }),
        };
        Ok(Confirmation::ready(result))
    }

    async fn declare(&self, subscription: &Subscription) -> Result<(), TransportError> {
        if self.stream_mode().is_some() {
            return self.declare_stream(subscription).map(drop);
        }
        self.declare_queue(subscription).map(drop)
    }

    async fn consume(
        &self,
        subscription: &Subscription,
    ) -> Result<Box<dyn Consumer>, TransportError> {
        if self.stream_mode().is_some() {
            return self.consume_stream(subscription);
        }
        let queue = self.declare_queue(subscription)?;
        let id = self.broker.next_consumer.fetch_add(1, Ordering::Relaxed);
        queue.add_consumer(id, usize::from(subscription.prefetch));
        lock(&self.connection.consumers).push((Arc::clone(&queue), id));
        Ok(Box::new(MemoryConsumer {
            queue,
            id,
            connection: Arc::clone(&self.connection),
        }))
    }

    async fn request(
        &self,
        request: Outgoing,
        timeout: Duration,
    ) -> Result<Message, TransportError> {
        self.check_open()?;
        let Outgoing {
            mut message,
            destination,
        } = request;
        let address = format!("memory.reply-to.{}", uuid::Uuid::now_v7().simple());
        message.metadata.reply_to = Some(address.clone());
        if message.metadata.correlation_id.is_none() {
            message.metadata.correlation_id = Some(message.metadata.id.to_string());
        }
        let (sender, receiver) = oneshot::channel();
        lock(&self.broker.replies).insert(address.clone(), sender);
        let forget = |broker: &Broker| lock(&broker.replies).remove(&address);
        if let Err(error) = self.publish(Outgoing::new(message, destination)).await {
            forget(&self.broker);
            return Err(error);
        }
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => {
                forget(&self.broker);
                Err(TransportError::TimedOut {
                    operation: "request",
                    after: timeout,
                })
            }
        }
    }

    async fn close(&self) -> Result<(), TransportError> {
        if !self.connection.closed.swap(true, Ordering::SeqCst) {
            // its consumers end (woken to see it), their unsettled deliveries go back to
            // their queues, and settling those later fails
            let consumers = std::mem::take(&mut *lock(&self.connection.consumers));
            for (queue, id) in consumers {
                queue.remove_consumer(id);
            }
            // stream readers leave without storing, as on a lost connection
            let readers = std::mem::take(&mut *lock(&self.connection.readers));
            for (log, id) in readers {
                log.detach(id, false);
            }
        }
        Ok(())
    }
}
