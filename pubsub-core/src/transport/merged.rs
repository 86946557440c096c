//! One consumer over several: a service reading the streams of several domains.

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::{BoxFuture, select_all};

use super::{Consumer, Delivery, TransportError};

/// The deliveries of several consumers as one, taken fairly (the consumer asked first
/// turns round). Ends when every one has ended. For transports that read a super
/// stream's partitions, each with a consumer of its own.
///
/// ```
/// use pubsub::transport::{Consumer, MergedConsumer};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pubsub::transport::TransportError> {
/// let merged = MergedConsumer::new(Vec::new());
/// let mut merged: Box<dyn Consumer> = Box::new(merged);
/// assert!(merged.next().await.is_none(), "no consumer: ended at once");
/// # Ok(())
/// # }
/// ```
pub struct MergedConsumer {
    consumers: Vec<Box<dyn Consumer>>,
    /// Consumers that ended.
    ended: Vec<bool>,
    turn: usize,
}

impl std::fmt::Debug for MergedConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergedConsumer")
            .field("consumers", &self.consumers.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl MergedConsumer {
    /// The deliveries of `consumers` as one.
    pub fn new(consumers: Vec<Box<dyn Consumer>>) -> Self {
        Self {
            ended: vec![false; consumers.len()],
            consumers,
            turn: 0,
        }
    }

    /// One consumer as it is, several merged (the streams of a bus, a super stream's
    /// partitions): a single stream pays nothing for merging.
    pub fn of(mut consumers: Vec<Box<dyn Consumer>>) -> Box<dyn Consumer> {
        match consumers.pop() {
            Some(only) if consumers.is_empty() => only,
            last => {
                consumers.extend(last);
                Box::new(Self::new(consumers))
            }
        }
    }
}

type Next<'a> = BoxFuture<'a, (usize, Option<Result<Delivery, TransportError>>)>;

#[async_trait]
impl Consumer for MergedConsumer {
    /// Cancel-safe: each consumer's `next` is, and only the one that completed took a
    /// delivery.
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        loop {
            let count = self.consumers.len();
            if self.ended.iter().all(|ended| *ended) {
                return None;
            }
            self.turn = (self.turn + 1) % count.max(1);
            let mut waiting: Vec<Next<'_>> = self
                .consumers
                .iter_mut()
                .enumerate()
                .filter(|(index, _)| !self.ended[*index])
                .map(|(index, consumer)| consumer.next().map(move |next| (index, next)).boxed())
                .collect();
            let turn = self.turn % waiting.len();
            waiting.rotate_left(turn);
            let ((index, next), _, _) = select_all(waiting).await;
            match next {
                None => self.ended[index] = true,
                Some(next) => return Some(next),
            }
        }
    }

    async fn cancel(&mut self) -> Result<(), TransportError> {
        let mut outcome = Ok(());
        for consumer in &mut self.consumers {
            if let Err(error) = consumer.cancel().await {
                outcome = Err(error);
            }
        }
        outcome
    }

    async fn close(self: Box<Self>) -> Result<(), TransportError> {
        let mut outcome = Ok(());
        for consumer in self.consumers {
            if let Err(error) = consumer.close().await {
                outcome = Err(error);
            }
        }
        outcome
    }
}
