//! Getting past a chunk the stream client cannot decode.
//!
//! rabbitmq-stream-client 0.11 writes an AMQP properties section of 255 bytes or more
//! wrongly (a `list8` type code followed by a 4-byte size), and fails to decode the whole
//! chunk holding such a message whenever it is delivered. A consumer that only
//! resubscribed after the error would get the same chunk, and the same error, forever. So
//! the consumer finds where the next chunk it can decode starts, by subscribing at later
//! offsets (the broker delivers the chunk holding the offset asked for), and resumes
//! there; the offsets in between are lost to every reader using that client.

use std::time::Duration;

use futures::StreamExt;
use rabbitmq_stream_client::error::{ClientError, ConsumerDeliveryError, ProtocolError};
use rabbitmq_stream_client::types::OffsetSpecification;

use crate::session::Session;

/// How long a probe waits for a chunk: past the end of the stream, none comes.
const PROBE_WAIT: Duration = Duration::from_millis(500);

/// Whether the client failed to decode what the broker delivered.
pub(super) fn is_undecodable(error: &ConsumerDeliveryError) -> bool {
    matches!(
        error,
        ConsumerDeliveryError::Client(ClientError::Protocol(ProtocolError::Decode(_)))
    )
}

/// What a subscription at one offset got first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The client decoded the chunk holding the offset.
    Decodes,
    /// It failed to decode it.
    Undecodable,
    /// Nothing came: the offset is past the end of the stream.
    Nothing,
}

/// The first offset after `from` (which the client cannot decode) whose chunk it can
/// decode, or that is past the end of the stream: found by doubling the distance until a
/// probe gets past the bad chunk, then halving it back. `None` if a probe could not
/// subscribe (the connection is in trouble): nothing is skipped then.
pub(super) async fn first_decodable_after(
    session: &Session,
    stream: &str,
    from: u64,
) -> Option<u64> {
    // `bad` is an offset known undecodable, `good` one known not to be
    let mut bad = from;
    let mut step = 1u64;
    let mut good = loop {
        let at = from.saturating_add(step);
        match probe(session, stream, at).await? {
            Probe::Undecodable => bad = at,
            Probe::Decodes | Probe::Nothing => break at,
        }
        step = step.saturating_mul(2);
    };
    while good - bad > 1 {
        let middle = bad + (good - bad) / 2;
        match probe(session, stream, middle).await? {
            Probe::Undecodable => bad = middle,
            Probe::Decodes | Probe::Nothing => good = middle,
        }
    }
    Some(good)
}

/// Subscribes anonymously at `offset` and says what came first; `None` if it could not
/// subscribe.
async fn probe(session: &Session, stream: &str, offset: u64) -> Option<Probe> {
    let environment = session.environment().await.ok()?;
    let built = environment
        .consumer()
        .offset(OffsetSpecification::Offset(offset))
        .build(stream);
    let mut consumer = tokio::time::timeout(session.config.timeout, built)
        .await
        .ok()?
        .ok()?;
    let probed = match tokio::time::timeout(PROBE_WAIT, consumer.next()).await {
        Ok(Some(Ok(_))) => Probe::Decodes,
        Ok(Some(Err(error))) if is_undecodable(&error) => Probe::Undecodable,
        _ => Probe::Nothing,
    };
    let _ = tokio::time::timeout(PROBE_WAIT, consumer.handle().close()).await;
    Some(probed)
}
