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
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
