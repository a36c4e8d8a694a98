//! # iotql-connectors
//!
//! Where events come from and where results go: files (CSV, JSON lines),
//! MQTT, stdout, and the dead-letter output. Each connector implements the
//! engine's `Source` or `Sink`.

pub mod deadletter;
pub mod endpoint;
pub mod file;
pub mod message;
pub mod mqtt;
pub mod sqlite;
