//! The AMQP broker the tests run against is up: its port speaks AMQP 0-9-1 and it is
//! RabbitMQ 3.11 or later. Its address comes from `RABBITMQ_URL` (see `support::broker`:
//! skipped without it, a failure when `PUBSUB_REQUIRE_BROKER` is set).

use std::io::{Read, Write};

use crate::support::broker;

/// `(major, minor)` of a version string such as `4.0.5`.
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn amqp_port_speaks_amqp_and_is_rabbitmq_3_11_or_later() {
    let Some(address) = broker::amqp_address() else {
        return;
    };
    let mut stream = broker::tcp(&address, "AMQP");
    stream
        .write_all(b"AMQP\x00\x00\x09\x01")
        .expect("send protocol header");
    let mut header = [0u8; 7];
    stream
        .read_exact(&mut header)
        .expect("a frame header in reply");
    assert_eq!(header[0], 1, "a method frame (connection.start)");
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    let mut payload = vec![0u8; size];
    stream.read_exact(&mut payload).expect("the frame payload");
    assert_eq!(
        &payload[..4],
        &[0, 10, 0, 10],
        "class 10 method 10: connection.start"
    );
    assert_eq!(&payload[4..6], &[0, 9], "AMQP 0-9");
    // server-properties carry `version` as a long string: \x07 "version" 'S' u32 len
    let marker = b"\x07versionS";
    let at = payload
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("server properties name the version");
    let start = at + marker.len();
    let len = u32::from_be_bytes(payload[start..start + 4].try_into().unwrap()) as usize;
    let version = String::from_utf8_lossy(&payload[start + 4..start + 4 + len]).into_owned();
    assert!(
        major_minor(&version) >= (3, 11),
        "RabbitMQ {version} is too old: streams need 3.11+ (tests run against 4.0)"
    );
    eprintln!("AMQP broker: RabbitMQ {version}");
}

#[test]
fn version_comparison() {
    assert!(major_minor("4.0.5") >= (3, 11));
    assert!(major_minor("3.11.0") >= (3, 11));
    assert!(major_minor("3.10.8") < (3, 11));
}
