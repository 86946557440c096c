//! The transport conformance suite against RabbitMQ Streams (`RABBITMQ_STREAM_HOST` /
//! `RABBITMQ_STREAM_PORT`; see `support::broker`), every case the streams transport's
//! capabilities allow, and exactly those. Streams are named under a prefix of this run's
//! own and deleted at the end.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use pubsub::streams::{StreamConfig, StreamTransport};
use pubsub::testing::conformance::{self, Broker};
use pubsub::{Message, Uuid, stream::StreamNaming, transport::Transport};

use crate::support;

struct RabbitMqStreams {
    config: StreamConfig,
    /// Every transport made, to delete the streams they created.
    made: Mutex<Vec<StreamTransport>>,
}

impl RabbitMqStreams {
    fn transport(&self) -> StreamTransport {
        // one instance id per connection: two buses of one service are two instances,
        // and two running producers must never share a name
        let instance = Uuid::now_v7().simple().to_string();
        let transport = StreamTransport::new(self.config.clone().instance(instance));
        self.made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(transport.clone());
        transport
    }
}

impl Broker for RabbitMqStreams {
    fn connect(&self) -> BoxFuture<'_, Arc<dyn Transport>> {
        let transport: Arc<dyn Transport> = Arc::new(self.transport());
        Box::pin(std::future::ready(transport))
    }

    fn dead_letters<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Vec<Message>> {
        Box::pin(async move {
            let transport = self.transport();
            let dead = transport
                .dead_letters(service)
                .await
                .unwrap_or_else(|e| panic!("reading the error stream of {service}: {e}"));
            let _ = transport.close().await;
            dead.into_iter().map(|d| d.message).collect()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_against_rabbitmq_streams() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let _one = support::one_at_a_time().await;
    let prefix = support::namespace("conformance");
    let config = config.naming(StreamNaming::new(prefix));
    let broker = RabbitMqStreams {
        config,
        made: Mutex::new(Vec::new()),
    };
    // a case that fails panics here
    let ran = conformance::run_all(&broker).await;
    let made: Vec<StreamTransport> = broker
        .made
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let cleaner = broker.transport();
    for transport in &made {
        for stream in transport.streams_created().await {
            cleaner
                .delete_stream(&stream)
                .await
                .expect("deleting a stream");
        }
    }
    let _ = cleaner.close().await;
    // what a log cannot do (competing consumers, requeue, delayed redelivery) and request/reply
    // (streams have no reply-to)
    support::assert_skipped(
        "RabbitMQ Streams",
        &ran,
        &[
            "delayed_retry_waits_its_delay",
            "competing_consumers",
            "no_loss_across_resubscribe",
            "request_reply",
            "request_times_out",
            "request_without_responder",
            "first_reply_wins",
            "closing_fails_waiting_requests",
        ],
    );
}
