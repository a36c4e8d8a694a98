//! Delivery to an HTTP receiver (webhook, Slack): one attempt at a time,
//! the answer classified as delivered, failed (worth retrying: 5xx, 429,
//! a timeout, no connection) or refused (it would fail again: 4xx, a
//! certificate). The retrying is the sink's or the outbox's.

use std::time::Duration;

use ureq::http::{HeaderMap, Response, StatusCode};

use super::{Alert, Destination, Direct, HttpTarget, Outcome, key};
use crate::backoff::Backoff;

/// Text of a response body shown in a reason (Slack's `invalid_payload`).
const BODY_SHOWN: usize = 200;
/// Bytes of a response body read (so that the connection can be reused).
const BODY_READ: u64 = 64 * 1024;
/// The most alerts in one request of `batch = 'array'`.
const ARRAY_MAX: usize = 1000;

/// One HTTP receiver and the client that talks to it.
pub(crate) struct HttpReceiver {
    /// `webhook http://host/path`, for reasons and logs.
    what: String,
    target: HttpTarget,
    agent: ureq::Agent,
    /// The alerts of an attempt go in one JSON array (`batch = 'array'`).
    array: bool,
}

impl std::fmt::Debug for HttpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpReceiver")
            .field("what", &self.what)
            .field("array", &self.array)
            .finish_non_exhaustive()
    }
}

impl HttpReceiver {
    /// The receiver `target` of a `kind` output (`webhook`, `slack`).
    pub(crate) fn new(kind: &str, target: &HttpTarget, array: bool) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(target.timeout))
            // Every status is a response to classify, not an error.
            .http_status_as_error(false)
            // A POST is not followed to another address: a moved receiver
            // is a configuration to fix.
            .max_redirects(0)
            .user_agent(concat!("iotql/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        HttpReceiver {
            what: format!("{kind} {}", target.shown()),
            target: target.clone(),
            agent,
            array,
        }
    }

    /// The request body of `alerts`: the body of the one alert, or a JSON
    /// array of their bodies.
    fn body(&self, alerts: &[Alert]) -> Vec<u8> {
        match alerts {
            [alert] if !self.array => alert.body.clone(),
            _ => {
                let mut body =
                    Vec::with_capacity(alerts.iter().map(|a| a.body.len() + 1).sum::<usize>() + 2);
                body.push(b'[');
                for (i, alert) in alerts.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(&alert.body);
                }
                body.push(b']');
                body
            }
        }
    }
}

impl Destination for HttpReceiver {
    fn what(&self) -> &str {
        &self.what
    }

    fn per_attempt(&self) -> usize {
        if self.array { ARRAY_MAX } else { 1 }
    }

    /// POSTs the alerts with `Idempotency-Key`: the alert's key, or for an
    /// array a key of its alerts' keys (each element carries its own).
    fn attempt(&mut self, alerts: &[Alert]) -> Outcome {
        let idempotency = match alerts {
            [alert] => key::hex(&alert.key),
            _ => key::hex(&key::combined(alerts.iter().map(|a| &a.key))),
        };
        let mut request = self
            .agent
            .post(&self.target.url)
            .header("Idempotency-Key", &idempotency);
        if !self
            .target
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("Content-Type", "application/json");
        }
        for (name, value) in &self.target.headers {
            request = request.header(name, value);
        }
        match request.send(&self.body(alerts)[..]) {
            Ok(response) => classify(response, self.target.max_retry_delay),
            Err(ureq::Error::Timeout(_)) => Outcome::Failed {
                reason: format!("no response within {:?} (timeout)", self.target.timeout),
                retry_after: None,
            },
            Err(e) if passing(&e) => Outcome::Failed {
                reason: e.to_string(),
                retry_after: None,
            },
            Err(e) => Outcome::Refused(e.to_string()),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(self.target.retry_delay, self.target.max_retry_delay).with_jitter()
    }

    fn direct(&self) -> Direct {
        Direct::Retry(self.target.retries)
    }
}

/// Whether an error of the HTTP client may pass by itself: the network or
/// the receiver's host (not a certificate or a bad request).
fn passing(error: &ureq::Error) -> bool {
    use ureq::Error;
    matches!(
        error,
        Error::Io(_)
            | Error::HostNotFound
            | Error::ConnectionFailed
            | Error::Protocol(_)
            | Error::BodyStalled
    )
}

/// A response's outcome: 2xx delivered; 5xx, 408 and 429 failed (with
/// the `Retry-After` delay, at most `longest`); anything else refused.
fn classify(mut response: Response<ureq::Body>, longest: Duration) -> Outcome {
    let status = response.status();
    let retry_after = retry_after(response.headers()).map(|d| d.min(longest));
    // Read the body whole, so that the connection can carry the next request.
    let text = response
        .body_mut()
        .with_config()
        .limit(BODY_READ)
        .read_to_string()
        .unwrap_or_default();
    if status.is_success() {
        return Outcome::Delivered;
    }
    let reason = describe(status, &text);
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Outcome::Failed {
            reason,
            retry_after,
        }
    } else {
        Outcome::Refused(reason)
    }
}

/// `HTTP 400 Bad Request: "invalid_payload"` (the start of the body's first line).
fn describe(status: StatusCode, body: &str) -> String {
    let line = body.lines().map(str::trim).find(|l| !l.is_empty());
    match line {
        None => format!("HTTP {status}"),
        Some(line) => {
            let shown: String = line.chars().take(BODY_SHOWN).collect();
            format!("HTTP {status}: {shown:?}")
        }
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use ureq::http::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a past date");
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(90))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        headers.insert("retry-after", HeaderValue::from_str(&soon).unwrap());
        let wait = retry_after(&headers).unwrap_or_default();
        assert!(
            wait > Duration::from_secs(60) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
    }

    #[test]
    fn a_reason_shows_the_status_and_the_body_start() {
        assert_eq!(
            describe(StatusCode::BAD_REQUEST, "\ninvalid_payload\nmore"),
            "HTTP 400 Bad Request: \"invalid_payload\""
        );
        assert_eq!(
            describe(StatusCode::SERVICE_UNAVAILABLE, ""),
            "HTTP 503 Service Unavailable"
        );
    }
}
