//! What the RabbitMQ management API (`RABBITMQ_MANAGEMENT_URL`) says, for assertions: the
//! AMQP URL's credentials, as the transport uses them.

use crate::support::broker;

/// `GET /api{path}` as JSON, or `None` for a 404; panics if the API does not answer.
/// Path segments are the caller's to encode (`%2F` for the vhost `/`).
pub(crate) fn get(path: &str) -> Option<serde_json::Value> {
    let api = broker::required("RABBITMQ_MANAGEMENT_URL").expect("checked by the test");
    let amqp = broker::amqp_url().expect("checked by the test");
    let userinfo = amqp
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map_or("guest:guest", |(userinfo, _)| userinfo);
    let (scheme, host) = api.split_once("://").expect("a URL");
    let url = format!(
        "{scheme}://{userinfo}@{}/api{path}",
        host.trim_end_matches('/')
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent
        .get(&url)
        .call()
        .unwrap_or_else(|e| panic!("the management API does not answer {path}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("a body");
    match status {
        404 => None,
        200 => Some(serde_json::from_str(&body).expect("JSON")),
        other => panic!("GET {path}: HTTP {other}: {body}"),
    }
}
