//! Restart policy for supervised actors.
//!
//! actix's `Supervisor` restarts an actor that stops, keeping its address and
//! mailbox, so no queued message is lost. This module adds what actix lacks:
//! a restart limit within a window, exponential backoff, and escalation when
//! the limit is hit (the actor's health turns `failed`, which `/readyz`
//! reports, and it keeps restarting at the longest backoff).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

/// Config of one actor kind (`[supervision.<kind>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// Restarts allowed within `window_secs` before escalating.
    pub max_restarts: u32,
    /// The window, in seconds.
    pub window_secs: u64,
    /// First backoff before a restarted actor reloads, in milliseconds; doubles each time.
    pub backoff_initial_ms: u64,
    /// Longest backoff, in milliseconds.
    pub backoff_max_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window_secs: 60,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
        }
    }
}

/// Health of a supervised actor as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorHealth {
    /// Starting or reloading state.
    Starting,
    /// Serving.
    Running,
    /// Restarted more than the policy allows within its window.
    Failed,
}

/// Shared registry of actor health, read by `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct HealthRegistry(Arc<DashMap<&'static str, (ActorHealth, u64)>>);

impl HealthRegistry {
    /// Sets an actor's state.
    pub fn set(&self, actor: &'static str, health: ActorHealth) {
        let restarts = self.0.get(actor).map_or(0, |e| e.1);
        self.0.insert(actor, (health, restarts));
    }

    /// Counts a restart.
    pub fn restarted(&self, actor: &'static str) {
        let mut e = self.0.entry(actor).or_insert((ActorHealth::Starting, 0));
        e.1 += 1;
    }

    /// Every actor with its state and restart count.
    pub fn all(&self) -> Vec<(&'static str, ActorHealth, u64)> {
        let mut v: Vec<_> = self.0.iter().map(|e| (*e.key(), e.0, e.1)).collect();
        v.sort_by_key(|x| x.0);
        v
    }

    /// One actor's state.
    pub fn get(&self, actor: &'static str) -> Option<ActorHealth> {
        self.0.get(actor).map(|e| e.0)
    }
}

/// Tracks restarts of one actor against its policy.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    /// Restart times within the window, oldest first.
    recent: VecDeque<Instant>,
    /// Consecutive restarts, for the backoff exponent.
    streak: u32,
}

impl RestartTracker {
    /// A tracker for a policy.
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
            streak: 0,
        }
    }

    /// Records a restart at `now`; returns the backoff to wait before reloading
    /// and whether the policy's limit is exceeded (escalate).
    pub fn on_restart(&mut self, now: Instant) -> (Duration, bool) {
        let window = Duration::from_secs(self.policy.window_secs);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.recent.pop_front();
        }
        if self.recent.is_empty() {
            self.streak = 0;
        }
        self.recent.push_back(now);
        self.streak = self.streak.saturating_add(1);
        let exceeded = self.recent.len() > self.policy.max_restarts as usize;
        let factor = 2u64.saturating_pow(self.streak.saturating_sub(1).min(20));
        let backoff = self
            .policy
            .backoff_initial_ms
            .saturating_mul(factor)
            .min(self.policy.backoff_max_ms);
        (Duration::from_millis(backoff), exceeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_limit_escalates() {
        let mut t = RestartTracker::new(RestartPolicy {
            max_restarts: 2,
            window_secs: 60,
            backoff_initial_ms: 100,
            backoff_max_ms: 250,
        });
        let now = Instant::now();
        assert_eq!(t.on_restart(now), (Duration::from_millis(100), false));
        assert_eq!(t.on_restart(now), (Duration::from_millis(200), false));
        assert_eq!(t.on_restart(now), (Duration::from_millis(250), true));
        // Outside the window the count starts again.
        let later = now + Duration::from_secs(61);
        assert_eq!(t.on_restart(later), (Duration::from_millis(100), false));
    }
}
