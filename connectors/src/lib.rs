//! # iotql-connectors
//!
//! Where events come from and where results go: files (CSV, JSON lines),
//! SQLite and PostgreSQL tables, Parquet folders, Kafka, MQTT, alert
//! webhooks, Slack and logs ([`alert`]), stdout, the dead-letter output,
//! and the device simulator ([`sim`]). Each connector implements the
//! engine's `Source` or `Sink`; [`throttle`] wraps any sink.

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
pub mod sim;
pub mod sqlite;
pub(crate) mod template;
pub mod throttle;
pub(crate) mod tls;
