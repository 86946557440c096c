//! The stream listener the tests run against is up and answers the stream protocol. Its
//! address comes from `RABBITMQ_STREAM_HOST`/`RABBITMQ_STREAM_PORT` (see
//! `support::broker`: skipped without them, a failure when `PUBSUB_REQUIRE_BROKER` is set).

use std::io::{Read, Write};

use crate::support::broker;

#[test]
fn stream_port_answers_the_stream_protocol() {
    let Some(address) = broker::stream_address() else {
        return;
    };
    let mut stream = broker::tcp(&address, "stream");
    // PeerProperties request (key 0x0011, version 1, correlation id 1, empty map)
    let request: [u8; 16] = [0, 0, 0, 12, 0x00, 0x11, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
    stream.write_all(&request).expect("send peer properties");
    let mut reply = [0u8; 14];
    stream
        .read_exact(&mut reply)
        .expect("a stream protocol reply");
    assert_eq!(&reply[4..6], &[0x80, 0x11], "a PeerProperties response");
    assert_eq!(&reply[8..12], &[0, 0, 0, 1], "our correlation id");
    assert_eq!(&reply[12..14], &[0, 1], "response code OK");
}
