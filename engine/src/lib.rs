//! # iotql-engine
//!
//! The streaming engine: a job's AST is planned into a graph of operators
//! ([`plan`]), compiled against the inputs' Arrow schemas, and run over
//! Arrow record batches with ASA's event-time semantics: `TIMESTAMP BY`,
//! watermarks, late events adjusted or dropped, windows on the epoch grid
//! emitted when the watermark passes their end.

pub mod anomaly;
pub mod checkpoint;
pub mod dataflow;
pub mod error;
pub mod expr;
pub mod io;
pub mod metrics;
pub mod operator;
pub mod plan;
pub mod time;
pub mod window;

pub use datafusion;
pub use datafusion::arrow;
pub mod job;

pub use job::{Job, Problems};

#[doc = include_str!("../../docs/embedding.md")]
#[cfg(doctest)]
pub struct EmbeddingGuide;
