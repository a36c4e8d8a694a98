//! PostgreSQL output: rows into a table, created from the output's schema
//! with typed columns, or an existing table with compatible columns.
//!
//! Rows are buffered and written in transactions of up to `batch_size`
//! rows by binary COPY: straight into the table without a key (when its
//! columns are of our types), else into a temporary staging table, then
//! one `INSERT ... SELECT` into the table (`ON CONFLICT (key) DO UPDATE`
//! with a key). A transaction that fails because the server went away is made
//! again, with backoff, until the server is back: the job waits, no row is
//! dropped. It is safe to make again even when the connection broke during
//! COMMIT: with a key the upsert writes the same values again; without one,
//! the transaction also moves this output's sequence number in
//! `iotql_sink_progress`, and the next attempt skips a batch whose number
//! is already there. An outage is logged once when it begins and once when
//! it ends (`outage.rs`).
//!
//! Across a crash of the job: with a key, replayed rows are upserts onto
//! themselves; without one, each batch's transaction is recorded in a
//! ledger and a job resuming from a checkpoint deletes the rows of the
//! batches after it (`ledger.rs`).
//!
//! Where: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB?table=T&key=a,b`
//! (`postgresql://` too) or a declaration's options (`connector =
//! 'postgres', url = '...', table = '...'`); see docs/postgres.md.

mod copy;
mod ledger;
mod server;
mod sink;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use sink::PostgresSink;

/// Runs `sql` (one text column a row: `$1`, `$2`... are `params`, as text)
/// on the output's server, through the pool its sink uses: the HTTP
/// server reads an output's rows back with it.
pub fn query_text(
    output: &PostgresOutput,
    sql: &str,
    params: &[String],
) -> Result<Vec<String>, String> {
    let server = server::Server::of(output)?;
    let mut client = server.get()?;
    let params: Vec<&(dyn postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect();
    client
        .query(sql, &params)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|row| row.try_get::<_, String>(0).map_err(|e| e.to_string()))
        .collect()
}

impl TableName {
    /// The name as SQL, quoted.
    pub fn quoted(&self) -> String {
        table::qualified(self.schema.as_deref(), &self.name)
    }
}

/// Rows per transaction unless `batch_size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 8192;
/// How long a row may wait in the buffer unless `max_latency` says otherwise.
pub const DEFAULT_MAX_LATENCY: Duration = Duration::from_secs(1);

/// iotql's options, in a declaration or a URL's query. Any other
/// parameter of the URL's query goes to the client (`connect_timeout`,
/// `application_name`, `options`, ...).
const OPTIONS: &[&str] = &[
    "connector",
    "url",
    "table",
    "key",
    "batch_size",
    "max_latency",
    "sslmode",
    "sslrootcert",
];

/// A PostgreSQL output: where to connect, which table, how to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOutput {
    /// Host, port, database, user and password (its `Debug` hides the
    /// password), with the client's own URL parameters.
    pub config: tokio_postgres::Config,
    pub table: TableName,
    /// The columns whose values identify a row: writes are upserts on them.
    /// Empty: plain inserts.
    pub key: Vec<String>,
    /// Rows per transaction.
    pub batch_size: usize,
    /// Buffered rows older than this are written by `tick`.
    pub max_latency: Duration,
    pub tls: TlsMode,
}

/// A table name as written (names are case-sensitive: they are quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// `None`: the first schema of the search path (usually `public`).
    pub schema: Option<String>,
    pub name: String,
}

impl TableName {
    fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('.').collect();
        match parts.as_slice() {
            [name] if !name.is_empty() => Ok(TableName {
                schema: None,
                name: name.to_string(),
            }),
            [schema, name] if !schema.is_empty() && !name.is_empty() => Ok(TableName {
                schema: Some(schema.to_string()),
                name: name.to_string(),
            }),
            _ => Err(format!("table `{text}`: write NAME or SCHEMA.NAME")),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// TLS, as libpq's `sslmode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without checking its certificate
    /// (libpq's default).
    Prefer,
    /// TLS or no connection, without checking the certificate.
    Require,
    /// TLS with a certificate that chains to `root_cert` (PEM; the system's
    /// authorities when `None`) and names the host.
    VerifyFull { root_cert: Option<PathBuf> },
}

impl PostgresOutput {
    /// From `postgres://USER[:PASSWORD]@HOST[:PORT]/DB?table=T&...`, as
    /// written on the command line.
    pub fn from_uri(uri: &str) -> Result<Self, String> {
        let options = BTreeMap::from([("url".to_string(), uri.to_string())]);
        Self::from_options(&options, Path::new(""))
    }

    /// From a declaration's options (`url`, `table`, `key`, ...); iotql's
    /// options may also be given in the URL's query. A relative
    /// `sslrootcert` is taken from `base`. Without a password in the URL,
    /// the `PGPASSWORD` environment variable gives it.
    pub fn from_options(options: &BTreeMap<String, String>, base: &Path) -> Result<Self, String> {
        let url = options
            .get("url")
            .ok_or("the `postgres` connector needs url = 'postgres://USER@HOST:PORT/DB'")?;
        // Its password is a secret: masked in any message (docs/security.md).
        crate::secret::remember_in_uri(url);
        let (mut config, in_url) = parse_url(url)?;
        let mut all = in_url;
        for (k, v) in options {
            if !OPTIONS.contains(&k.as_str()) {
                return Err(format!(
                    "unknown PostgreSQL option `{k}` (known: {}; the client's own parameters, e.g. connect_timeout, go in the URL's query)",
                    OPTIONS[1..].join(", ")
                ));
            }
            all.insert(k.clone(), v.clone());
        }
        with_password(&mut config, std::env::var("PGPASSWORD").ok());
        let table = all
            .get("table")
            .ok_or("the `postgres` connector needs table = 'NAME' (or ?table=NAME in the URL)")?;
        let table = TableName::parse(table)?;
        let tls = tls_mode(&all, base)?;
        config.ssl_mode(match tls {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyFull { .. } => {
                tokio_postgres::config::SslMode::Require
            }
        });
        Ok(PostgresOutput {
            config,
            table,
            key: key_columns(all.get("key"))?,
            batch_size: crate::endpoint::count_option(&all, "batch_size")?
                .unwrap_or(DEFAULT_BATCH_SIZE),
            max_latency: crate::endpoint::duration_option(&all, "max_latency")?
                .unwrap_or(DEFAULT_MAX_LATENCY),
            tls,
        })
    }

    /// `host:port/database as user`, for messages (never the password).
    pub(crate) fn address(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}:{port}/{} as {}",
            hosts.join(","),
            self.config
                .get_dbname()
                .or(self.config.get_user())
                .unwrap_or_default(),
            self.config.get_user().unwrap_or_default()
        )
    }
}

/// The client's configuration from `url`, and iotql's options found in
/// its query (which the client would refuse).
fn parse_url(url: &str) -> Result<(tokio_postgres::Config, BTreeMap<String, String>), String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
        return Err("url: write postgres://USER[:PASSWORD]@HOST[:PORT]/DB".into());
    }
    let (address, query) = url.split_once('?').unwrap_or((url, ""));
    let mut ours = BTreeMap::new();
    let mut theirs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        for (k, v) in crate::endpoint::query_pairs(pair)? {
            if OPTIONS.contains(&k.as_str()) {
                ours.insert(k, v);
            } else {
                theirs.push(pair);
            }
        }
    }
    let client_url = if theirs.is_empty() {
        address.to_string()
    } else {
        format!("{address}?{}", theirs.join("&"))
    };
    // The client's messages name the faulty part, never the password.
    let config = tokio_postgres::Config::from_str(&client_url).map_err(|e| {
        format!(
            "url: {} (iotql's options: {}; the client's: those of libpq, e.g. connect_timeout, application_name)",
            server::describe(&e),
            OPTIONS[2..].join(", ")
        )
    })?;
    if config.get_user().is_none_or(str::is_empty) {
        return Err("url names no user: write postgres://USER@HOST:PORT/DB".into());
    }
    if config.get_hosts().is_empty() {
        return Err("url names no host: write postgres://USER@HOST:PORT/DB".into());
    }
    Ok((config, ours))
}

/// Sets the password from `PGPASSWORD` (`env`) when the URL has none.
fn with_password(config: &mut tokio_postgres::Config, env: Option<String>) {
    if config.get_password().is_none()
        && let Some(password) = env.filter(|p| !p.is_empty())
    {
        crate::secret::remember(&password);
        config.password(password);
    }
}

fn tls_mode(options: &BTreeMap<String, String>, base: &Path) -> Result<TlsMode, String> {
    let root_cert = options.get("sslrootcert").map(|p| base.join(p));
    let mode = options.get("sslmode").map(|m| m.to_ascii_lowercase());
    match (mode.as_deref().unwrap_or("prefer"), root_cert) {
        ("verify-full", root_cert) => Ok(TlsMode::VerifyFull { root_cert }),
        (_, Some(_)) => Err("sslrootcert is used with sslmode = 'verify-full'".into()),
        ("disable", None) => Ok(TlsMode::Disable),
        ("prefer", None) => Ok(TlsMode::Prefer),
        ("require", None) => Ok(TlsMode::Require),
        (other, None) => Err(format!(
            "sslmode `{other}`: use disable, prefer, require or verify-full"
        )),
    }
}

fn key_columns(key: Option<&String>) -> Result<Vec<String>, String> {
    let Some(key) = key else {
        return Ok(Vec::new());
    };
    let mut columns: Vec<String> = Vec::new();
    for column in key.split(',').map(str::trim) {
        if column.is_empty() {
            return Err(format!(
                "key `{key}`: write column names separated by commas, e.g. 'deviceId, windowEnd'"
            ));
        }
        if columns.iter().any(|c| c.eq_ignore_ascii_case(column)) {
            return Err(format!("key `{key}` names `{column}` twice"));
        }
        columns.push(column.to_string());
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_uri_gives_the_server_the_table_and_the_key() {
        let o = PostgresOutput::from_uri(
            "postgres://iot:s%40cret@db.example.org:6543/warehouse?table=stats.DeviceAvg&key=deviceId,%20windowEnd&connect_timeout=5&batch_size=500&max_latency=250ms",
        )
        .unwrap();
        assert_eq!(o.config.get_user(), Some("iot"));
        assert_eq!(o.config.get_password(), Some(&b"s@cret"[..]));
        assert_eq!(o.config.get_dbname(), Some("warehouse"));
        assert_eq!(o.config.get_ports(), &[6543]);
        assert_eq!(
            o.config.get_connect_timeout(),
            Some(&Duration::from_secs(5))
        );
        assert_eq!(
            o.table,
            TableName {
                schema: Some("stats".into()),
                name: "DeviceAvg".into()
            }
        );
        assert_eq!(o.key, vec!["deviceId", "windowEnd"]);
        assert_eq!(o.batch_size, 500);
        assert_eq!(o.max_latency, Duration::from_millis(250));
        assert_eq!(o.tls, TlsMode::Prefer);
        assert_eq!(o.address(), "db.example.org:6543/warehouse as iot");
    }

    #[test]
    fn declaration_options_and_defaults() {
        let options: BTreeMap<String, String> = [
            ("connector", "postgres"),
            ("url", "postgresql://iot@127.0.0.1/warehouse"),
            ("table", "readings"),
            ("sslmode", "verify-full"),
            ("sslrootcert", "certs/ca.pem"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let o = PostgresOutput::from_options(&options, Path::new("/jobs")).unwrap();
        assert_eq!(o.table.to_string(), "readings");
        assert!(o.key.is_empty());
        assert_eq!(o.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(o.max_latency, DEFAULT_MAX_LATENCY);
        assert_eq!(
            o.tls,
            TlsMode::VerifyFull {
                root_cert: Some(PathBuf::from("/jobs/certs/ca.pem"))
            }
        );
    }

    #[test]
    fn mistakes_are_refused_with_what_to_write() {
        let err = |uri: &str| PostgresOutput::from_uri(uri).unwrap_err();
        assert!(err("postgres://iot@h/db").contains("needs table"));
        assert!(err("postgres://h/db?table=t").contains("names no user"));
        assert!(err("postgres://iot@h/db?table=a.b.c").contains("SCHEMA.NAME"));
        assert!(err("postgres://iot@h/db?table=t&key=a,,b").contains("separated by commas"));
        assert!(err("postgres://iot@h/db?table=t&key=a,A").contains("twice"));
        assert!(err("postgres://iot@h/db?table=t&batch_size=0").contains("positive"));
        assert!(err("postgres://iot@h/db?table=t&sslmode=verify-ca").contains("verify-full"));
        assert!(err("postgres://iot@h/db?table=t&sslrootcert=ca.pem").contains("verify-full"));
        let e = err("postgres://iot@h/db?table=t&tabel=u");
        assert!(e.contains("tabel"), "{e}");
        let options = BTreeMap::from([
            ("url".to_string(), "postgres://iot@h/db".to_string()),
            ("table".to_string(), "t".to_string()),
            ("batchsize".to_string(), "10".to_string()),
        ]);
        let e = PostgresOutput::from_options(&options, Path::new("")).unwrap_err();
        assert!(
            e.contains("`batchsize`") && e.contains("batch_size, max_latency"),
            "{e}"
        );
    }

    #[test]
    fn the_password_is_never_shown() {
        let o = PostgresOutput::from_uri("postgres://iot:hunter2@h/db?table=t").unwrap();
        assert!(!format!("{o:?}").contains("hunter2"));
        assert!(!o.address().contains("hunter2"));
        let e =
            PostgresOutput::from_uri("postgres://iot:hunter2@h:notaport/db?table=t").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn pgpassword_fills_in_a_missing_password_only() {
        let mut config = tokio_postgres::Config::from_str("postgres://iot@h/db").unwrap();
        with_password(&mut config, Some("from-env".into()));
        assert_eq!(config.get_password(), Some(&b"from-env"[..]));
        let mut config = tokio_postgres::Config::from_str("postgres://iot:inline@h/db").unwrap();
        with_password(&mut config, Some("from-env".into()));
        assert_eq!(config.get_password(), Some(&b"inline"[..]));
    }
}
