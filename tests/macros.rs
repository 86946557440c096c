//! Tests of `#[derive(Event)]` and `#[handler]`: what they generate, that handlers register
//! at link time, and that code using them needs nothing but the `pubsub` facade. What they
//! accept and reject at compile time is checked by pubsub-ui-tests (trybuild).

use pubsub::codec::{Codec, JSON, Json};
use pubsub::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(domain = "order", action = "created")]
struct OrderCreated {
    order_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(
    domain = "user_profile",
    action = "name-changed",
    version = 7,
    codec = "json"
)]
enum NameChanged {
    First(String),
    Last(String),
}

fn content_type<T: Event>() -> &'static str {
    <<T as Event>::Codec as Codec<T>>::CONTENT_TYPE
}

#[test]
fn event_constants_come_from_the_attribute() {
    assert_eq!(OrderCreated::DOMAIN, "order");
    assert_eq!(OrderCreated::ACTION, "created");
    assert_eq!(OrderCreated::KEY, "order.created");
    assert_eq!(OrderCreated::VERSION, 1, "version defaults to 1");
    assert_eq!(
        content_type::<OrderCreated>(),
        JSON,
        "codec defaults to JSON"
    );

    assert_eq!(NameChanged::DOMAIN, "user_profile");
    assert_eq!(NameChanged::ACTION, "name-changed");
    assert_eq!(NameChanged::KEY, "user_profile.name-changed");
    assert_eq!(NameChanged::VERSION, 7);
    assert_eq!(content_type::<NameChanged>(), JSON);
}

#[test]
fn derived_json_codec_round_trips() {
    let event = OrderCreated {
        order_id: "A1".into(),
    };
    let bytes = event.encode().expect("encodes");
    assert_eq!(&bytes[..], br#"{"order_id":"A1"}"#);
    let decoded: OrderCreated =
        <Json as Codec<OrderCreated>>::decode(&bytes, OrderCreated::KEY).expect("decodes");
    assert_eq!(decoded, event);
    let _ = (
        NameChanged::First(String::new()),
        NameChanged::Last(String::new()),
    );
}

#[cfg(feature = "protobuf")]
mod protobuf {
    use pubsub::prelude::*;

    #[derive(Clone, PartialEq, prost::Message, Event)]
    #[event(
        domain = "payment",
        action = "captured",
        version = 2,
        codec = "protobuf"
    )]
    pub(crate) struct PaymentCaptured {
        #[prost(string, tag = "1")]
        pub(crate) payment_id: String,
    }

    #[test]
    fn protobuf_codec_is_selected() {
        assert_eq!(PaymentCaptured::KEY, "payment.captured");
        assert_eq!(PaymentCaptured::VERSION, 2);
        assert_eq!(
            super::content_type::<PaymentCaptured>(),
            pubsub::codec::PROTOBUF
        );
        let event = PaymentCaptured {
            payment_id: "P1".into(),
        };
        assert_eq!(event.encode().expect("encodes").len(), 4);
    }
}

// Handlers in the test crate itself: they compile, stay callable and register.
const TYPED_LINE: u32 = line!() + 2;
#[handler]
async fn typed(event: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
    let _ = (event, ctx);
    Ok(())
}

#[handler(
    "order.#",
    name = "order-audit",
    timeout = "5s",
    retries = 2,
    service = "audit"
)]
async fn audit(event: RawEvent) -> Result<(), HandlerError> {
    let _ = event.key();
    Ok(())
}

#[test]
fn handler_fns_stay_callable() {
    // `#[handler]` keeps the fn as written: it can be called (and unit-tested) directly.
    fn assert_send<F: std::future::Future + Send>(_: &F) {}
    let future = typed_without_ctx(OrderCreated {
        order_id: "A1".into(),
    });
    assert_send(&future);
    let _ = (typed, audit);
}

#[handler]
async fn typed_without_ctx(_event: OrderCreated) -> Result<(), HandlerError> {
    Ok(())
}

/// The `Debug` form of every registration: `HandlerRegistration`'s fields are private and
/// this test must not depend on the registry's public view, which lives in pubsub-core.
fn registrations() -> Vec<String> {
    pubsub::__private::inventory::iter::<pubsub::__private::HandlerRegistration>
        .into_iter()
        .map(|registration| format!("{registration:?}"))
        .collect()
}

fn registration(name: &str) -> String {
    let all = registrations();
    let needle = format!("name: {name:?},");
    all.iter()
        .find(|r| r.contains(&needle))
        .cloned()
        .unwrap_or_else(|| panic!("no handler named {name:?} in the registry: {all:#?}"))
}

#[test]
fn handlers_are_registered_at_link_time() {
    let typed = registration("typed");
    assert!(typed.contains(r#"pattern: "order.created""#), "{typed}");
    assert!(
        typed.contains(r#"event_key: Some("order.created")"#),
        "{typed}"
    );
    assert!(typed.contains(r#"service: None"#), "{typed}");
    assert!(typed.contains(r#"module_path: "macros""#), "{typed}");
    assert!(typed.contains(r#"file: "tests/macros.rs""#), "{typed}");
    assert!(
        typed.contains(&format!("line: {TYPED_LINE}")),
        "the line of `async fn typed`: {typed}"
    );

    let audit = registration("order-audit");
    assert!(audit.contains(r#"pattern: "order.#""#), "{audit}");
    assert!(audit.contains("event_key: None"), "{audit}");
    assert!(audit.contains(r#"service: Some("audit")"#), "{audit}");

    let nested = registration("in_module");
    assert!(
        nested.contains(r#"module_path: "macros::nested""#),
        "{nested}"
    );
}

mod nested {
    use super::OrderCreated;
    use pubsub::{HandlerError, handler};

    #[handler]
    pub(crate) async fn in_module(_event: OrderCreated) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[test]
fn facade_only_crate_compiles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
        .join("facade-only");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["check", "--offline", "--quiet", "--manifest-path"])
        .arg(root.join("tests/facade-only/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("runs cargo");
    assert!(
        output.status.success(),
        "tests/facade-only does not compile with only `pubsub` (and serde, tokio) as \
         dependencies:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The README's tour is a user's crate: its `rust` block, with the dependencies the README
/// lists before it (`serde` with `derive`, `tokio` with `rt-multi-thread` and `macros`)
/// and nothing else, compiles.
#[test]
fn the_readme_tour_compiles_as_a_user_crate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("the README");
    let tour = readme
        .split_once("## A tour")
        .and_then(|(_, rest)| rest.split_once("```rust"))
        .and_then(|(_, rest)| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(code, _)| code)
        .expect("a ```rust block under \"## A tour\"");
    assert!(
        readme.contains(r#"serde = { version = "1", features = ["derive"] }"#)
            && readme
                .contains(r#"tokio = { version = "1", features = ["rt-multi-thread", "macros"] }"#),
        "the README lists the tour's dependencies as this test uses them"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let krate = target.join("readme-tour");
    std::fs::create_dir_all(krate.join("src")).expect("the tour's crate");
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"readme-tour\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
             publish = false\n\n[workspace]\n\n[dependencies]\n\
             pubsub = {{ path = {:?} }}\n\
             serde = {{ version = \"1\", features = [\"derive\"] }}\n\
             tokio = {{ version = \"1\", features = [\"rt-multi-thread\", \"macros\"] }}\n",
            root.display().to_string()
        ),
    )
    .expect("its Cargo.toml");
    std::fs::write(krate.join("src/main.rs"), tour).expect("its main.rs");
    let _ = std::fs::remove_dir_all(krate.join("src/bin"));
    // the facade-only crate's target: the dependencies are built once for both
    let check = |args: &[&str]| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        std::process::Command::new(cargo)
            .args(["check", "--offline", "--quiet", "--manifest-path"])
            .arg(krate.join("Cargo.toml"))
            .args(args)
            .env("CARGO_TARGET_DIR", target.join("facade-only"))
            .output()
            .expect("runs cargo")
    };
    let output = check(&[]);
    assert!(
        output.status.success(),
        "the README's tour does not compile as a user's crate:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // the same crate using the harness without the `testing` feature: told what to enable
    std::fs::create_dir_all(krate.join("src/bin")).expect("a bin directory");
    std::fs::write(
        krate.join("src/bin/harness.rs"),
        "use pubsub::prelude::*;\nfn main() { let _ = TestHarness::start(); }\n",
    )
    .expect("the harness bin");
    let output = check(&["--bin", "harness"]);
    let _ = std::fs::remove_dir_all(krate.join("src/bin"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("needs the `testing` feature of `pubsub`"),
        "the harness without the feature does not say what to enable:\n{stderr}"
    );
}
