//! The transports under the faults a production broker has, against the real broker:
//! connections closed by the broker, the broker stopped and started, a memory alarm,
//! consumer processes killed, queues and streams deleted under their consumers, poison.
//! Every test counts the events it published, confirmed and handled, and shows that none
//! the broker confirmed was lost.
//!
//! A binary of its own: these tests stop, restart and alarm the broker, and close every
//! connection to it, so no other test may run beside them. Cargo runs test binaries one
//! after the other, and within this one the tests take turns (`support::one_at_a_time`).
//! Some tests also run a test of this binary as a child process (`fixture::Child`).

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "amqp")]
mod amqp;
mod fixture;
mod kill;
#[cfg(feature = "streams")]
mod streams;
