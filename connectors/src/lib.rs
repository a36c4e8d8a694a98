//! # iotql-connectors
//!
//! Where events come from and where results go: files (CSV, JSON lines),
//! SQLite and PostgreSQL tables, Parquet folders, Kafka, MQTT, alert
//! webhooks, Slack and logs ([`alert`]), stdout, the dead-letter output,
//! and the device simulator ([`sim`]). Each connector implements the
//! engine's `Source` or `Sink`; [`throttle`] wraps any sink. With the
//! `serve` feature, `serve` is the HTTP server of `iotql run --http`:
//! the REST API over the outputs, metrics and the dashboard.

pub mod alert;
pub(crate) mod backoff;
pub mod deadletter;
pub mod endpoint;
pub mod file;
pub mod jobtest;
pub mod kafka;
pub mod lookup;
pub mod message;
pub mod mqtt;
pub(crate) mod outage;
pub mod parquet;
pub mod postgres;
pub mod secret;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sim;
pub(crate) mod sql;
pub mod sqlite;
pub(crate) mod template;
pub mod throttle;
pub(crate) mod tls;
