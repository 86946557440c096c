//! The transport conformance suite against RabbitMQ (`RABBITMQ_URL`; see
//! `support::broker`), every case the AMQP transport's capabilities allow, and exactly
//! those.

use std::sync::Arc;

use futures::future::BoxFuture;
use pubsub::amqp::{AmqpConfig, AmqpTransport};
use pubsub::testing::conformance::{self, Broker};
use pubsub::{Message, transport::Transport};

struct RabbitMq {
    config: AmqpConfig,
}

impl Broker for RabbitMq {
    fn connect(&self) -> BoxFuture<'_, Arc<dyn Transport>> {
        let transport: Arc<dyn Transport> = Arc::new(AmqpTransport::new(self.config.clone()));
        Box::pin(std::future::ready(transport))
    }

    fn dead_letters<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Vec<Message>> {
        Box::pin(async move {
            let transport = AmqpTransport::new(self.config.clone());
            let dead = transport
                .dead_letters(service)
                .await
                .unwrap_or_else(|e| panic!("reading the dead letters of {service}: {e}"));
            let dead = dead.into_iter().map(|d| d.message).collect();
            let _ = transport.close().await;
            dead
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_against_rabbitmq() {
    let Some(config) = crate::support::amqp_config() else {
        return;
    };
    let broker = RabbitMq {
        // an exchange of the suite's own: queues bound to `#` on the default one (the
        // e-commerce example's analytics) must not collect the suite's events
        config: config.exchange("conformance.events"),
    };
    // a case that fails panics here
    let ran = conformance::run_all(&broker).await;
    // what queues cannot do (replay, the stream cases)
    let expected = [
        "resume_after_restart",
        "only_handled_prefix_is_stored",
        "failures_go_to_the_error_stream",
        "single_active_consumer_takes_over",
        "start_positions",
        "new_service_reads_history",
    ];
    crate::support::assert_skipped("RabbitMQ", &ran, &expected);
}
