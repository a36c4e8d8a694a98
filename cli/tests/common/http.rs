//! Requests to a run's HTTP server (`--http`), for the tests of the API
//! and metrics (`http.rs`, `metrics.rs`).

use std::time::Duration;

use serde_json::Value;

/// A client that returns 4xx/5xx responses instead of failing, through no
/// proxy.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
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
