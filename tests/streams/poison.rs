//! A message that rabbitmq-stream-client 0.11 cannot decode (its properties section over
//! 254 bytes, which that client encodes wrongly, as another program using it wrote it)
//! sits between events: a reader and a service's handlers get every event around it, and
//! the service's stored offset moves past it. Before, the consumer failed on that chunk
//! again at every resubscription, forever.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use pubsub::Uuid;
use pubsub::prelude::*;
use pubsub::stream::{StartAt, StreamConsumption, StreamNaming};
use pubsub::streams::StreamTransport;
use rabbitmq_stream_client::types::Message as WireMessage;

use crate::support;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "poison", action = "noted")]
struct Noted {
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_goes_on_past_a_message_the_client_cannot_decode() {
    let Some(config) = support::stream_config() else {
        return;
    };
    let run = Uuid::now_v7().simple().to_string();
    let config = config.naming(StreamNaming::new(format!("poison-{run}")));
    let transport = StreamTransport::new(config.clone());
    let bus = Bus::publisher(format!("poison-{run}"), transport.clone());
    let stream = config.naming.stream_of_domain("poison");
    bus.publish(&Noted { n: 1 }).await.unwrap();
    let environment = support::raw_stream_environment(&config).await;
    let producer = environment
        .producer()
        .build(&stream)
        .await
        .expect("a raw producer");
    let bad = WireMessage::builder()
        .body(b"{}".to_vec())
        .properties()
        .subject(format!("poison.{}", "x".repeat(240)))
        .correlation_id(Uuid::now_v7().to_string())
        .message_builder()
        .build();
    producer
        .send_with_confirm(bad)
        .await
        .expect("the broker takes it");
    let _ = producer.close().await;
    // after it, chunks of several events
    let after = (2..=21).map(|n| {
        let bus = bus.clone();
        async move { bus.publish(&Noted { n }).await }
    });
    for published in futures::future::join_all(after).await {
        published.unwrap();
    }
    let expected: Vec<u32> = (1..=21).collect();

    // an anonymous reader
    let mut reader = bus
        .subscribe::<Noted>()
        .start_at(StartAt::First)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let next = tokio::time::timeout(Duration::from_secs(20), reader.next()).await;
        let noted = next
            .expect("the next event in time")
            .expect("the stream goes on");
        seen.push(
            noted
                .expect("no error item: the bad chunk is skipped")
                .event
                .n,
        );
    }
    assert_eq!(
        seen, expected,
        "every event around the bad message, once, in order"
    );

    // a service's handler, whose stored offset moves past it
    let handled = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&handled);
    let service = Bus::builder()
        .service(format!("poison-{run}-service"))
        .transport(transport.clone())
        .select_handlers(pubsub::HandlerSelection::None)
        .handler(pubsub::Handler::typed(
            "note",
            move |noted: Noted, _ctx: Context| {
                recorded.lock().unwrap().push(noted.n);
                async { Ok::<_, HandlerError>(()) }
            },
        ))
        .stream_consumption(StreamConsumption::new().start_at(StartAt::First))
        .build()
        .await
        .unwrap();
    let task = service.spawn().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while handled.lock().unwrap().len() < expected.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handled only {:?}",
            handled.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.close().await.unwrap();
    task.await.unwrap().unwrap();
    let mut handled = handled.lock().unwrap().clone();
    handled.sort_unstable();
    assert_eq!(handled, expected, "every event handled once");
    let stored = transport
        .stored_offset(&format!("poison-{run}-service"), &stream)
        .await
        .unwrap();
    assert_eq!(
        stored,
        transport.last_offset(&stream).await.unwrap(),
        "stored past the bad chunk"
    );
    transport.delete_stream(&stream).await.unwrap();
    bus.close().await.unwrap();
}
