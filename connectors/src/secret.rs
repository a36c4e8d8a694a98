//! Secrets: one rule for what holds a credential and how it is kept out of
//! sight (docs/security.md).
//!
//! - `${NAME}` in a declaration's option value or a URI is replaced by the
//!   environment variable `NAME` when the input or output is resolved
//!   ([`expand`]); `${NAME:-default}` when it is unset or empty; `$${` is a
//!   literal `${`. The text of the job keeps the reference, so whatever
//!   prints a job (`iotql check --print`, the REPL's `.inputs` and `.save`)
//!   prints `${NAME}`, never the value.
//! - [`is_secret_option`] says which options hold a credential (passwords,
//!   tokens, secrets, key material, HTTP headers); [`Secret`] holds one and
//!   prints `***`; [`render_option`] and [`redact_uri`] show options and URIs
//!   to people without them (URL passwords, secret query parameters, the
//!   token path of Slack and webhook URLs).
//! - Values that came from the environment into a secret option (or from a
//!   variable whose own name looks secret) are remembered for the process, and
//!   [`scrub`] masks them, and any URL password, in free text: error
//!   messages and log lines.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// What is shown in place of a secret.
pub const MASK: &str = "***";

/// A credential. `Debug` and `Display` print `***`; [`Secret::expose`] is
/// the one way to the value, for the client that sends it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, to hand to a client library; never to print.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

/// Words that make an option name (or an environment variable name) a
/// credential: `password`, `sasl_password`, `sasl.password`, `token`,
/// `client_secret`, `KAFKA_PASSWORD`.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "credentials",
    "apikey",
];

/// Whether the option `key` (a declaration's, a URI query's or a librdkafka
/// setting) holds a credential whose value is never shown: any name with a
/// word of [`SECRET_WORDS`] (split at `.`, `_`, `-`), `*_key` after
/// `api`/`access`/`private`/`secret`, inline key material (`ssl.key.pem`),
/// JAAS and OAuth configurations, and HTTP `headers` (they carry
/// `Authorization`). A `key` alone is a column name, not a secret; a
/// `ssl_key` is a file path.
pub fn is_secret_option(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    let words: Vec<&str> = key.split(['.', '_', '-']).collect();
    words.iter().any(|w| SECRET_WORDS.contains(w))
        || key.contains("password")
        || words.windows(2).any(|pair| {
            matches!(
                pair,
                ["api" | "access" | "private" | "secret" | "signing", "key"]
            )
        })
        || (words.contains(&"key") && words.contains(&"pem"))
        || matches!(
            key.as_str(),
            "headers" | "sasl.jaas.config" | "sasl.oauthbearer.config"
        )
}

/// One `${NAME}` (or `${NAME:-default}`) in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvReference {
    pub name: String,
    /// The text after `:-`, used when the variable is unset or empty.
    pub default: Option<String>,
    /// Byte range of `${...}` in the text.
    pub start: usize,
    pub end: usize,
}

/// Why a text's references cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `${NAME}` names a variable that is not set (and has no default).
    #[error(
        "environment variable `{name}` is not set (export {name}=..., or write ${{{name}:-default}})"
    )]
    Unset {
        name: String,
        start: usize,
        end: usize,
    },
    /// A `${` that is not a reference.
    #[error("{message} (write $${{ for a literal ${{)")]
    Syntax {
        message: String,
        start: usize,
        end: usize,
    },
}

impl EnvError {
    /// Byte range in the text.
    pub fn range(&self) -> (usize, usize) {
        match self {
            EnvError::Unset { start, end, .. } | EnvError::Syntax { start, end, .. } => {
                (*start, *end)
            }
        }
    }
}

/// A piece of a text: as written, or a reference.
enum Piece<'a> {
    Text(&'a str),
    Reference(EnvReference),
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The text cut into literal pieces and references; `$${` is a literal `${`.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, EnvError> {
    let mut out = Vec::new();
    let mut rest = 0;
    let mut at = 0;
    while let Some(found) = text[at..].find("${") {
        let start = at + found;
        if start > 0 && text.as_bytes()[start - 1] == b'$' {
            // `$${`: the text up to the first `$`, then a literal `${`.
            out.push(Piece::Text(&text[rest..start - 1]));
            out.push(Piece::Text("${"));
            rest = start + 2;
            at = start + 2;
            continue;
        }
        let Some(close) = text[start..].find('}') else {
            return Err(EnvError::Syntax {
                message: "`${` without a closing `}`".into(),
                start,
                end: text.len(),
            });
        };
        let end = start + close + 1;
        let inner = &text[start + 2..end - 1];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (inner, None),
        };
        if !is_name(name) {
            return Err(EnvError::Syntax {
                message: format!(
                    "`${{{inner}}}` is not a variable reference: a name is letters, digits and _"
                ),
                start,
                end,
            });
        }
        out.push(Piece::Text(&text[rest..start]));
        out.push(Piece::Reference(EnvReference {
            name: name.to_string(),
            default,
            start,
            end,
        }));
        rest = end;
        at = end;
    }
    out.push(Piece::Text(&text[rest..]));
    Ok(out)
}

/// The `${NAME}` references of `text`, in order.
pub fn references(text: &str) -> Result<Vec<EnvReference>, EnvError> {
    Ok(pieces(text)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Reference(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// A text with its references replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    /// The values that came from variables whose names look secret.
    pub secrets: Vec<String>,
}

/// `text` with each `${NAME}` replaced by `lookup(NAME)` (an unset or
/// empty variable takes its `:-default`).
pub fn expand_with(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded, EnvError> {
    let mut value = String::with_capacity(text.len());
    let mut secrets = Vec::new();
    for piece in pieces(text)? {
        match piece {
            Piece::Text(t) => value.push_str(t),
            Piece::Reference(r) => {
                let found = lookup(&r.name).filter(|v| !v.is_empty() || r.default.is_none());
                let v = match (found, r.default) {
                    (Some(v), _) => {
                        if is_secret_option(&r.name) {
                            secrets.push(v.clone());
                        }
                        v
                    }
                    (None, Some(d)) => d,
                    (None, None) => {
                        return Err(EnvError::Unset {
                            name: r.name,
                            start: r.start,
                            end: r.end,
                        });
                    }
                };
                value.push_str(&v);
            }
        }
    }
    Ok(Expanded { value, secrets })
}

fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `text` with its references replaced from the environment; values that
/// are secrets (see the module documentation) are remembered for [`scrub`].
/// `secret`: the text is the value of a secret option.
pub fn expand(text: &str, secret: bool) -> Result<String, EnvError> {
    let value = if text.contains("${") {
        let expanded = expand_with(text, &environment)?;
        for s in &expanded.secrets {
            remember(s);
        }
        expanded.value
    } else {
        text.to_string()
    };
    if secret {
        remember(&value);
    }
    remember_in_uri(&value);
    Ok(value)
}

/// Remembers the secrets written in a URI: the password of its user
/// information and the values of its secret query parameters.
pub fn remember_in_uri(uri: &str) {
    if let Some(password) = url_password(uri) {
        remember(password);
    }
    if let Some((_, query)) = uri.split_once('?') {
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && is_secret_option(&percent_decode(k))
            {
                remember(v);
                remember(&percent_decode(v));
            }
        }
    }
}

/// A declaration's options with their references expanded; an error names
/// the option.
pub fn expand_options(
    options: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    options
        .iter()
        .map(|(k, v)| {
            expand(v, is_secret_option(k))
                .map(|v| (k.clone(), v))
                .map_err(|e| format!("option `{k}`: {e}"))
        })
        .collect()
}

/// The values [`scrub`] masks.
fn remembered() -> &'static Mutex<Vec<String>> {
    static VALUES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    VALUES.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remembers a secret value for [`scrub`] (values shorter than 3
/// characters are not: masking them would mangle every message).
pub fn remember(value: &str) {
    if value.chars().count() < 3 {
        return;
    }
    if let Ok(mut values) = remembered().lock()
        && !values.iter().any(|v| v == value)
    {
        values.push(value.to_string());
        // Longest first, so that a secret containing another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `text` without remembered secrets and URL passwords
/// (`scheme://user:***@host`): for error messages and log lines.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    if let Ok(values) = remembered().lock() {
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
    }
    if out.contains("://") && out.contains('@') {
        out = Cow::Owned(mask_url_passwords(&out));
    }
    out
}

/// The password of `scheme://user:password@host...`, if any.
fn url_password(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// Every `scheme://user:password@` in `text` as `scheme://user:***@`.
fn mask_url_passwords(text: &str) -> String {
    static URL: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let re = URL.get_or_init(|| regex::Regex::new(r"(://[^\s:/@'`]*):[^\s/@'`]+@").ok());
    match re {
        Some(re) => re.replace_all(text, format!("$1:{MASK}@")).into_owned(),
        None => text.to_string(),
    }
}

/// Connectors whose URL path after its first part is a token (Slack's
/// `https://hooks.slack.com/services/T…/B…/X…`, many webhooks'):
/// it is shown as `/services/…`.
const TOKEN_PATH_CONNECTORS: &[&str] = &["slack", "webhook"];

/// An HTTP URL as messages show it, without what often holds a secret: the
/// user information, the query, and the path after its first part (Slack's
/// and many other receivers' tokens): `https://hooks.slack.com/services/…`.
pub fn url_shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(a URL)".into();
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.trim_start_matches('/');
    let (first, more) = path.split_once('/').unwrap_or((path, ""));
    let more = if more.is_empty() { "" } else { "/…" };
    format!("{scheme}://{host}/{first}{more}")
}

/// A URI as people may see it: the password of its user information and
/// the values of its secret query parameters are `***`; a `slack:` or
/// `webhook:` URL loses its path after the first part and its query (the
/// token). `${NAME}` references are shown as written (they are not values).
pub fn redact_uri(uri: &str) -> String {
    let scheme = uri.split(':').next().unwrap_or("").to_ascii_lowercase();
    if TOKEN_PATH_CONNECTORS.contains(&scheme.as_str()) {
        let rest = &uri[scheme.len() + 1..];
        return format!("{scheme}:{}", url_shown(rest));
    }
    let (head, query) = match uri.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (uri, None),
    };
    let mut shown = mask_url_passwords(head);
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if is_secret_option(&percent_decode(k)) && !is_reference(v) => {
                    format!("{k}={MASK}")
                }
                _ => pair.to_string(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether `value` is only `${NAME}` references (nothing secret written).
fn is_reference(value: &str) -> bool {
    match pieces(value) {
        Ok(pieces) => pieces.iter().all(|p| match p {
            Piece::Text(t) => t.is_empty(),
            Piece::Reference(r) => r.default.as_deref().is_none_or(str::is_empty),
        }),
        Err(_) => false,
    }
}

/// An option's value as people may see it: `***` for a secret option
/// (unless it is written as `${NAME}`), URLs without passwords and tokens.
/// `connector`: the declaration's connector (`slack`, `webhook`: the URL's
/// path is a token).
pub fn render_option(connector: Option<&str>, key: &str, value: &str) -> String {
    if is_secret_option(key) {
        return if is_reference(value) {
            value.to_string()
        } else {
            MASK.to_string()
        };
    }
    let connector = connector.map(str::to_ascii_lowercase);
    if key.eq_ignore_ascii_case("url")
        && let Some(c) = connector.as_deref()
        && TOKEN_PATH_CONNECTORS.contains(&c)
    {
        return url_shown(value);
    }
    if value.contains("://") {
        return redact_uri(value);
    }
    value.to_string()
}

/// `value` with the bytes [`render_option`] would hide replaced by `*`,
/// keeping its length: for showing a job's own text (a diagnostic's source
/// lines) with every span still in place.
pub fn mask_value(connector: Option<&str>, key: &str, value: &str) -> String {
    let star = |text: &str| "*".repeat(text.len());
    if is_secret_option(key) {
        return if is_reference(value) {
            value.to_string()
        } else {
            star(value)
        };
    }
    let Some(scheme_end) = value.find("://") else {
        return value.to_string();
    };
    let mut out = value.to_string();
    let after = scheme_end + 3;
    let authority_end = value[after..]
        .find(['/', '?', '#'])
        .map_or(value.len(), |i| after + i);
    if let Some(password) = url_password(value)
        && let Some(at) = value[after..authority_end].rfind('@')
    {
        let start = after + at - password.len();
        out.replace_range(start..after + at, &star(password));
    }
    let token_path = key.eq_ignore_ascii_case("url")
        && connector
            .is_some_and(|c| TOKEN_PATH_CONNECTORS.contains(&c.to_ascii_lowercase().as_str()));
    if token_path && authority_end < value.len() {
        // Everything after the first part of the path.
        let path = &value[authority_end..];
        let first_end = path[1.min(path.len())..]
            .find(['/', '?', '#'])
            .map_or(path.len(), |i| i + 1);
        let from = authority_end + first_end;
        out.replace_range(from.., &star(&value[from..]));
    } else if let Some(q) = value.find('?') {
        let mut at = q + 1;
        for pair in value[q + 1..].split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && is_secret_option(&percent_decode(k))
                && !is_reference(v)
            {
                let start = at + k.len() + 1;
                out.replace_range(start..start + v.len(), &star(v));
            }
            at += pair.len() + 1;
        }
    }
    out
}

/// `Debug` for a map of settings: secret values as `***`.
pub struct Redacted<'a>(pub &'a BTreeMap<String, String>);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, render_option(None, k, v))))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KAFKA_PASSWORD" => Some("hunter2-kafka".into()),
            "HOST" => Some("broker:9093".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn references_are_replaced_and_escapes_kept() {
        let e = expand_with("${HOST}/t", &env).unwrap();
        assert_eq!(e.value, "broker:9093/t");
        assert!(e.secrets.is_empty());
        let e = expand_with("p=${KAFKA_PASSWORD}!", &env).unwrap();
        assert_eq!(e.value, "p=hunter2-kafka!");
        assert_eq!(e.secrets, ["hunter2-kafka"]);
        assert_eq!(expand_with("$${HOST}", &env).unwrap().value, "${HOST}");
        assert_eq!(expand_with("a$$${HOST}", &env).unwrap().value, "a$${HOST}");
        assert_eq!(
            expand_with("$5 and $HOST", &env).unwrap().value,
            "$5 and $HOST"
        );
        assert_eq!(expand_with("${NOPE:-x:y}", &env).unwrap().value, "x:y");
        assert_eq!(expand_with("${EMPTY:-d}", &env).unwrap().value, "d");
        assert_eq!(expand_with("${EMPTY}", &env).unwrap().value, "");
    }

    #[test]
    fn an_unset_variable_and_a_bad_reference_are_errors_with_their_place() {
        let e = expand_with("user ${NOPE} x", &env).unwrap_err();
        assert_eq!(e.range(), (5, 12));
        assert!(e.to_string().contains("`NOPE` is not set"), "{e}");
        let e = expand_with("a ${HOST", &env).unwrap_err();
        assert!(e.to_string().contains("closing"), "{e}");
        assert!(e.to_string().contains("$${"), "{e}");
        assert!(expand_with("${1X}", &env).is_err());
        assert!(expand_with("${}", &env).is_err());
        let refs = references("${A}-${B:-b}-$${C}").unwrap();
        let names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert_eq!(refs[1].default.as_deref(), Some("b"));
    }

    #[test]
    fn which_options_are_secret() {
        for key in [
            "password",
            "sasl_password",
            "sasl.password",
            "ssl.key.password",
            "ssl_key_password",
            "token",
            "api_key",
            "client_secret",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "headers",
            "KAFKA_PASSWORD",
            "IOTQL_TEST_SECRET",
            "sslpassword",
        ] {
            assert!(is_secret_option(key), "{key}");
        }
        for key in [
            "key",
            "ssl_key",
            "ssl.key.location",
            "sasl_username",
            "url",
            "path",
            "brokers",
            "topic",
            "keep_alive_s",
        ] {
            assert!(!is_secret_option(key), "{key}");
        }
    }

    #[test]
    fn uris_and_options_are_shown_without_secrets() {
        assert_eq!(
            redact_uri("postgres://iot:hunter2@h:5432/db?table=t"),
            "postgres://iot:***@h:5432/db?table=t"
        );
        assert_eq!(
            redact_uri("kafka://h:9093/t?sasl_username=iot&sasl_password=hunter2&group_id=g"),
            "kafka://h:9093/t?sasl_username=iot&sasl_password=***&group_id=g"
        );
        assert_eq!(
            redact_uri("kafka://h:9093/t?sasl_password=${KAFKA_PASSWORD}"),
            "kafka://h:9093/t?sasl_password=${KAFKA_PASSWORD}"
        );
        assert_eq!(
            redact_uri("slack:https://hooks.slack.com/services/T0/B0/XyZ"),
            "slack:https://hooks.slack.com/services/…"
        );
        assert_eq!(redact_uri("csv:data/r.csv"), "csv:data/r.csv");
        assert_eq!(
            render_option(
                Some("slack"),
                "url",
                "https://hooks.slack.com/services/T/B/X"
            ),
            "https://hooks.slack.com/services/…"
        );
        assert_eq!(render_option(None, "password", "hunter2"), MASK);
        assert_eq!(
            render_option(None, "password", "${MQTT_PASSWORD}"),
            "${MQTT_PASSWORD}"
        );
        assert_eq!(render_option(None, "password", "${P:-hunter2}"), MASK);
        assert_eq!(render_option(None, "topic", "readings"), "readings");
        let settings = BTreeMap::from([
            ("sasl.password".to_string(), "hunter2".to_string()),
            ("sasl.username".to_string(), "iot".to_string()),
        ]);
        let shown = format!("{:?}", Redacted(&settings));
        assert!(
            !shown.contains("hunter2") && shown.contains("iot"),
            "{shown}"
        );
        assert_eq!(
            format!("{:?} {}", Secret::new("x"), Secret::new("x")),
            "*** ***"
        );
    }

    #[test]
    fn masked_values_keep_their_length() {
        let cases = [
            (None, "password", "hunter2", "*******"),
            (None, "password", "${P}", "${P}"),
            (
                None,
                "url",
                "postgres://iot:pw@h/db",
                "postgres://iot:**@h/db",
            ),
            (
                Some("slack"),
                "url",
                "https://hooks.slack.com/services/T0/B0/X",
                "https://hooks.slack.com/services********",
            ),
            (
                None,
                "url",
                "kafka://h:1/t?sasl_password=abc&x=1",
                "kafka://h:1/t?sasl_password=***&x=1",
            ),
            (None, "topic", "readings", "readings"),
        ];
        for (connector, key, value, masked) in cases {
            let m = mask_value(connector, key, value);
            assert_eq!(m, masked);
            assert_eq!(m.len(), value.len());
        }
    }

    #[test]
    fn scrub_masks_remembered_values_and_url_passwords() {
        remember("s3cr3t-value-for-scrub");
        assert_eq!(
            scrub("login failed for s3cr3t-value-for-scrub"),
            "login failed for ***"
        );
        assert_eq!(
            scrub("cannot reach postgres://iot:pw@db:5432/x"),
            "cannot reach postgres://iot:***@db:5432/x"
        );
        assert_eq!(scrub("nothing here"), "nothing here");
        remember("ab");
        assert_eq!(scrub("abc"), "abc");
    }
}
