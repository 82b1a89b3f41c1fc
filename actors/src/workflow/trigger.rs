//! When a learning cycle is due: the [`CycleTrigger`] port the runner (and
//! the REST outcome paths) tell how many outcomes each evaluation added, and
//! [`CountingTrigger`], which requests a cycle every N outcomes per workspace.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::domain::WorkspaceId;

/// The engine's port to the meta-learner: told how many outcomes each
/// evaluation added, it decides whether a learning cycle is due.
pub trait CycleTrigger: Send + Sync + 'static {
    /// `n` outcomes were just evaluated in `ws`.
    fn outcomes_evaluated(&self, ws: WorkspaceId, n: u64);
}

/// `should_trigger_learning_cycle`: requests a cycle every `threshold`
/// evaluated outcomes per workspace, by calling `on_due` (counted in
/// `swarmwise_learning_cycles_requested_total`).
pub struct CountingTrigger {
    threshold: u64,
    counts: DashMap<WorkspaceId, u64>,
    requested: AtomicU64,
    on_due: Box<dyn Fn(WorkspaceId) + Send + Sync>,
}

impl CountingTrigger {
    /// Requests a cycle every `threshold` outcomes (0 = never).
    pub fn new(threshold: u64, on_due: impl Fn(WorkspaceId) + Send + Sync + 'static) -> Self {
        Self {
            threshold,
            counts: DashMap::new(),
            requested: AtomicU64::new(0),
            on_due: Box::new(on_due),
        }
    }

    /// Cycles requested so far.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Relaxed)
    }
}

impl CycleTrigger for CountingTrigger {
    fn outcomes_evaluated(&self, ws: WorkspaceId, n: u64) {
        if self.threshold == 0 {
            return;
        }
        let due = {
            let mut c = self.counts.entry(ws).or_insert(0);
            *c += n;
            let due = *c >= self.threshold;
            if due {
                *c = 0;
            }
            due
        };
        if due {
            self.requested.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("swarmwise_learning_cycles_requested_total").increment(1);
            tracing::info!(workspace = %ws, "learning cycle due (learning.cycle_every_outcomes reached)");
            (self.on_due)(ws);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::sync::{Arc, Mutex};

    use uuid::Uuid;

    use super::*;

    fn recording(threshold: u64) -> (CountingTrigger, Arc<Mutex<Vec<WorkspaceId>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let t = CountingTrigger::new(threshold, move |ws| s.lock().unwrap().push(ws));
        (t, seen)
    }

    #[test]
    fn a_cycle_is_requested_every_threshold_outcomes_per_workspace() {
        let (t, seen) = recording(3);
        let (a, b) = (WorkspaceId(Uuid::now_v7()), WorkspaceId(Uuid::now_v7()));
        t.outcomes_evaluated(a, 2);
        t.outcomes_evaluated(b, 2);
        assert_eq!(t.requested(), 0, "neither workspace reached 3");
        t.outcomes_evaluated(a, 1);
        assert_eq!(*seen.lock().unwrap(), vec![a]);
        // The count restarts after a request; b's count is its own.
        t.outcomes_evaluated(a, 2);
        t.outcomes_evaluated(b, 5);
        assert_eq!(*seen.lock().unwrap(), vec![a, b]);
        assert_eq!(t.requested(), 2);
    }

    #[test]
    fn threshold_zero_never_requests() {
        let (t, seen) = recording(0);
        t.outcomes_evaluated(WorkspaceId(Uuid::now_v7()), 1_000);
        assert_eq!(t.requested(), 0);
        assert!(seen.lock().unwrap().is_empty());
    }
}
