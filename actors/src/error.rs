//! The engine's error type: what a caller of the actors can get back.

use crate::domain::ParseError;
use crate::ports::StoreError;

/// Why an engine request failed. The HTTP layer maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A value broke a rule; names the field.
    #[error(transparent)]
    Invalid(#[from] ParseError),
    /// The named thing does not exist in this workspace.
    #[error("{what} {id:?} was not found in this workspace")]
    NotFound {
        /// `agent`, `workflow`, `recommendation`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Too much pending work; retry after a moment.
    #[error("{0}")]
    Overloaded(String),
    /// `learning.enabled = false`.
    #[error("learning is disabled (learning.enabled = false): nothing is tracked or learned")]
    LearningDisabled,
    /// The engine is stopping.
    #[error("the service is shutting down; retry against another node or after restart")]
    ShuttingDown,
    /// A read waited for pending writes longer than
    /// `tracking.read_flush_timeout_ms` (the writer is slow or stuck).
    #[error("waited {waited_ms} ms for acknowledged recommendations to be written ({pending} still waiting) (tracking.read_flush_timeout_ms); the database is slow or unreachable, retry shortly and check /readyz")]
    FlushTimeout {
        /// How long the read waited.
        waited_ms: u64,
        /// Rows still waiting for the store: the caller's workspace's (all
        /// workspaces' for a node-wide flush), never other tenants' alone.
        pending: u64,
    },
    /// The store refused these recommendations for a permanent reason; they
    /// were recorded in the dead-letter table instead (durable mode).
    #[error(
        "the recommendations were not stored and were moved to the dead-letter table: {message}"
    )]
    WriteRefused {
        /// The store's error.
        message: String,
        /// The data itself was refused (a client error) rather than the store failing.
        data: bool,
    },
    /// Shutdown reached its deadline with rows still unwritten.
    #[error("shutdown deadline reached with {rows} acknowledged recommendations not written")]
    DrainIncomplete {
        /// Rows not written.
        rows: u64,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
