//! The broker the integration tests run against is up: its AMQP port speaks AMQP 0-9-1
//! and is RabbitMQ 3.11 or later, and its stream port answers the stream protocol.
//!
//! Addresses come from the environment (`RABBITMQ_URL`, `RABBITMQ_STREAM_HOST`,
//! `RABBITMQ_STREAM_PORT`), as `scripts/broker.sh` prints them. Without them the tests are
//! skipped, unless `PUBSUB_REQUIRE_BROKER` is set (as `scripts/test.sh` does): then a
//! missing or silent broker fails.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

fn required() -> bool {
    std::env::var_os("PUBSUB_REQUIRE_BROKER").is_some()
}

/// `host:port` of the AMQP listener, from `RABBITMQ_URL` or `RABBITMQ_HOST`/`RABBITMQ_PORT`.
fn amqp_address() -> Option<String> {
    if let Ok(url) = std::env::var("RABBITMQ_URL") {
        let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or(rest);
        let host_port = authority.rsplit('@').next().unwrap_or(authority);
        let default_port = if url.starts_with("amqps") { 5671 } else { 5672 };
        return Some(if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:{default_port}")
        });
    }
    let host = std::env::var("RABBITMQ_HOST").ok()?;
    let port = std::env::var("RABBITMQ_PORT").unwrap_or_else(|_| "5672".into());
    Some(format!("{host}:{port}"))
}

fn stream_address() -> Option<String> {
    let host = std::env::var("RABBITMQ_STREAM_HOST").ok()?;
    let port = std::env::var("RABBITMQ_STREAM_PORT").unwrap_or_else(|_| "5552".into());
    Some(format!("{host}:{port}"))
}

fn connect(address: Option<String>, what: &str) -> Option<TcpStream> {
    let Some(address) = address else {
        assert!(
            !required(),
            "PUBSUB_REQUIRE_BROKER is set but no {what} address is"
        );
        eprintln!("skipped: no {what} address in the environment (run scripts/test.sh)");
        return None;
    };
    let stream = TcpStream::connect(&address)
        .unwrap_or_else(|e| panic!("{what} at {address} does not answer: {e}"));
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    Some(stream)
}

/// `(major, minor)` of a version string such as `4.0.5`.
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn amqp_port_speaks_amqp_and_is_rabbitmq_3_11_or_later() {
    let Some(mut stream) = connect(amqp_address(), "AMQP") else {
        return;
    };
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
fn stream_port_answers_the_stream_protocol() {
    let Some(mut stream) = connect(stream_address(), "stream") else {
        return;
    };
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

#[test]
fn version_comparison() {
    assert!(major_minor("4.0.5") >= (3, 11));
    assert!(major_minor("3.11.0") >= (3, 11));
    assert!(major_minor("3.10.8") < (3, 11));
}
