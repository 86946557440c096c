//! Reading a stream whole, with an unnamed consumer of the client: the offset of its
//! last message, and every message up to it. For [`StreamTransport::read_all`] and
//! [`dead_letters`](pubsub_core::transport::Transport::dead_letters), and for a new consumer's start
//! at [`declare`](pubsub_core::transport::Transport::declare).
//!
//! [`StreamTransport::read_all`]: crate::StreamTransport::read_all

use std::time::Duration;

use futures::StreamExt;
use pubsub_core::Message;
use rabbitmq_stream_client::types::OffsetSpecification;

use crate::connection::bounded;
use crate::convert;
use crate::error::StreamsError;
use crate::session::Session;

/// How long reading the last chunk of a stream waits for its first message: an empty
/// stream sends nothing, and the protocol has no "end of stream" answer.
const FIRST_MESSAGE_WAIT: Duration = Duration::from_millis(300);
/// Once messages come, how long a pause means "that was the end".
const IDLE_WAIT: Duration = Duration::from_millis(100);

impl Session {
    /// The offset of the last message of `stream`, `None` when it has none: its last
    /// chunk is read (delivered whole, so a short pause ends it); an empty stream sends
    /// nothing (see [`FIRST_MESSAGE_WAIT`]).
    pub(crate) async fn last_offset(&self, stream: &str) -> Result<Option<u64>, StreamsError> {
        let mut consumer = self.reader(stream, OffsetSpecification::Last).await?;
        let mut last = None;
        let mut wait = FIRST_MESSAGE_WAIT;
        while let Ok(Some(delivery)) = tokio::time::timeout(wait, consumer.next()).await {
            wait = IDLE_WAIT;
            let delivery =
                delivery.map_err(|e| StreamsError::client(format!("read {stream}"), e))?;
            last = last.max(Some(delivery.offset()));
        }
        let _ = consumer.handle().close().await;
        Ok(last)
    }

    async fn reader(
        &self,
        stream: &str,
        start: OffsetSpecification,
    ) -> Result<rabbitmq_stream_client::Consumer, StreamsError> {
        let environment = self.environment().await?;
        bounded("build a consumer", self.config.timeout, async {
            environment
                .consumer()
                .offset(start)
                .build(stream)
                .await
                .map_err(|e| StreamsError::client(format!("read {stream}"), e))
        })
        .await
    }

    /// Every message of `stream` from `start` to its last one as of now, with offsets;
    /// each message waited for at most the configured timeout.
    pub(crate) async fn read_to_end(
        &self,
        stream: &str,
        start: OffsetSpecification,
    ) -> Result<Vec<(u64, Message)>, StreamsError> {
        let Some(last) = self.last_offset(stream).await? else {
            return Ok(Vec::new());
        };
        let mut consumer = self.reader(stream, start).await?;
        let mut read = Vec::new();
        let outcome = loop {
            let next = tokio::time::timeout(self.config.timeout, consumer.next()).await;
            let delivery = match next {
                Ok(Some(Ok(delivery))) => delivery,
                Ok(Some(Err(e))) => break Err(StreamsError::client(format!("read {stream}"), e)),
                Ok(None) => {
                    break Err(StreamsError::Refused {
                        what: format!("read {stream} to offset {last}"),
                        code: "the subscription ended".to_owned(),
                    });
                }
                Err(_) => {
                    break Err(StreamsError::TimedOut {
                        what: "reading a stream to its end",
                        after: self.config.timeout,
                    });
                }
            };
            let offset = delivery.offset();
            read.push((
                offset,
                convert::from_wire(delivery.message(), stream, offset),
            ));
            if offset >= last {
                break Ok(read);
            }
        };
        let _ = consumer.handle().close().await;
        outcome
    }
}
