//! The transport conformance suite against RabbitMQ Streams (`RABBITMQ_STREAM_HOST` /
//! `RABBITMQ_STREAM_PORT`, as `scripts/broker.sh env` prints them), every case the
//! streams transport's capabilities allow. Skipped without a broker unless
//! `PUBSUB_REQUIRE_BROKER` is set. Streams are named under a prefix of this run's own
//! and deleted at the end.
#![cfg(feature = "streams")]

#[path = "streams/support.rs"]
mod support;

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use pubsub::streams::{StreamConfig, StreamTransport};
use pubsub::testing::conformance::{self, Broker, Ran};
use pubsub::{Message, Uuid, stream::StreamNaming, transport::Transport};

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
    let Some(config) = support::broker() else {
        return;
    };
    let prefix = format!("conformance-{}", Uuid::now_v7().simple());
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
    let skipped: Vec<&str> = ran
        .iter()
        .filter(|(_, r)| !matches!(r, Ran::Passed))
        .map(|(name, _)| *name)
        .collect();
    eprintln!(
        "conformance on RabbitMQ Streams: {} of {} cases passed; skipped {skipped:?}",
        ran.len() - skipped.len(),
        ran.len()
    );
    // what a log cannot do (competing consumers, requeue, delayed redelivery) and RPC
    assert_eq!(
        skipped,
        [
            "delayed_retry_waits_its_delay",
            "competing_consumers",
            "no_loss_across_resubscribe",
            "request_reply",
            "request_times_out"
        ],
        "{ran:?}"
    );
}
