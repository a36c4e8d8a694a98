//! Requests to a run's HTTP server (`--http`), for the tests of the API
//! and metrics (`http.rs`, `metrics.rs`).

use std::time::Duration;

use serde_json::Value;

/// A client that returns 4xx/5xx responses instead of failing, through no
/// proxy, giving up on a call after 30 s.
pub fn agent() -> ureq::Agent {
    agent_with_timeout(Duration::from_secs(30))
}

/// [`agent`] with another time limit per call.
pub fn agent_with_timeout(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Only loopback is spoken to: never through a proxy.
        .proxy(None)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// GET `url` (with a bearer token): the status and the body as JSON (or as
/// text in a string).
pub fn get(url: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = agent().get(url);
    if let Some(token) = bearer {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}
