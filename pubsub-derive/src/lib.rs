//! Procedural macros of `pubsub`: `#[derive(Event)]` and `#[handler]`.
//!
//! Use them through the `pubsub` facade, which re-exports them as `pubsub::Event` and
//! `pubsub::handler` (and in `pubsub::prelude`). Generated code only names
//! `::pubsub::__private::...`, so a service depends on `pubsub` alone; a crate that renames
//! the facade says so with `crate = "path"`.
//!
//! Each macro parses its input (`event::attr`, `handler::attr`), validates it (collecting
//! every error in a `ctxt::Ctxt` so that all are reported at once, each at the offending
//! token), then generates code (`event::expand`, `handler::expand`).

mod ctxt;
mod event;
mod handler;
mod meta;
mod pattern;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `pubsub::Event`: the routing key `domain.action` (or a key template with
/// parameters), the schema version and the payload codec of a struct or enum.
///
/// ```ignore
/// use pubsub::prelude::*;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(domain = "order", action = "created", version = 2)]
/// pub struct OrderCreated {
///     pub order_id: String,
/// }
///
/// assert_eq!(OrderCreated::KEY, "order.created");
/// assert_eq!(OrderCreated::VERSION, 2);
/// ```
///
/// # Options of `#[event(...)]`
///
/// | option | value | default |
/// |---|---|---|
/// | `domain` | first word of the key: `[a-z0-9_-]+` | required, unless `key` |
/// | `action` | second word of the key: `[a-z0-9_-]+` | required, unless `key` |
/// | `key` | the whole key instead of `domain` and `action`: words of `[a-z0-9_-]`, each but the first may be one `{field}` placeholder, `"session.{session_id}.code_updated"` | — |
/// | `version` | schema version, an integer ≥ 1 | `1` |
/// | `codec` | `"json"` (serde) or `"protobuf"` (prost, facade feature `protobuf`) | `"json"` |
/// | `reply` | a type (`reply = UserProfile`, serde, sent as JSON): the type is a request, answered with a value of it (`bus.request(&req)`); its handlers return `Result<UserProfile, E>` | none: an event, whose handlers return `Result<(), E>` |
/// | `crate` | path of the `pubsub` facade if it is renamed, e.g. `"my_pubsub"` | `"::pubsub"` |
///
/// The key `domain.action` is at most 255 bytes (AMQP's limit). Its words are deliberately
/// stricter than what handler patterns accept, which must also match keys chosen by other
/// publishers.
///
/// With placeholders, the key is the event's type, and each publish is routed by the key
/// filled from the fields (`session.42.code_updated`): each field's type must implement
/// `pubsub::KeyWord`, and a value that is empty or holds `.`, `*`, `#` or whitespace is
/// refused at publish time. The derive also generates `KEY_PARAMS`, `PATTERN` (each
/// placeholder as `*`, what a typed handler binds by default), `routing_key()`, and per
/// parameter a constant `CodeUpdated::SESSION_ID: pubsub::KeyParam<CodeUpdated, u64>`
/// with the type's visibility. `DOMAIN` is the first word, `ACTION` the rest.
///
/// ```ignore
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(key = "session.{session_id}.code_updated")]
/// pub struct CodeUpdated { pub session_id: u64, pub delta: String }
///
/// assert_eq!(CodeUpdated { session_id: 42, delta: "+x".into() }.routing_key()?, "session.42.code_updated");
/// ```
///
/// A protobuf event derives `prost::Message` instead of serde's traits:
///
/// ```ignore
/// #[derive(Clone, PartialEq, prost::Message, pubsub::Event)]
/// #[event(domain = "payment", action = "settled", codec = "protobuf")]
/// pub struct PaymentSettled {
///     #[prost(string, tag = "1")]
///     pub payment_id: String,
/// }
/// ```
///
/// # Compile errors
///
/// A missing `#[event]`, `domain` or `action`; `key` with `domain` or `action`; an empty
/// word, a word with a dot, a wildcard or a character outside `[a-z0-9_-]`; a key over 255
/// bytes; a placeholder that is not a whole word, is the first word, names no field (or a
/// field named `key`, `version`, ... whose constant would shadow `Event`'s), or names one
/// twice; a key with fewer than two words; a placeholder's field whose type is not a
/// `KeyWord` (reported at the type); `version = 0` or a
/// version that is not a `u32` literal; an unknown or repeated option; an unknown codec; a
/// `reply` that is a string or `()`, or a reply type that is not serde-serializable;
/// generic types (events are `'static` and routed by one fixed key) and unions. Every error
/// points at the offending token, and all of them are reported at once.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(&input)
        .unwrap_or_else(|error| event::fallback(&input, error))
        .into()
}

/// Registers an `async fn` as an event handler, found by the bus at link time.
///
/// The first argument is the event: a type that derives `Event` (and `Clone`), handled on
/// its own key, or `RawEvent` for any key matching the pattern. The optional second
/// argument is the `Context`. The fn returns `Result<(), E>` for any `E` that converts into
/// `HandlerError` (every `std::error::Error` does); a handler of a request
/// (`#[event(..., reply = UserProfile)]`) returns `Result<UserProfile, E>`, and its reply goes
/// back to the caller.
///
/// ```ignore
/// use pubsub::prelude::*;
///
/// // Subscribes to `OrderCreated::PATTERN`, its key "order.created".
/// #[handler]
/// async fn reserve_stock(event: OrderCreated, ctx: Context) -> Result<(), HandlerError> {
///     ctx.publish(&StockReserved { order_id: event.order_id }).await?;
///     Ok(())
/// }
///
/// // Any key matching the pattern, undecoded.
/// #[handler("order.#", name = "order-audit", timeout = "5s", retries = 3, service = "audit")]
/// async fn audit(event: RawEvent) -> Result<(), HandlerError> {
///     println!("{} ({} bytes)", event.key(), event.body().len());
///     Ok(())
/// }
/// ```
///
/// # Arguments of `#[handler(...)]`
///
/// | argument | meaning | default |
/// |---|---|---|
/// | `"pattern"` (first, no key) | AMQP topic pattern: `*` is one word, `#` zero or more, any other word is matched exactly. Required for `RawEvent`; on a typed handler it narrows the event's pattern (`"session.42.code_updated"` binds one session of `session.{session_id}.code_updated`) and is checked to match the event's key, a placeholder being one word | the event's pattern: its key, each placeholder as `*` |
/// | `name = "..."` | registered name, shown in logs and dead letters | the fn's name |
/// | `timeout = "5s"` | per-invocation timeout: `ms`, `s`, `m` or `h`, greater than zero | the bus's |
/// | `retries = 3` | retries with the bus's default policy (`0`: none) | the bus's |
/// | `retry = "slow"` | a retry policy the bus defines with `BusBuilder::define_retry_policy("slow", ..)`; excludes `retries` | — |
/// | `service = "billing"` | run only on buses of this service | the binary's service: run on the buses of one service per process (a bus of a second service that would run it fails to build, naming it) |
/// | `foreign` | a `RawEvent` pattern for events other services define: `build()` does not warn that it matches none of the event types linked into the binary | warn |
/// | `crate = "my_pubsub"` | path of the `pubsub` facade if it is renamed | `"::pubsub"` |
///
/// A pattern is at most 255 bytes (AMQP's limit) of dot-separated words. As on RabbitMQ, a
/// word is any non-empty text without `.`, case-sensitive: `"Order.Created"`, `"заказ.*"` and
/// `"a+b.#"` bind to keys that other publishers chose. Rejected as likely mistakes: an empty
/// word (`"a..b"`, `"a."`), a word that contains `*` or `#` without being one (`"order.cre*"`:
/// there is no prefix matching) and ASCII control characters (tab, newline, ...).
///
/// The fn itself is kept as written, so it can also be called directly, e.g. in tests.
///
/// Beside it, in the type namespace, `#[handler]` declares a hidden empty struct of the same
/// name and visibility, which `pubsub::handlers![path::to::fn]` resolves (so a path that
/// reaches the fn, through `use` declarations too, reaches it). Therefore no module or type
/// of that name may sit beside a handler fn, and the compiler calls it a struct in errors
/// about such paths.
///
/// Each attempt of a handler runs in a task of its own (`Isolation::Task`, the default),
/// with its timeout enforced from outside; with `Isolation::Inline` handlers share the bus's
/// consumer task. Either way, blocking work belongs in `tokio::task::spawn_blocking`.
///
/// # Compile errors
///
/// A fn that is not `async`, generic or a method; no argument or more than two; a missing
/// return type; a pattern that breaks the rules above; a `RawEvent` handler without a pattern;
/// an unknown or repeated argument; `retries` with `retry`; a bad timeout; a name (given or the
/// fn's) with characters other than ASCII letters, digits, `_`, `-`, `.` and `:`. The trait
/// bounds of the generated code report, at the offending type, a first argument that is not
/// an event, a second argument that is not `Context` and a return type that is not
/// `Result<(), E>` for an event or `Result<Reply, E>` for a request (the message names the
/// type expected); a typed handler whose pattern can never match its event's key fails constant
/// evaluation at the pattern.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    handler::expand(args.into(), item.clone())
        .unwrap_or_else(|error| handler::fallback(item, error))
        .into()
}
