//! MQTT: an input that subscribes to a topic filter (`+` and `#`) and an
//! output that publishes each row as a JSON object, over rumqttc (MQTT
//! 3.1.1), with TLS through rustls and username/password.
//!
//! Where: `mqtt://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC?option=value&...`
//! (`mqtts://` for TLS) or a declaration's options (`connector = 'mqtt',
//! host = '...', topic = '...'`). Both forms take the same option names;
//! see docs/mqtt.md.

mod sink;
mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::message::{DEFAULT_MAX_MESSAGE_BYTES, MessageFormat};

pub use sink::MqttSink;
pub use source::{MqttCommitter, MqttSource};

/// The port of `mqtt://` when the URI names none.
pub const DEFAULT_PORT: u16 = 1883;
/// The port of `mqtts://` (TLS) when the URI names none.
pub const DEFAULT_TLS_PORT: u16 = 8883;
/// The name of the input column that holds each event's topic, unless the
/// input's `topic_column` option names another (or `''`: none).
pub const DEFAULT_TOPIC_COLUMN: &str = "topic";

/// The largest packet the client takes or sends: MQTT's own limit. A
/// message larger than the input's `max_message_bytes` still arrives whole
/// and becomes a dead letter, rather than breaking the connection.
const MAX_PACKET_BYTES: usize = 268_435_455;

/// How to reach the broker: shared by inputs and outputs.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttBroker {
    pub host: String,
    pub port: u16,
    /// `None`: derived from the input or output name (see [`MqttBroker::client_id_for`]).
    pub client_id: Option<String>,
    /// `false` (the default): a persistent session, so that the broker keeps
    /// QoS 1 messages for a client that is away and resends what it did not
    /// acknowledge.
    pub clean_session: bool,
    pub username: Option<String>,
    /// Prints `***` (`secret::Secret`).
    pub password: Option<crate::secret::Secret>,
    pub tls: Option<MqttTls>,
    pub keep_alive: Duration,
}

impl std::fmt::Debug for MqttBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is not shown.
        f.debug_struct("MqttBroker")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("clean_session", &self.clean_session)
            .field("username", &self.username)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// TLS files (PEM). Without `ca_file` the system's root certificates are
/// trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MqttTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// An MQTT input: a subscription and how its messages decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttInput {
    pub broker: MqttBroker,
    /// The topic filter, with `+` and `#` wildcards.
    pub filter: String,
    pub qos: QoS,
    pub format: MessageFormat,
    /// The column holding each event's topic; `None` for no such column.
    pub topic_column: Option<String>,
    /// Larger messages are dead letters.
    pub max_message_bytes: usize,
    /// The input ends after this many messages (good or bad): for tests
    /// and bounded runs. `None`: it never ends by itself.
    pub max_messages: Option<u64>,
}

/// An MQTT output: where each row is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttOutput {
    pub broker: MqttBroker,
    /// The topic, with `{column}` placeholders filled from each row.
    pub topic: TopicTemplate,
    pub qos: QoS,
    /// How long `flush` waits for the broker to acknowledge every publish.
    pub flush_timeout: Duration,
}

/// A topic with `{column}` placeholders, e.g. `alerts/{device_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    pub parts: Vec<TopicPart>,
}

/// A piece of a [`TopicTemplate`].
pub use crate::template::Part as TopicPart;

impl TopicTemplate {
    /// Parses `alerts/{device_id}`; a publish topic has no wildcards.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts = crate::template::parse(text).map_err(|e| format!("topic `{text}`: {e}"))?;
        let template = TopicTemplate { parts };
        if template.text_parts().any(|t| t.contains(['+', '#'])) {
            return Err(format!(
                "topic `{text}`: an output publishes to one topic; `+` and `#` are for input filters"
            ));
        }
        if template.parts.is_empty() {
            return Err("the output names no topic".into());
        }
        Ok(template)
    }

    fn text_parts(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TopicPart::Text(t) => Some(t.as_str()),
            TopicPart::Column(_) => None,
        })
    }

    /// The columns the template reads.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TopicPart::Column(c) => Some(c.as_str()),
            TopicPart::Text(_) => None,
        })
    }
}

impl std::fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.parts {
            match p {
                TopicPart::Text(t) => f.write_str(t)?,
                TopicPart::Column(c) => write!(f, "{{{c}}}")?,
            }
        }
        Ok(())
    }
}

/// The options both forms share, taken out of a map as they are read, so
/// that a misspelt one is refused rather than ignored.
struct Options {
    map: BTreeMap<String, String>,
    base: PathBuf,
}

impl Options {
    fn take(&mut self, key: &str) -> Option<String> {
        self.map.remove(key)
    }

    fn flag(&mut self, key: &str, default: bool) -> Result<bool, String> {
        match self.take(key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(format!("{key} = '{v}': use true or false")),
            },
        }
    }

    fn number<T: std::str::FromStr>(&mut self, key: &str) -> Result<Option<T>, String> {
        self.take(key)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| format!("{key} = '{v}' is not a whole number"))
            })
            .transpose()
    }

    fn path(&mut self, key: &str) -> Option<PathBuf> {
        self.take(key).map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                self.base.join(p)
            }
        })
    }

    fn qos(&mut self) -> Result<QoS, String> {
        match self.take("qos").as_deref().map(str::trim) {
            None | Some("1") => Ok(QoS::AtLeastOnce),
            Some("0") => Ok(QoS::AtMostOnce),
            Some(other) => Err(format!(
                "qos = '{other}': use 0 (at most once) or 1 (at least once)"
            )),
        }
    }

    fn broker(&mut self, host: String, port: Option<u16>, tls: bool) -> Result<MqttBroker, String> {
        if host.is_empty() {
            return Err("the MQTT broker's host is missing (mqtt://HOST:PORT/TOPIC)".into());
        }
        let tls = self.flag("tls", tls)?;
        let files = MqttTls {
            ca_file: self.path("ca_file"),
            client_cert: self.path("client_cert"),
            client_key: self.path("client_key"),
        };
        if files.client_cert.is_some() != files.client_key.is_some() {
            return Err("client_cert and client_key go together".into());
        }
        let tls = (tls || files != MqttTls::default()).then_some(files);
        let port = match port {
            Some(p) => p,
            None => match self.number::<u16>("port")? {
                Some(p) => p,
                None if tls.is_some() => DEFAULT_TLS_PORT,
                None => DEFAULT_PORT,
            },
        };
        let keep_alive = Duration::from_secs(self.number::<u64>("keep_alive_s")?.unwrap_or(30));
        if keep_alive < Duration::from_secs(1) {
            return Err("keep_alive_s is at least 1".into());
        }
        Ok(MqttBroker {
            host,
            port,
            client_id: self.take("client_id").filter(|c| !c.is_empty()),
            clean_session: self.flag("clean_session", false)?,
            username: self.take("username"),
            password: self.take("password").map(crate::secret::Secret::new),
            tls,
            keep_alive,
        })
    }

    /// Refuses options nobody read.
    fn done(self, what: &str, known: &str) -> Result<(), String> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!(
                "an MQTT {what} has no option `{k}` (options: {known})"
            )),
        }
    }
}

/// The parts of `HOST[:PORT]/TOPIC?QUERY` after `mqtt://` or `mqtts://`.
struct UriParts {
    host: String,
    port: Option<u16>,
    topic: String,
    options: BTreeMap<String, String>,
}

fn decode(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("`{text}` is not UTF-8 once its %XX escapes are decoded"))
}

fn split_mqtt_uri(rest: &str) -> Result<UriParts, String> {
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, topic) = main.split_once('/').unwrap_or((main, ""));
    let mut options = BTreeMap::new();
    let host_port = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let (name, password) = match user.split_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (user, None),
            };
            options.insert("username".to_string(), decode(name)?);
            if let Some(p) = password {
                options.insert("password".to_string(), decode(p)?);
            }
            host
        }
        None => authority,
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (
            h,
            Some(
                p.parse::<u16>()
                    .map_err(|_| format!("`{p}` in `{host_port}` is not a port number"))?,
            ),
        ),
        None => (host_port, None),
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        options.insert(decode(k)?.to_ascii_lowercase(), decode(v)?);
    }
    Ok(UriParts {
        host: host.to_string(),
        port,
        topic: decode(topic)?,
        options,
    })
}

/// A topic filter: levels split by `/`, `+` a whole level, `#` the last.
fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("the MQTT input names no topic filter (mqtt://HOST:PORT/TOPIC/FILTER)".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains(['+', '#']);
        if wild && *level != "+" && *level != "#" {
            return Err(format!(
                "topic filter `{filter}`: `+` and `#` stand for a whole level (e.g. sites/+/telemetry)"
            ));
        }
        if *level == "#" && i + 1 != levels.len() {
            return Err(format!(
                "topic filter `{filter}`: `#` can only be the last level"
            ));
        }
    }
    Ok(())
}

impl MqttInput {
    /// `HOST[:PORT]/FILTER?options` (what follows `mqtt://`); `tls` for
    /// `mqtts://`. `#` in the filter may be written as is or as `%23`.
    pub fn from_uri(rest: &str, tls: bool) -> Result<Self, String> {
        let parts = split_mqtt_uri(rest)?;
        let mut options = Options {
            map: parts.options,
            base: PathBuf::new(),
        };
        Self::build(&mut options, parts.host, parts.port, parts.topic, tls)
            .and_then(|input| options.done("input", INPUT_OPTIONS).map(|()| input))
    }

    /// A declaration's options (`connector = 'mqtt'`, `host`, `port`,
    /// `topic`, ...); relative file paths are taken from `base`.
    pub fn from_options(options: &BTreeMap<String, String>, base: &Path) -> Result<Self, String> {
        let mut options = Options {
            map: options.clone(),
            base: base.to_path_buf(),
        };
        options.take("connector");
        options.take("schema");
        let host = options.take("host").unwrap_or_default();
        let topic = options.take("topic").unwrap_or_default();
        Self::build(&mut options, host, None, topic, false)
            .and_then(|input| options.done("input", INPUT_OPTIONS).map(|()| input))
    }

    fn build(
        options: &mut Options,
        host: String,
        port: Option<u16>,
        filter: String,
        tls: bool,
    ) -> Result<Self, String> {
        check_filter(&filter)?;
        let broker = options.broker(host, port, tls)?;
        let format = match options.take("format") {
            Some(f) => MessageFormat::parse(&f)?,
            None => MessageFormat::Json,
        };
        let topic_column = match options.take("topic_column") {
            None => Some(DEFAULT_TOPIC_COLUMN.to_string()),
            Some(c) if c.trim().is_empty() => None,
            Some(c) => Some(c.trim().to_string()),
        };
        let max_message_bytes = options
            .number::<usize>("max_message_bytes")?
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        Ok(MqttInput {
            broker,
            filter,
            qos: options.qos()?,
            format,
            topic_column,
            max_message_bytes,
            max_messages: options.number::<u64>("max_messages")?,
        })
    }
}

const INPUT_OPTIONS: &str = "host, port, topic, qos, format, topic_column, max_message_bytes, max_messages, client_id, clean_session, username, password, tls, ca_file, client_cert, client_key, keep_alive_s";

const OUTPUT_OPTIONS: &str = "host, port, topic, qos, flush_timeout_s, client_id, clean_session, username, password, tls, ca_file, client_cert, client_key, keep_alive_s";

impl MqttOutput {
    /// `HOST[:PORT]/TOPIC?options` (what follows `mqtt://`); the topic may
    /// hold `{column}` placeholders (`{` and `}` may be written as `%7B`
    /// and `%7D`).
    pub fn from_uri(rest: &str, tls: bool) -> Result<Self, String> {
        let parts = split_mqtt_uri(rest)?;
        let mut options = Options {
            map: parts.options,
            base: PathBuf::new(),
        };
        Self::build(&mut options, parts.host, parts.port, &parts.topic, tls)
            .and_then(|output| options.done("output", OUTPUT_OPTIONS).map(|()| output))
    }

    /// A declaration's options (`connector = 'mqtt'`, `host`, `topic`, ...).
    pub fn from_options(options: &BTreeMap<String, String>, base: &Path) -> Result<Self, String> {
        let mut options = Options {
            map: options.clone(),
            base: base.to_path_buf(),
        };
        options.take("connector");
        let host = options.take("host").unwrap_or_default();
        let topic = options.take("topic").unwrap_or_default();
        Self::build(&mut options, host, None, &topic, false)
            .and_then(|output| options.done("output", OUTPUT_OPTIONS).map(|()| output))
    }

    fn build(
        options: &mut Options,
        host: String,
        port: Option<u16>,
        topic: &str,
        tls: bool,
    ) -> Result<Self, String> {
        let topic = TopicTemplate::parse(topic)?;
        let broker = options.broker(host, port, tls)?;
        Ok(MqttOutput {
            broker,
            topic,
            qos: options.qos()?,
            flush_timeout: Duration::from_secs(
                options.number::<u64>("flush_timeout_s")?.unwrap_or(120),
            ),
        })
    }
}

impl MqttBroker {
    /// The client id: the declared one, else `iotql-<role>-<name>` (e.g.
    /// `iotql-input-readings`), so that a restarted job resumes its session.
    pub fn client_id_for(&self, role: &str, name: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("iotql-{role}-{}", name.to_ascii_lowercase()))
    }

    /// rumqttc's options for this broker, with TLS files read and checked.
    pub(crate) fn client_options(&self, client_id: String) -> Result<MqttOptions, String> {
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_session(self.clean_session)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        if let Some(user) = &self.username {
            options.set_credentials(
                user.clone(),
                self.password
                    .as_ref()
                    .map(|p| p.expose().to_string())
                    .unwrap_or_default(),
            );
        }
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::tls_with_config(tls.client_config()?));
        }
        Ok(options)
    }

    /// `host:port`, for messages.
    pub(crate) fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl MqttTls {
    fn client_config(&self) -> Result<TlsConfiguration, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = crate::tls::root_store(self.ca_file.as_deref(), "ca_file")?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("client_cert {}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("client_key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client_cert/client_key: {e}"))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(TlsConfiguration::Rustls(Arc::new(config)))
    }
}

pub(crate) use crate::backoff::Backoff;

/// A connection error that waiting will not cure: the broker refused the
/// client (credentials, client id) or TLS failed (a certificate, not the
/// network under it).
pub(crate) fn fatal(error: &rumqttc::ConnectionError) -> bool {
    use rumqttc::{ConnectionError, TlsError};
    match error {
        ConnectionError::ConnectionRefused(_) => true,
        ConnectionError::Tls(TlsError::Io(_)) => false,
        ConnectionError::Tls(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::options;

    #[test]
    fn an_input_uri_gives_host_port_filter_and_options() {
        let input = MqttInput::from_uri(
            "127.0.0.1:1884/sites/+/devices/+/telemetry?qos=0&client_id=job-1&clean_session=true&topic_column=src&format=csv&max_message_bytes=512&max_messages=10",
            false,
        )
        .unwrap();
        assert_eq!(input.broker.host, "127.0.0.1");
        assert_eq!(input.broker.port, 1884);
        assert_eq!(input.filter, "sites/+/devices/+/telemetry");
        assert_eq!(input.qos, QoS::AtMostOnce);
        assert_eq!(input.broker.client_id.as_deref(), Some("job-1"));
        assert!(input.broker.clean_session);
        assert_eq!(input.topic_column.as_deref(), Some("src"));
        assert_eq!(input.format, MessageFormat::Csv);
        assert_eq!(input.max_message_bytes, 512);
        assert_eq!(input.max_messages, Some(10));
        assert!(input.broker.tls.is_none());
    }

    #[test]
    fn input_defaults_are_qos_1_a_persistent_session_and_a_topic_column() {
        let input = MqttInput::from_uri("broker/sensors/#", false).unwrap();
        assert_eq!(input.broker.port, DEFAULT_PORT);
        assert_eq!(input.filter, "sensors/#");
        assert_eq!(input.qos, QoS::AtLeastOnce);
        assert!(!input.broker.clean_session);
        assert_eq!(input.topic_column.as_deref(), Some("topic"));
        assert_eq!(input.format, MessageFormat::Json);
        assert_eq!(input.max_messages, None);
        assert_eq!(
            input.broker.client_id_for("input", "Readings"),
            "iotql-input-readings"
        );
        // `#` may be percent-encoded; an empty topic_column means none.
        let encoded = MqttInput::from_uri("broker:1883/sensors/%23?topic_column=", false).unwrap();
        assert_eq!(encoded.filter, "sensors/#");
        assert_eq!(encoded.topic_column, None);
    }

    #[test]
    fn credentials_and_tls_come_from_the_uri() {
        let input =
            MqttInput::from_uri("alice:s%40cret@example.org/t?ca_file=/etc/ca.pem", true).unwrap();
        assert_eq!(input.broker.username.as_deref(), Some("alice"));
        assert_eq!(
            input.broker.password.as_ref().map(|p| p.expose()),
            Some("s@cret")
        );
        assert_eq!(input.broker.port, DEFAULT_TLS_PORT);
        let tls = input.broker.tls.clone().unwrap();
        assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!format!("{:?}", input.broker).contains("cret"));
    }

    #[test]
    fn bad_uris_and_filters_are_refused_with_a_reason() {
        let cases = [
            ("127.0.0.1:1883/", "no topic filter"),
            ("127.0.0.1:x/t", "not a port number"),
            ("/t", "host is missing"),
            ("h/sites/#/more", "`#` can only be the last level"),
            ("h/sites/a+/x", "stand for a whole level"),
            ("h/t?qos=2", "qos = '2'"),
            ("h/t?clean_session=maybe", "use true or false"),
            ("h/t?qos=1&colour=red", "no option `colour`"),
            ("h/t?client_cert=/c.pem", "go together"),
        ];
        for (uri, expected) in cases {
            let err = MqttInput::from_uri(uri, false).unwrap_err();
            assert!(err.contains(expected), "{uri}: {err}");
        }
    }

    #[test]
    fn declaration_options_match_the_uri_form() {
        let base = Path::new("/jobs");
        let input = MqttInput::from_options(
            &options(&[
                ("connector", "mqtt"),
                ("host", "127.0.0.1"),
                ("port", "1883"),
                ("topic", "sites/+/devices/+/telemetry"),
                ("qos", "1"),
                ("clean_session", "false"),
                ("client_id", "edge-job"),
                ("format", "json"),
                ("topic_column", "mqtt_topic"),
                ("schema", "device_id nvarchar(max)"),
                ("username", "u"),
                ("password", "p"),
                ("ca_file", "certs/ca.pem"),
            ]),
            base,
        )
        .unwrap();
        let uri = MqttInput::from_uri(
            "u:p@127.0.0.1:1883/sites/+/devices/+/telemetry?client_id=edge-job&topic_column=mqtt_topic&ca_file=/jobs/certs/ca.pem",
            false,
        )
        .unwrap();
        assert_eq!(input, uri);
        let err = MqttInput::from_options(
            &options(&[("connector", "mqtt"), ("topic", "t"), ("path", "x")]),
            base,
        )
        .unwrap_err();
        assert!(err.contains("host is missing"), "{err}");
    }

    #[test]
    fn an_output_topic_takes_column_placeholders() {
        let output =
            MqttOutput::from_uri("127.0.0.1:1883/alerts/{device_id}/level", false).unwrap();
        assert_eq!(
            output.topic.parts,
            vec![
                TopicPart::Text("alerts/".into()),
                TopicPart::Column("device_id".into()),
                TopicPart::Text("/level".into()),
            ]
        );
        assert_eq!(output.topic.to_string(), "alerts/{device_id}/level");
        assert_eq!(output.qos, QoS::AtLeastOnce);
        let encoded = MqttOutput::from_uri("h/alerts/%7Bsite%7D?qos=0", false).unwrap();
        assert_eq!(encoded.topic.columns().collect::<Vec<_>>(), vec!["site"]);
        assert_eq!(encoded.qos, QoS::AtMostOnce);
        for (uri, expected) in [
            ("h/alerts/{device", "without a closing"),
            ("h/alerts/{}", "names no column"),
            ("h/alerts/#", "`+` and `#` are for input filters"),
            ("h/a?max_messages=3", "no option `max_messages`"),
        ] {
            let err = MqttOutput::from_uri(uri, false).unwrap_err();
            assert!(err.contains(expected), "{uri}: {err}");
        }
        let declared = MqttOutput::from_options(
            &options(&[
                ("connector", "mqtt"),
                ("host", "h"),
                ("topic", "alerts/{device_id}"),
                ("qos", "0"),
                ("flush_timeout_s", "5"),
            ]),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(declared.flush_timeout, Duration::from_secs(5));
    }
}
