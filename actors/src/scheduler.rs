//! The `Scheduler` actor (replaces Celery Beat): cron schedules from config
//! start learning cycles for every workspace and the trust recompute. Cron
//! expressions have six fields (sec min hour day-of-month month
//! day-of-week) and are evaluated in UTC. The third trigger, "N newly
//! evaluated outcomes", is the workflow runner's `CycleTrigger`.

use std::str::FromStr;
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ParseError;
use crate::engine::Engine;
use crate::learner::actor::Learner;
use crate::ports::Store;

/// Config section `[scheduler]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Run the scheduled jobs (false: only API, CLI and outcome triggers).
    pub enabled: bool,
    /// When every workspace's learning cycle runs (default daily at 02:00 UTC).
    pub learning_cycle: String,
    /// When trust is recomputed from the store (default every 6 hours).
    pub trust_recompute: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            learning_cycle: "0 0 2 * * *".into(),
            trust_recompute: "0 0 */6 * * *".into(),
        }
    }
}

/// A scheduled job with its next run time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobInfo {
    /// `learning_cycle`, `trust_recompute`, or `learning_cycle_on_outcomes`.
    pub name: String,
    /// Cron expression, or the trigger in words.
    pub schedule: String,
    /// Next run (null for event triggers).
    pub next_run: Option<DateTime<Utc>>,
    /// What it does.
    pub description: String,
}

fn parse(key: &str, expr: &str) -> Result<cron::Schedule, ParseError> {
    cron::Schedule::from_str(expr).map_err(|e| {
        ParseError::new(key, format!("not a cron expression ({e}); use six fields: sec min hour day month weekday, e.g. \"0 0 2 * * *\""))
    })
}

impl SchedulerConfig {
    /// Checks both expressions; the error names the key.
    pub fn validate(&self) -> Result<(), ParseError> {
        parse("learning_cycle", &self.learning_cycle)?;
        parse("trust_recompute", &self.trust_recompute)?;
        Ok(())
    }

    /// Every job with its next run after `now` (like Celery Beat's listing).
    pub fn jobs(&self, now: DateTime<Utc>, cycle_every_outcomes: u64) -> Vec<JobInfo> {
        let next = |expr: &str| parse("", expr).ok().and_then(|s| s.after(&now).next());
        let mut jobs = vec![
            JobInfo {
                name: "learning_cycle".into(),
                schedule: self.learning_cycle.clone(),
                next_run: if self.enabled {
                    next(&self.learning_cycle)
                } else {
                    None
                },
                description: "learning cycle for every workspace (patterns, rules, insights)"
                    .into(),
            },
            JobInfo {
                name: "trust_recompute".into(),
                schedule: self.trust_recompute.clone(),
                next_run: if self.enabled {
                    next(&self.trust_recompute)
                } else {
                    None
                },
                description: "recompute every workspace's trust from stored outcomes".into(),
            },
        ];
        if cycle_every_outcomes > 0 {
            jobs.push(JobInfo {
                name: "learning_cycle_on_outcomes".into(),
                schedule: format!("every {cycle_every_outcomes} evaluated outcomes per workspace"),
                next_run: None,
                description: "learning cycle when enough new outcomes arrived".into(),
            });
        }
        jobs
    }
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Cycle,
    Recompute,
}

/// The actor; start with [`Scheduler::start`].
pub struct Scheduler {
    store: Arc<dyn Store>,
    engine: Engine,
    learner: Learner,
    cycle: cron::Schedule,
    recompute: cron::Schedule,
}

impl Scheduler {
    /// Starts the scheduler (validate the config first).
    pub fn start(
        store: Arc<dyn Store>,
        engine: Engine,
        learner: Learner,
        config: &SchedulerConfig,
    ) -> Result<Addr<Self>, ParseError> {
        let cycle = parse("scheduler.learning_cycle", &config.learning_cycle)?;
        let recompute = parse("scheduler.trust_recompute", &config.trust_recompute)?;
        Ok(Self {
            store,
            engine,
            learner,
            cycle,
            recompute,
        }
        .start())
    }

    fn arm(&self, job: Job, ctx: &mut Context<Self>) {
        let schedule = match job {
            Job::Cycle => &self.cycle,
            Job::Recompute => &self.recompute,
        };
        let Some(at) = schedule.upcoming(Utc).next() else {
            return;
        };
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        ctx.run_later(wait, move |act, ctx| {
            act.fire(job, ctx);
            act.arm(job, ctx);
        });
    }

    fn fire(&self, job: Job, ctx: &mut Context<Self>) {
        let store = Arc::clone(&self.store);
        let engine = self.engine.clone();
        let learner = self.learner.clone();
        metrics::counter!("swarmwise_scheduled_jobs_total", "job" => match job { Job::Cycle => "learning_cycle", Job::Recompute => "trust_recompute" }).increment(1);
        ctx.spawn(
            async move {
                match job {
                    Job::Cycle => match store.workspace_ids().await {
                        Ok(ids) => {
                            tracing::info!(workspaces = ids.len(), "scheduled learning cycles");
                            for ws in ids {
                                learner.request(ws, "schedule");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "scheduled learning cycle: could not list workspaces"),
                    },
                    Job::Recompute => {
                        if let Err(e) = engine.recompute_trust(None).await {
                            tracing::error!(error = %e, "scheduled trust recompute failed");
                        }
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.arm(Job::Cycle, ctx);
        self.arm(Job::Recompute, ctx);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn defaults_run_daily_at_two_and_every_six_hours() {
        let c = SchedulerConfig::default();
        c.validate().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 3, 30, 0).unwrap();
        let jobs = c.jobs(now, 1000);
        assert_eq!(
            jobs[0].next_run,
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap())
        );
        assert_eq!(
            jobs[1].next_run,
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 6, 0, 0).unwrap())
        );
        assert_eq!(jobs[2].name, "learning_cycle_on_outcomes");
        let bad = SchedulerConfig {
            learning_cycle: "every day".into(),
            ..SchedulerConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "learning_cycle");
    }
}
