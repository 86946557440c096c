//! The tests against a RabbitMQ broker over AMQP 0-9-1 (feature `amqp`): the broker is up,
//! the transport connects, plain AMQP clients and the bus understand each other, the
//! router agrees with the topic exchange, a restart removes the bindings its handlers no
//! longer ask for, a per-process service leaves nothing on the broker, and the conformance
//! suite. Without a broker
//! configured they are skipped, or fail when `PUBSUB_REQUIRE_BROKER` is set (see
//! `support::broker`). The tests that stop or restart the broker are in `tests/faults`.

#[path = "../support/mod.rs"]
mod support;
// an event with a key parameter and its handlers (a domain of this binary's only)
#[path = "../support/sessions.rs"]
mod sessions;
// not in `support`: its event would be a domain of every binary's (streams read them all)
#[path = "../support/pings.rs"]
mod pings;
// per-entity subscriptions, shared with the memory and Streams binaries
#[path = "../support/desks.rs"]
mod desks;

mod bindings;
mod broker;
mod conformance;
mod connect;
mod interop;
mod key_params;
mod management;
mod outage;
mod per_process;
mod requests;
mod router;
mod runtime_end;
mod shared;
mod subscriptions;
