//! Trust state: decayed sufficient statistics folded from outcome samples,
//! and the cards computed from them.
//!
//! Invariant: the state of a workspace is a pure function of its outcome
//! samples folded in `OutcomeSample::key` order, so an incremental update and a
//! full recompute from the store give the same numbers. Samples at or below an
//! agent's watermark are ignored, which makes folding idempotent.
//!
//! - `params`: `TrustParams` and `TrustWeights`, defaults and validation.
//! - `cell`: `CellState`, the decayed sufficient statistics of one cell.
//! - `card`: `TrustCard`, `Trend`, `Strength`: a cell scored into a card.
//! - `workspace`: `WorkspaceTrust`, folding observations, snapshots.

mod card;
mod cell;
mod params;
mod workspace;

#[cfg(test)]
mod testkit;

pub use card::{Strength, Trend, TrustCard};
pub use cell::CellState;
pub use params::{TrustParams, TrustWeights};
pub use workspace::{
    merge_observations, AgentCards, AgentTrust, Folded, Observation, WorkspaceSnapshot,
    WorkspaceTrust,
};
