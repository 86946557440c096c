//! Routing keys with parameters on the in-memory transport: a typed handler binds every
//! entity by default or one entity by its pattern, a value that would change the key's shape
//! is refused before anything is sent, and handlers read the parameters back.

use pubsub::prelude::*;
use pubsub::{Error, KeyError, testing::TestHarness, transport::Bytes};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(key = "session.{session_id}.code_updated")]
struct CodeUpdated {
    session_id: u64,
    delta: String,
}

/// Every session; checks that the context reads the parameter back.
#[handler]
async fn index(update: CodeUpdated, ctx: Context) -> Result<(), HandlerError> {
    let expected = update.session_id.to_string();
    match ctx.key_param("session_id") {
        Some(seen) if seen == expected => Ok(()),
        other => Err(HandlerError::permanent(format!(
            "key_param(\"session_id\") is {other:?} in {}, not {expected:?}",
            ctx.key()
        ))),
    }
}

/// Session 42 only.
#[handler("session.42.code_updated")]
async fn watch_42(_update: CodeUpdated) -> Result<(), HandlerError> {
    Ok(())
}

/// Every session, undecoded: its context knows the parameter from the event type.
#[handler("session.*.code_updated")]
async fn raw_index(event: RawEvent, ctx: Context) -> Result<(), HandlerError> {
    let word = event.key().split('.').nth(1);
    match ctx.key_param("session_id") {
        seen if seen == word => Ok(()),
        other => Err(HandlerError::permanent(format!(
            "key_param(\"session_id\") is {other:?} in {}",
            event.key()
        ))),
    }
}

fn update(session_id: u64) -> CodeUpdated {
    CodeUpdated {
        session_id,
        delta: format!("+{session_id}"),
    }
}

async fn harness() -> TestHarness {
    TestHarness::start(
        Bus::builder()
            .service("editor")
            .select_handlers(pubsub::handlers![index, watch_42, raw_index]),
    )
    .await
    .expect("the harness starts")
}

#[tokio::test]
async fn every_session_reaches_index_and_only_its_own_reaches_watch_42() {
    let harness = harness().await;
    harness.publish(&update(42)).await.unwrap();
    harness.publish(&update(7)).await.unwrap();
    harness.settled().await.unwrap();

    assert_eq!(
        harness.published_keys::<CodeUpdated>(),
        ["session.42.code_updated", "session.7.code_updated"]
    );
    assert_eq!(
        harness.consumed::<CodeUpdated>("index"),
        [update(42), update(7)]
    );
    assert_eq!(harness.consumed::<CodeUpdated>("watch_42"), [update(42)]);
    let keys: Vec<String> = harness
        .calls("watch_42")
        .iter()
        .map(|call| call.key().to_owned())
        .collect();
    assert_eq!(keys, ["session.42.code_updated"]);
    assert_eq!(harness.calls("raw_index").len(), 2);
    for handler in ["index", "watch_42", "raw_index"] {
        assert!(
            harness.failures(handler).is_empty(),
            "{handler}: {:?}",
            harness.failures(handler)
        );
    }
    let message = &harness.published_messages()[0];
    assert_eq!(
        message.metadata.event_type.as_deref(),
        Some("session.{session_id}.code_updated"),
        "the type travels beside the key"
    );
    harness.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_message_with_only_a_routing_key_reaches_the_typed_handlers() {
    let harness = harness().await;
    // what a plain publisher sends: a key and a JSON body, no event type
    let plain = Message::new(
        "session.42.code_updated",
        Bytes::from_static(br#"{"session_id":42,"delta":"+42"}"#),
    );
    harness.bus().publish_message(plain).await.unwrap();
    harness.settled().await.unwrap();
    assert_eq!(harness.consumed::<CodeUpdated>("index"), [update(42)]);
    assert_eq!(harness.consumed::<CodeUpdated>("watch_42"), [update(42)]);
    assert!(
        harness.failures("index").is_empty(),
        "{:?}",
        harness.failures("index")
    );
    harness.shutdown().await.unwrap();
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "chat.{room}.said")]
struct Said {
    room: String,
    text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = "profile.{user}.get", reply = String)]
struct GetProfile {
    user: String,
}

#[tokio::test]
async fn a_value_that_would_change_the_keys_shape_is_refused_and_nothing_is_sent() {
    let harness = harness().await;
    let too_long = "r".repeat(250);
    for (room, reason) in [
        ("", "empty"),
        ("a.b", "`.`"),
        ("lobby*", "wildcard"),
        ("#", "wildcard"),
        ("two words", "whitespace"),
        (too_long.as_str(), "255 bytes"),
    ] {
        let said = Said {
            room: room.to_owned(),
            text: "hi".into(),
        };
        let error = harness.publish(&said).await.unwrap_err();
        let Error::Key(KeyError {
            key_template,
            param,
            value,
            ..
        }) = &error
        else {
            panic!("{room:?}: not a key error: {error}");
        };
        assert_eq!(
            (*key_template, *param, value.as_str()),
            ("chat.{room}.said", "room", room)
        );
        let message = error.to_string();
        assert!(
            message.contains("chat.{room}.said")
                && message.contains("`room`")
                && message.contains(reason),
            "{message}"
        );
    }
    // a request is refused the same way, before it is sent
    let refused = harness
        .request(&GetProfile { user: "a.b".into() })
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("profile.{user}.get"),
        "{refused}"
    );
    assert!(
        harness.published_messages().is_empty(),
        "nothing reached the broker: {:?}",
        harness.published_messages()
    );
    // and a valid one goes out
    harness
        .publish(&Said {
            room: "lobby".into(),
            text: "hi".into(),
        })
        .await
        .unwrap();
    assert_eq!(harness.published_keys::<Said>(), ["chat.lobby.said"]);
    harness.shutdown().await.unwrap();
}

#[test]
fn the_derive_names_the_parameters() {
    assert_eq!(CodeUpdated::KEY, "session.{session_id}.code_updated");
    assert_eq!(CodeUpdated::PATTERN, "session.*.code_updated");
    assert_eq!(CodeUpdated::KEY_PARAMS, ["session_id"]);
    assert_eq!(CodeUpdated::SESSION_ID.name(), "session_id");
    assert_eq!(
        (CodeUpdated::DOMAIN, CodeUpdated::ACTION),
        ("session", "{session_id}.code_updated")
    );
    assert_eq!(update(42).routing_key().unwrap(), "session.42.code_updated");
    let info = pubsub::registry::registered_handlers();
    let binding = |name: &str| {
        info.iter()
            .find(|h| h.name == name)
            .map(|h| h.pattern.clone())
    };
    assert_eq!(binding("index").as_deref(), Some("session.*.code_updated"));
    assert_eq!(
        binding("watch_42").as_deref(),
        Some("session.42.code_updated")
    );
}
