//! Kafka input and output, through librdkafka (the `rdkafka` crate).
//!
//! Input ([`source`]): a consumer in a consumer group, subscribed to one or
//! more topics; every assigned partition is read, the message timestamp is
//! each event's arrival time. Every batch carries the next offset of each
//! partition read (its resume position): a job that resumes from a
//! checkpoint reads each partition from there. The group's offsets are
//! still committed when the runner says the outputs that depend on them are
//! flushed ([`iotql_engine::io::Committer`]), for lag monitoring and for runs without
//! checkpoints (at least once).
//! Output ([`sink`]): an idempotent producer writing each row as a JSON
//! object, keyed by a column when asked, so that a key's rows stay in order
//! in one partition. In a run that takes checkpoints the rows are written
//! in transactions committed with the checkpoints, each with a marker
//! record in a control topic ([`marker`]) that tells a resuming run
//! whether the checkpoint's transaction was committed: exactly once for
//! `read_committed` consumers.
//!
//! Nothing here leans on one broker's behaviour: it is plain librdkafka with
//! a consumer group and transactions, and librdkafka's own settings pass
//! through (the one exception, a transaction that lived through an outage
//! being produced again, is harmless on any broker; see [`sink`]).
//!
//! Security (docs/kafka.md): `security_protocol`, `sasl_mechanism`,
//! `sasl_username`, `sasl_password`, `ssl_ca`, `ssl_certificate`, `ssl_key`
//! and `ssl_key_password` map to librdkafka's settings, checked first; a
//! refused login or TLS handshake stops the job with the broker's reason
//! (the brokers are reachable: waiting would not help). Secrets never reach
//! a message: settings print through `secret::Redacted`.

mod marker;
mod sink;
mod source;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use iotql_engine::io::SinkMetrics;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub use sink::KafkaSink;
pub use source::KafkaSource;

use crate::message::{DEFAULT_MAX_MESSAGE_BYTES, MessageFormat};
use crate::outage::Outage;

/// Where a consumer starts in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The group's committed offset; the earliest where it has none.
    Committed,
    /// The first message, whatever the group committed.
    Earliest,
    /// Only messages produced from now on.
    Latest,
    /// The first message at or after this time (milliseconds since the epoch).
    Time(i64),
}

impl StartPosition {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "committed" => Ok(StartPosition::Committed),
            "earliest" => Ok(StartPosition::Earliest),
            "latest" => Ok(StartPosition::Latest),
            _ => chrono::DateTime::parse_from_rfc3339(text.trim())
                .map(|t| StartPosition::Time(t.timestamp_millis()))
                .map_err(|_| {
                    format!(
                        "start `{text}`: use committed, earliest, latest or a time such as 2026-01-01T00:00:00Z"
                    )
                }),
        }
    }
}

/// A Kafka input: where and how to read. Its `Debug` hides secret settings.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaInput {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    pub topics: Vec<String>,
    /// The consumer group; by default `iotql-<input name>`.
    pub group_id: Option<String>,
    pub start: StartPosition,
    pub format: MessageFormat,
    /// Stop when every partition has been read to its end (a backfill or a
    /// test), instead of waiting for more.
    pub until_end: bool,
    pub max_message_bytes: usize,
    /// librdkafka settings passed through (`security.protocol`, `sasl.*`,
    /// `ssl.*`, `session.timeout.ms`, ...).
    pub settings: BTreeMap<String, String>,
}

/// A Kafka output. Its `Debug` hides secret settings.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaOutput {
    pub brokers: String,
    pub topic: String,
    /// The column whose value is each message's key.
    pub key: Option<String>,
    /// The control topic of the transactions' markers (`commit_topic`,
    /// default [`DEFAULT_COMMIT_TOPIC`]), used when the run takes checkpoints.
    pub commit_topic: String,
    /// librdkafka settings, the security options' included.
    pub settings: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaInput")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("group_id", &self.group_id)
            .field("start", &self.start)
            .field("format", &self.format)
            .field("until_end", &self.until_end)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("settings", &crate::secret::Redacted(&self.settings))
            .finish()
    }
}

impl std::fmt::Debug for KafkaOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOutput")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("commit_topic", &self.commit_topic)
            .field("settings", &crate::secret::Redacted(&self.settings))
            .finish()
    }
}

/// The control topic where a Kafka output's transactions leave their
/// checkpoint markers, unless `commit_topic` names another.
pub const DEFAULT_COMMIT_TOPIC: &str = "iotql-commits";

/// iotql's security options and the librdkafka settings they set.
const SECURITY_OPTIONS: &[(&str, &str)] = &[
    ("security_protocol", "security.protocol"),
    ("sasl_mechanism", "sasl.mechanisms"),
    ("sasl_username", "sasl.username"),
    ("sasl_password", "sasl.password"),
    ("ssl_ca", "ssl.ca.location"),
    ("ssl_certificate", "ssl.certificate.location"),
    ("ssl_key", "ssl.key.location"),
    ("ssl_key_password", "ssl.key.password"),
];

const PROTOCOLS: &[&str] = &["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The librdkafka settings of the security options among `options`,
/// checked: a protocol and mechanism librdkafka knows, SASL credentials
/// with a SASL protocol (both of them), TLS files that exist (relative to
/// `base`) with a TLS protocol.
fn security(
    options: &BTreeMap<String, String>,
    base: &Path,
) -> Result<BTreeMap<String, String>, String> {
    for (ours, theirs) in SECURITY_OPTIONS {
        if options.contains_key(*ours) && options.contains_key(*theirs) {
            return Err(format!(
                "set `{ours}` or the librdkafka setting [{theirs}], not both"
            ));
        }
    }
    let mut settings = BTreeMap::new();
    let get = |k: &str| options.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let protocol = match get("security_protocol") {
        None => None,
        Some(p) => {
            let p = p.to_ascii_lowercase();
            if !PROTOCOLS.contains(&p.as_str()) {
                return Err(format!(
                    "security_protocol `{p}`: use {}",
                    PROTOCOLS.join(", ")
                ));
            }
            Some(p)
        }
    };
    let sasl = protocol.as_deref().is_some_and(|p| p.starts_with("sasl_"));
    let tls = matches!(protocol.as_deref(), Some("ssl" | "sasl_ssl"));
    let sasl_options = ["sasl_mechanism", "sasl_username", "sasl_password"];
    if !sasl && let Some(k) = sasl_options.iter().find(|k| options.contains_key(**k)) {
        return Err(format!(
            "`{k}` needs security_protocol = 'sasl_ssl' (or 'sasl_plaintext' on a network you trust)"
        ));
    }
    let tls_options = ["ssl_ca", "ssl_certificate", "ssl_key", "ssl_key_password"];
    if !tls && let Some(k) = tls_options.iter().find(|k| options.contains_key(**k)) {
        return Err(format!(
            "`{k}` needs security_protocol = 'ssl' or 'sasl_ssl'"
        ));
    }
    if let Some(p) = &protocol {
        settings.insert("security.protocol".to_string(), p.clone());
    }
    if sasl {
        let mechanism = match get("sasl_mechanism") {
            None => "PLAIN".to_string(),
            Some(m) => MECHANISMS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(m))
                .ok_or_else(|| format!("sasl_mechanism `{m}`: use {}", MECHANISMS.join(", ")))?
                .to_string(),
        };
        let (Some(user), Some(password)) =
            (options.get("sasl_username"), options.get("sasl_password"))
        else {
            return Err(format!(
                "security_protocol = '{}' needs sasl_username and sasl_password (e.g. sasl_password = '${{KAFKA_PASSWORD}}')",
                protocol.as_deref().unwrap_or_default()
            ));
        };
        settings.insert("sasl.mechanisms".to_string(), mechanism);
        settings.insert("sasl.username".to_string(), user.clone());
        settings.insert("sasl.password".to_string(), password.clone());
    }
    if options.contains_key("ssl_certificate") != options.contains_key("ssl_key") {
        return Err(
            "ssl_certificate and ssl_key go together (a client certificate and its key)".into(),
        );
    }
    if options.contains_key("ssl_key_password") && !options.contains_key("ssl_key") {
        return Err("ssl_key_password is the password of ssl_key".into());
    }
    for (ours, theirs) in &SECURITY_OPTIONS[4..7] {
        if let Some(file) = get(ours) {
            let path = crate::endpoint::resolve(file, base);
            if !Path::new(&path).is_file() {
                return Err(format!("{ours} `{path}`: no such file (a PEM file)"));
            }
            settings.insert(theirs.to_string(), path);
        }
    }
    if let Some(p) = options.get("ssl_key_password") {
        settings.insert("ssl.key.password".to_string(), p.clone());
    }
    Ok(settings)
}

/// A client creation error without the value of a secret setting
/// (librdkafka's configuration errors quote the value).
fn config_error(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, description, key, value) => {
            let shown = crate::secret::render_option(None, key, value);
            format!("{description} ({key} = '{shown}')")
        }
        other => crate::secret::scrub(&other.to_string()).into_owned(),
    }
}

/// Options that are iotql's, not librdkafka's.
const INPUT_OPTIONS: &[&str] = &[
    "connector",
    "brokers",
    "topic",
    "topics",
    "group_id",
    "start",
    "format",
    "until",
    "max_message_bytes",
    "schema",
    "arrival_time",
    "out_of_order",
    "late_arrival",
    "late_policy",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_ca",
    "ssl_certificate",
    "ssl_key",
    "ssl_key_password",
    "max_future",
];
const OUTPUT_OPTIONS: &[&str] = &[
    "connector",
    "brokers",
    "topic",
    "key",
    "format",
    "commit_topic",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_ca",
    "ssl_certificate",
    "ssl_key",
    "ssl_key_password",
];

/// `host:port[,host:port]/topic[,topic][?key=value&...]` (after `kafka://`):
/// the brokers, the topics and the options.
fn split_uri(rest: &str) -> Result<(String, String, BTreeMap<String, String>), String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (brokers, topics) = path
        .split_once('/')
        .filter(|(b, t)| !b.is_empty() && !t.is_empty())
        .ok_or_else(|| format!("`kafka://{rest}`: write kafka://HOST:PORT/TOPIC"))?;
    let mut options = BTreeMap::new();
    for (k, v) in crate::endpoint::query_pairs(query)? {
        options.insert(k, v);
    }
    Ok((brokers.to_string(), topics.to_string(), options))
}

/// librdkafka settings among `options`: every key with a dot in it, and
/// those of the security options (files relative to `base`).
fn settings(
    options: &BTreeMap<String, String>,
    known: &[&str],
    base: &Path,
) -> Result<BTreeMap<String, String>, String> {
    let mut settings = security(options, base)?;
    for (k, v) in options {
        if known.contains(&k.as_str()) {
            continue;
        }
        if !k.contains('.') {
            return Err(format!(
                "unknown Kafka option `{k}` (iotql's are {}; librdkafka settings have dots, e.g. [security.protocol] = 'SASL_SSL')",
                known[1..].join(", ")
            ));
        }
        settings.insert(k.clone(), v.clone());
    }
    Ok(settings)
}

impl KafkaInput {
    /// From `kafka://HOST:PORT/TOPIC[,TOPIC]?group_id=...&start=...` (after `kafka://`).
    pub fn from_uri(rest: &str) -> Result<Self, String> {
        let (brokers, topics, mut options) = split_uri(rest)?;
        options.insert("brokers".into(), brokers);
        options.insert("topic".into(), topics);
        Self::from_options(&options, Path::new(""))
    }

    /// From a declaration's options (`connector = 'kafka', brokers = '...',
    /// topic = '...'`); TLS files are relative to `base`.
    pub fn from_options(options: &BTreeMap<String, String>, base: &Path) -> Result<Self, String> {
        let brokers = options
            .get("brokers")
            .ok_or("the `kafka` connector needs `brokers = 'HOST:PORT'`")?
            .clone();
        let topics: Vec<String> = options
            .get("topic")
            .or_else(|| options.get("topics"))
            .ok_or("the `kafka` connector needs `topic = 'NAME'`")?
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if topics.is_empty() {
            return Err("the `kafka` connector needs `topic = 'NAME'`".into());
        }
        let until_end = match options.get("until").map(|u| u.to_ascii_lowercase()) {
            None => false,
            Some(u) if u == "end" => true,
            Some(u) => return Err(format!("until `{u}`: the only value is `end`")),
        };
        if until_end && topics.len() > 1 {
            return Err("until = 'end' reads one topic".into());
        }
        let max_message_bytes = match options.get("max_message_bytes") {
            None => DEFAULT_MAX_MESSAGE_BYTES,
            Some(n) => n
                .parse()
                .map_err(|_| format!("max_message_bytes `{n}` is not a number of bytes"))?,
        };
        Ok(KafkaInput {
            brokers,
            topics,
            group_id: options.get("group_id").cloned(),
            start: options
                .get("start")
                .map_or(Ok(StartPosition::Committed), |s| StartPosition::parse(s))?,
            format: options
                .get("format")
                .map_or(Ok(MessageFormat::Json), |f| MessageFormat::parse(f))?,
            until_end,
            max_message_bytes,
            settings: settings(options, INPUT_OPTIONS, base)?,
        })
    }
}

impl KafkaOutput {
    /// From `kafka://HOST:PORT/TOPIC?key=COLUMN` (after `kafka://`).
    pub fn from_uri(rest: &str) -> Result<Self, String> {
        let (brokers, topic, mut options) = split_uri(rest)?;
        options.insert("brokers".into(), brokers);
        options.insert("topic".into(), topic);
        Self::from_options(&options, Path::new(""))
    }

    /// From a declaration's options; TLS files are relative to `base`.
    pub fn from_options(options: &BTreeMap<String, String>, base: &Path) -> Result<Self, String> {
        let get = |k: &str| {
            options
                .get(k)
                .cloned()
                .ok_or_else(|| format!("the `kafka` connector needs `{k} = '...'`"))
        };
        if let Some(f) = options.get("format")
            && !f.eq_ignore_ascii_case("json")
        {
            return Err(format!("format `{f}`: a Kafka output writes JSON objects"));
        }
        Ok(KafkaOutput {
            brokers: get("brokers")?,
            topic: get("topic")?,
            key: options.get("key").cloned(),
            commit_topic: options
                .get("commit_topic")
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| DEFAULT_COMMIT_TOPIC.to_string()),
            settings: settings(options, OUTPUT_OPTIONS, base)?,
        })
    }
}

/// Whether librdkafka's error means the brokers (or the topic) cannot be
/// reached yet (it reconnects by itself: the job waits).
fn is_outage(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
                // A topic not created yet: waited for, like a broker.
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
        )
    )
}

/// Whether librdkafka's error means the brokers refuse this client: a
/// refused login (wrong password, mechanism) or TLS handshake (wrong
/// certificate, or TLS to a plaintext port). Waiting would not help.
fn is_refusal(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SSL
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::UnsupportedSASLMechanism
        )
    )
}

/// The connection state shared by a client's callbacks: an outage is logged
/// once when it starts and once when it ends, not per failed request
/// ([`Outage`], counted in an output's metrics); a refusal is kept for the
/// reader or writer to stop on.
#[derive(Debug)]
struct Health {
    what: String,
    outage: Mutex<Outage>,
    refused: Mutex<Option<String>>,
}

impl Health {
    /// `what` names the client (`output `alerts``); `metrics` counts its
    /// outages (an output's).
    fn new(what: String, metrics: Option<std::sync::Arc<SinkMetrics>>) -> Self {
        Health {
            outage: Mutex::new(Outage::new(format!("{what} (the Kafka brokers)"), metrics)),
            what,
            refused: Mutex::new(None),
        }
    }

    /// Why the brokers refused this client, if they did.
    fn refusal(&self) -> Option<String> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }

    /// A failed request: a refusal is kept, an outage begins (or goes on),
    /// anything else is logged. Returns whether it was an outage.
    fn failed(&self, error: &KafkaError, reason: &str) -> bool {
        // TLS to a plaintext listener, or a certificate not trusted, comes
        // as a transport failure whose reason says so.
        if is_refusal(error) || reason.contains("SSL handshake failed") {
            let message = crate::secret::scrub(&format!(
                "the Kafka brokers refused the connection: {error} ({reason}); check security_protocol, the SASL credentials and the TLS files"
            ))
            .into_owned();
            if let Ok(mut refused) = self.refused.lock()
                && refused.is_none()
            {
                tracing::debug!("{}: {message}", self.what);
                *refused = Some(message);
            }
            false
        } else if is_outage(error) {
            // librdkafka reports "all brokers down" with "(0/1 brokers are
            // down)" when a new client drops its bootstrap connection for
            // the broker's own: no broker is down.
            if reason.contains("(0/") {
                tracing::debug!("{}: {error} ({reason}): not an outage", self.what);
                return false;
            }
            if let Ok(mut outage) = self.outage.lock() {
                outage.failed(&format!("{error} ({reason})"));
            }
            true
        } else {
            tracing::warn!("{}: {error}: {reason}", self.what);
            false
        }
    }

    /// A request succeeded: an outage in progress ends.
    fn working(&self) {
        if let Ok(mut outage) = self.outage.lock() {
            outage.succeeded();
        }
    }
}

fn forward_log(what: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::debug!("{what}: librdkafka {facility}: {message}"),
        _ => tracing::trace!("{what}: librdkafka {facility}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_options() {
        let input = KafkaInput::from_uri(
            "127.0.0.1:9092/readings?group_id=g1&start=earliest&until=end&session.timeout.ms=6000",
        )
        .expect("uri");
        assert_eq!(input.brokers, "127.0.0.1:9092");
        assert_eq!(input.topics, vec!["readings"]);
        assert_eq!(input.group_id.as_deref(), Some("g1"));
        assert_eq!(input.start, StartPosition::Earliest);
        assert!(input.until_end);
        assert_eq!(
            input.settings.get("session.timeout.ms").map(String::as_str),
            Some("6000")
        );
        let input = KafkaInput::from_uri("a:1,b:2/t1,t2?start=2026-01-01T00:00:00Z").expect("uri");
        assert_eq!(input.topics, vec!["t1", "t2"]);
        assert_eq!(input.start, StartPosition::Time(1_767_225_600_000));
        assert!(
            KafkaInput::from_uri("a:1/t?grup=x")
                .unwrap_err()
                .contains("unknown Kafka option `grup`")
        );
        assert!(KafkaInput::from_uri("a:1").is_err());
        assert!(KafkaInput::from_uri("a:1/t1,t2?until=end").is_err());
        assert!(KafkaInput::from_uri("a:1/t?start=yesterday").is_err());
        let output =
            KafkaOutput::from_uri("h:9/alerts?key=device_id&compression.type=zstd").expect("uri");
        assert_eq!(output.key.as_deref(), Some("device_id"));
        assert_eq!(output.commit_topic, DEFAULT_COMMIT_TOPIC);
        let ctl = KafkaOutput::from_uri("h:9/alerts?commit_topic=ctl").expect("uri");
        assert_eq!(ctl.commit_topic, "ctl");
        assert_eq!(
            output.settings.get("compression.type").map(String::as_str),
            Some("zstd")
        );
    }

    #[test]
    fn security_options_map_to_librdkafka_settings() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "client.pem", "client.key"] {
            std::fs::write(dir.path().join(f), "-----BEGIN CERTIFICATE-----\n").unwrap();
        }
        let options = crate::endpoint::options(&[
            ("connector", "kafka"),
            ("brokers", "b:9093"),
            ("topic", "t"),
            ("security_protocol", "SASL_SSL"),
            ("sasl_mechanism", "scram-sha-512"),
            ("sasl_username", "iot"),
            ("sasl_password", "hunter2"),
            ("ssl_ca", "ca.pem"),
            ("ssl_certificate", "client.pem"),
            ("ssl_key", "client.key"),
            ("ssl_key_password", "keypass"),
        ]);
        let input = KafkaInput::from_options(&options, dir.path()).unwrap();
        let get = |k: &str| input.settings.get(k).map(String::as_str);
        assert_eq!(get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(get("sasl.username"), Some("iot"));
        assert_eq!(get("sasl.password"), Some("hunter2"));
        assert_eq!(get("ssl.key.password"), Some("keypass"));
        let ca = dir.path().join("ca.pem").display().to_string();
        assert_eq!(get("ssl.ca.location"), Some(ca.as_str()));
        assert!(get("ssl.certificate.location").is_some_and(|p| p.ends_with("client.pem")));
        assert!(get("ssl.key.location").is_some_and(|p| p.ends_with("client.key")));
        let shown = format!("{input:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("keypass"),
            "{shown}"
        );
        let output = KafkaOutput::from_options(&options, dir.path()).unwrap();
        assert_eq!(output.settings, input.settings);
        assert!(!format!("{output:?}").contains("hunter2"));

        // PLAIN by default; by URI too.
        let input = KafkaInput::from_uri(
            "b:9093/t?security_protocol=sasl_plaintext&sasl_username=u&sasl_password=p",
        )
        .unwrap();
        assert_eq!(input.settings.get("sasl.mechanisms").unwrap(), "PLAIN");

        let refused = |pairs: &[(&str, &str)]| {
            let mut all = vec![("connector", "kafka"), ("brokers", "b:1"), ("topic", "t")];
            all.extend_from_slice(pairs);
            KafkaInput::from_options(&crate::endpoint::options(&all), dir.path()).unwrap_err()
        };
        let e = refused(&[("security_protocol", "tls")]);
        assert!(
            e.contains("plaintext, ssl, sasl_plaintext, sasl_ssl"),
            "{e}"
        );
        let e = refused(&[("sasl_username", "u"), ("sasl_password", "hunter2")]);
        assert!(e.contains("sasl_ssl") && !e.contains("hunter2"), "{e}");
        let e = refused(&[("security_protocol", "sasl_ssl"), ("sasl_username", "u")]);
        assert!(e.contains("sasl_password"), "{e}");
        let e = refused(&[
            ("security_protocol", "sasl_ssl"),
            ("sasl_mechanism", "GSSAPI"),
            ("sasl_username", "u"),
            ("sasl_password", "p"),
        ]);
        assert!(e.contains("SCRAM-SHA-256"), "{e}");
        let e = refused(&[("ssl_ca", "ca.pem")]);
        assert!(e.contains("'ssl' or 'sasl_ssl'"), "{e}");
        let e = refused(&[("security_protocol", "ssl"), ("ssl_ca", "nope.pem")]);
        assert!(e.contains("no such file"), "{e}");
        let e = refused(&[("security_protocol", "ssl"), ("ssl_key", "client.key")]);
        assert!(e.contains("go together"), "{e}");
        let e = refused(&[
            ("security_protocol", "sasl_ssl"),
            ("sasl_username", "u"),
            ("sasl_password", "p"),
            ("sasl.password", "p"),
        ]);
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn a_config_error_does_not_quote_a_secret_value() {
        let e = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value".into(),
            "sasl.password".into(),
            "hunter2".into(),
        );
        let shown = config_error(&e);
        assert!(
            !shown.contains("hunter2") && shown.contains("sasl.password"),
            "{shown}"
        );
    }
}
