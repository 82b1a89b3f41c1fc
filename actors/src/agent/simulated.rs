//! Simulated agents with known skill: for demos, benchmarks and checking the
//! learning against ground truth. Deterministic for a seed.
//!
//! Each task draws "good" with the agent's skill for the task's type (after
//! `drift.after` tasks, the drift skill). The answer's content is
//! `{"decision": "sound"|"flawed"}`; the truth travels beside it in
//! `AgentAnswer::ground_truth` (never in content, which any agent could
//! forge), and the workflow runner turns it into verdicts when every agent of
//! a run is simulated. Stated
//! confidence is the honest skill plus `confidence_bias`, clamped to [0, 1].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::backend::{AgentAnswer, AgentBackend, BackendError, Task};

/// Latency of a simulated agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Mean, in milliseconds.
    pub mean: f64,
    /// Uniform jitter ± this many milliseconds.
    #[serde(default)]
    pub jitter: f64,
}

/// A change of skill after some tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    /// After this many tasks...
    pub after: u64,
    /// ...the skill (all types) becomes this.
    pub skill: f64,
}

/// Config of a `simulated` agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedConfig {
    /// Recommendation type → probability that a recommendation is good;
    /// key `"*"` is the default for other types (0.5 if absent).
    #[serde(default)]
    pub skill: BTreeMap<String, f64>,
    /// Latency per task.
    #[serde(default)]
    pub latency_ms: Latency,
    /// Probability that a task fails.
    #[serde(default)]
    pub error_rate: f64,
    /// Added to the honest confidence (positive = overconfident).
    #[serde(default)]
    pub confidence_bias: f64,
    /// Optional change of skill.
    #[serde(default)]
    pub drift: Option<Drift>,
    /// Random seed.
    #[serde(default)]
    pub seed: u64,
    /// Test hook: panic on the tasks with these numbers (1-based), to exercise supervision.
    #[serde(default)]
    pub panic_on_tasks: Vec<u64>,
}

impl SimulatedConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), crate::domain::ParseError> {
        use crate::domain::ParseError;
        for (t, p) in &self.skill {
            if !(0.0..=1.0).contains(p) {
                return Err(ParseError::new(
                    format!("config.skill.{t}"),
                    "must be in [0, 1]",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(ParseError::new("config.error_rate", "must be in [0, 1]"));
        }
        if self.latency_ms.mean < 0.0 || self.latency_ms.jitter < 0.0 {
            return Err(ParseError::new(
                "config.latency_ms",
                "mean and jitter must be >= 0",
            ));
        }
        if let Some(d) = &self.drift {
            if !(0.0..=1.0).contains(&d.skill) {
                return Err(ParseError::new("config.drift.skill", "must be in [0, 1]"));
            }
        }
        Ok(())
    }

    /// The true skill on a type after `done` tasks.
    pub fn skill_for(&self, recommendation_type: &str, done: u64) -> f64 {
        if let Some(d) = &self.drift {
            if done >= d.after {
                return d.skill;
            }
        }
        self.skill
            .get(recommendation_type)
            .or_else(|| self.skill.get("*"))
            .copied()
            .unwrap_or(0.5)
    }
}

/// The simulated backend.
#[derive(Debug)]
pub struct Simulated {
    config: SimulatedConfig,
    /// Random state and tasks done, behind one lock so runs are reproducible.
    state: Mutex<(StdRng, u64)>,
}

impl Simulated {
    /// A simulated agent.
    pub fn new(config: SimulatedConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self {
            config,
            state: Mutex::new((rng, 0)),
        }
    }
}

#[async_trait]
impl AgentBackend for Simulated {
    async fn execute(&self, task: &Task) -> Result<AgentAnswer, BackendError> {
        let (fails, good, skill, delay, n) = {
            let mut guard = self
                .state
                .lock()
                .map_err(|_| BackendError::Failed("simulated agent state poisoned".into()))?;
            let (rng, done) = &mut *guard;
            let skill = self.config.skill_for(&task.recommendation_type, *done);
            *done += 1;
            let fails = rng.gen_bool(self.config.error_rate.clamp(0.0, 1.0));
            let good = rng.gen_bool(skill.clamp(0.0, 1.0));
            let jitter = if self.config.latency_ms.jitter > 0.0 {
                rng.gen_range(-self.config.latency_ms.jitter..=self.config.latency_ms.jitter)
            } else {
                0.0
            };
            let delay = (self.config.latency_ms.mean + jitter).max(0.0);
            (fails, good, skill, delay, *done)
        };
        if self.config.panic_on_tasks.contains(&n) {
            panic!("simulated agent panics on task {n} (panic_on_tasks)");
        }
        if delay > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(delay / 1000.0)).await;
        }
        if fails {
            return Err(BackendError::Failed(
                "simulated failure (error_rate)".into(),
            ));
        }
        let confidence = (skill + self.config.confidence_bias).clamp(0.0, 1.0);
        Ok(AgentAnswer {
            content: json!({ "decision": if good { "sound" } else { "flawed" } }),
            confidence,
            reasoning: Some(format!(
                "simulated agent, skill {skill:.2} on {}",
                task.recommendation_type
            )),
            ground_truth: Some(good),
            usage: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::domain::WorkspaceId;

    fn task(t: &str) -> Task {
        Task {
            id: uuid::Uuid::nil(),
            workspace_id: WorkspaceId(uuid::Uuid::nil()),
            workflow_id: "w".into(),
            correlation_id: "c".into(),
            workflow: "wf".into(),
            stage: "s".into(),
            recommendation_type: t.into(),
            input: json!({}),
            context: json!({}),
        }
    }

    fn config(skill: f64, seed: u64) -> SimulatedConfig {
        SimulatedConfig {
            skill: [("strategy".to_owned(), skill)].into_iter().collect(),
            latency_ms: Latency::default(),
            error_rate: 0.0,
            confidence_bias: 0.0,
            drift: None,
            seed,
            panic_on_tasks: Vec::new(),
        }
    }

    #[tokio::test]
    async fn deterministic_for_a_seed_and_follows_skill() {
        let a = Simulated::new(config(0.8, 3));
        let b = Simulated::new(config(0.8, 3));
        let mut good = 0;
        for _ in 0..500 {
            let x = a.execute(&task("strategy")).await.unwrap();
            let y = b.execute(&task("strategy")).await.unwrap();
            assert_eq!(x, y);
            good += usize::from(x.ground_truth.unwrap());
        }
        // 0.8 · 500 = 400, sd ≈ 9: a 4-sd tolerance.
        assert!((364..=436).contains(&good), "{good}");
    }

    #[tokio::test]
    async fn drift_and_bias_and_errors() {
        let mut c = config(0.9, 1);
        c.drift = Some(Drift {
            after: 10,
            skill: 0.1,
        });
        c.confidence_bias = 0.5;
        let s = Simulated::new(c.clone());
        for i in 0..20 {
            let a = s.execute(&task("strategy")).await.unwrap();
            let expected = if i < 10 { 1.0 } else { 0.6 };
            assert!(
                (a.confidence - expected).abs() < 1e-12,
                "task {i}: {}",
                a.confidence
            );
        }
        c.error_rate = 1.0;
        assert!(Simulated::new(c).execute(&task("x")).await.is_err());
    }
}
