//! Fairness between tenants: bounded work per API key and per workspace, so
//! one tenant cannot starve another (DESIGN §1).
//!
//! - requests per workspace API key: a token bucket per key (GCRA, the
//!   `governor` crate), `limits.key_requests_per_second` with bursts of
//!   `limits.key_burst`; checked by the authentication middleware once the
//!   key is known to be valid, so invented keys create no state;
//! - workflow runs in flight per workspace: `limits.max_runs_in_flight`,
//!   a counter per workspace held by a [`RunSlot`] for the run's whole life
//!   (also while a `wait: false` run executes in the background);
//! - tasks queued per agent: `agents.max_queued_tasks`, enforced by the
//!   agent actor (the task is answered at once with an error the run reports).
//!
//! The first two answer 429 with `Retry-After`; every refusal is counted in
//! `swarmwise_rate_limited_total{limit}` (limit ∈ api_key, workflow_runs,
//! agent_queue, event_streams). The admin key (the operator) is not rate-limited.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;
use swarmwise_actors::domain::WorkspaceId;

use crate::config::LimitSettings;
use crate::error::{ApiError, ErrorCode};

/// The per-key and per-workspace limits of one process.
pub struct Limits {
    /// Token buckets by key digest; `None` when `key_requests_per_second = 0`.
    per_key: Option<DefaultKeyedRateLimiter<String>>,
    /// Runs in flight by workspace; entries at zero are pruned by `upkeep`.
    runs: DashMap<WorkspaceId, Arc<AtomicUsize>>,
    /// `limits.max_runs_in_flight` (0 = unlimited).
    max_runs: usize,
    /// Event streams open by workspace; entries at zero are pruned by `upkeep`.
    streams: DashMap<WorkspaceId, Arc<AtomicUsize>>,
    /// `limits.max_event_streams_per_workspace` (0 = unlimited).
    max_streams: usize,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("per_key", &self.per_key.is_some())
            .field("max_runs", &self.max_runs)
            .finish()
    }
}

/// Counts one refusal.
pub fn count_refusal(limit: &'static str) {
    metrics::counter!("swarmwise_rate_limited_total", "limit" => limit).increment(1);
}

impl Limits {
    /// From `[limits]`.
    pub fn new(settings: &LimitSettings) -> Self {
        let per_key = NonZeroU32::new(settings.key_requests_per_second).map(|rate| {
            let burst = NonZeroU32::new(settings.key_burst).unwrap_or(rate);
            RateLimiter::dashmap(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            per_key,
            runs: DashMap::new(),
            max_runs: settings.max_runs_in_flight,
            streams: DashMap::new(),
            max_streams: settings.max_event_streams_per_workspace,
        }
    }

    /// Takes one request from the bucket of the key with this digest; 429
    /// `rate_limited` with the seconds until the next one is allowed.
    pub fn check_key(&self, key_hash: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_key else {
            return Ok(());
        };
        match limiter.check_key(&key_hash.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                count_refusal("api_key");
                // The limiter's own clock: building a new one calibrates it (costly).
                let wait = not_until.wait_time_from(limiter.clock().now());
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(too_many(
                    ErrorCode::RateLimited,
                    "this API key sent more requests than limits.key_requests_per_second allows; slow down and retry after Retry-After seconds",
                    secs.max(1),
                ))
            }
        }
    }

    /// A slot for one more workflow run of `ws`, held until the run ends; 429
    /// `too_many_runs` past `limits.max_runs_in_flight`.
    pub fn start_run(&self, ws: WorkspaceId) -> Result<RunSlot, ApiError> {
        let counter = Arc::clone(self.runs.entry(ws).or_default().value());
        let before = counter.fetch_add(1, Ordering::AcqRel);
        let slot = RunSlot(counter);
        if self.max_runs > 0 && before >= self.max_runs {
            drop(slot);
            count_refusal("workflow_runs");
            return Err(too_many(
                ErrorCode::TooManyRuns,
                format!(
                    "this workspace already has {} workflow runs in flight (limits.max_runs_in_flight); wait for some to finish and retry",
                    self.max_runs
                ),
                1,
            ));
        }
        Ok(slot)
    }

    /// A slot for one more open event stream of `ws`, held (moved into the
    /// stream) until the client goes away; 429 `too_many_streams` past
    /// `limits.max_event_streams_per_workspace`.
    pub fn start_stream(&self, ws: WorkspaceId) -> Result<RunSlot, ApiError> {
        let counter = Arc::clone(self.streams.entry(ws).or_default().value());
        let before = counter.fetch_add(1, Ordering::AcqRel);
        let slot = RunSlot(counter);
        if self.max_streams > 0 && before >= self.max_streams {
            drop(slot);
            count_refusal("event_streams");
            return Err(too_many(
                ErrorCode::TooManyStreams,
                format!(
                    "this workspace already has {} event streams open (limits.max_event_streams_per_workspace); close one (another tab or client) and retry",
                    self.max_streams
                ),
                5,
            ));
        }
        Ok(slot)
    }

    /// Event streams of `ws` open now.
    pub fn streams_open(&self, ws: WorkspaceId) -> usize {
        self.streams
            .get(&ws)
            .map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// Runs in flight of `ws` now.
    pub fn runs_in_flight(&self, ws: WorkspaceId) -> usize {
        self.runs.get(&ws).map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// Forgets idle state: buckets full again, workspaces with no run.
    pub fn upkeep(&self) {
        if let Some(limiter) = &self.per_key {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.runs
            .retain(|_, c| c.load(Ordering::Acquire) > 0 || Arc::strong_count(c) > 1);
        self.streams
            .retain(|_, c| c.load(Ordering::Acquire) > 0 || Arc::strong_count(c) > 1);
    }
}

/// One workflow run in flight (or one open event stream); dropping it frees
/// the slot.
#[derive(Debug)]
pub struct RunSlot(Arc<AtomicUsize>);

impl Drop for RunSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn too_many(code: ErrorCode, message: impl Into<String>, retry_after_secs: u64) -> ApiError {
    ApiError::new(code, message).with_details(json!({ "retry_after_secs": retry_after_secs }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use actix_web::http::StatusCode;

    fn settings(rate: u32, burst: u32, runs: usize) -> LimitSettings {
        LimitSettings {
            key_requests_per_second: rate,
            key_burst: burst,
            max_runs_in_flight: runs,
            ..LimitSettings::default()
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_429_and_other_keys_are_untouched() {
        let l = Limits::new(&settings(1, 3, 0));
        for _ in 0..3 {
            l.check_key("a").unwrap();
        }
        let e = l.check_key("a").unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.details["retry_after_secs"].as_u64().unwrap() >= 1);
        l.check_key("b").unwrap();
        let off = Limits::new(&settings(0, 0, 0));
        for _ in 0..10_000 {
            off.check_key("a").unwrap();
        }
    }

    #[test]
    fn runs_in_flight_are_capped_per_workspace_and_freed_on_drop() {
        let l = Limits::new(&settings(0, 0, 2));
        let a = WorkspaceId(uuid::Uuid::now_v7());
        let b = WorkspaceId(uuid::Uuid::now_v7());
        let s1 = l.start_run(a).unwrap();
        let _s2 = l.start_run(a).unwrap();
        assert_eq!(l.start_run(a).unwrap_err().code, ErrorCode::TooManyRuns);
        assert_eq!(l.runs_in_flight(a), 2, "a refusal holds no slot");
        let _b1 = l.start_run(b).unwrap();
        drop(s1);
        let _s3 = l.start_run(a).unwrap();
        l.upkeep();
        assert_eq!(l.runs_in_flight(a), 2);
    }
}
