//! # iotql-connectors
//!
//! Where events come from and where results go: files (CSV, JSON lines),
//! Kafka, MQTT, PostgreSQL, stdout, the dead-letter output, and the device simulator ([`sim`]). Each connector implements the
//! engine's `Source` or `Sink`.

pub(crate) mod backoff;
pub mod deadletter;
pub mod endpoint;
pub mod file;
pub mod kafka;
pub mod message;
pub mod mqtt;
pub mod postgres;
pub mod sim;
pub mod sqlite;
pub(crate) mod tls;
