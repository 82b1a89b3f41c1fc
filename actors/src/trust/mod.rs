//! Trust: per agent and per (agent, recommendation type).
//!
//! - [`maths`]: pure statistics (Wilson bounds, tests, calibration error).
//! - [`consensus`]: the trust-weighted vote and Dawid–Skene EM.
//! - [`change`]: sequential change detection (CUSUM) behind the trend label.
//! - [`state`]: decayed sufficient statistics folded from outcome samples, and
//!   the cards (every sub-score of DESIGN §3) computed from them, by concern:
//!   `state/params.rs` (`TrustParams`), `state/cell.rs` (`CellState`, decay,
//!   posterior), `state/card.rs` (`TrustCard`, scoring a cell),
//!   `state/workspace.rs` (`WorkspaceTrust`, folding, snapshots).
//! - [`select`]: Thompson-sampling selection of the top N agents by trust.
//! - [`scorer`]: the `TrustScorer` actor that owns the state, and the
//!   read-only [`TrustSnapshots`] readers use without a message.

pub mod change;
pub mod consensus;
pub mod maths;
pub mod scorer;
pub mod select;
pub mod state;

pub use scorer::{
    FailuresRecorded, OutcomesRecorded, Ping, Recompute, RecomputeAgent, RefreshAgents, Restart,
    TrustScorer, TrustSnapshots,
};
pub use state::{
    merge_observations, AgentCards, Folded, Observation, Strength, Trend, TrustCard, TrustParams,
    TrustWeights, WorkspaceSnapshot, WorkspaceTrust,
};
