//! Errors of a running job, by who must act.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A bug or an unexpected condition inside iotql.
    #[error("internal error: {0}")]
    Internal(String),
    /// Computing an expression failed (DataFusion).
    #[error("evaluation failed: {0}")]
    Eval(#[from] DataFusionError),
    /// Arrow rejected data.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// A sink could not write (an external system must act).
    #[error("output `{output}`: {message}")]
    Sink { output: String, message: String },
    /// A source could not be read (an external system or the user must act).
    #[error("input `{input}`: {message}")]
    Source { input: String, message: String },
    /// A connector was asked for something it cannot do (the user must
    /// choose another connector or option).
    #[error("{0}")]
    Unsupported(String),
    /// A checkpoint could not be restored.
    #[error("state: {0}")]
    State(String),
}
