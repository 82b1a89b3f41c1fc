//! The `MetaLearner` actor: runs learning cycles, one at a time per
//! workspace (a second request while one runs is refused with a conflict,
//! so callers never wait on a stale duplicate). The mining itself runs on a
//! blocking thread; the actor only keeps the single-flight set.
//!
//! A cycle: record the report as `running`, load outcomes and patterns,
//! `run_cycle`, then store patterns, rules (a new version) and the finished
//! report in one transaction, and publish `learning_cycle`. A failure is
//! stored with its error and published too.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::{TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::cycle::{run_cycle, LifecycleParams};
use super::patterns::{MiningParams, OutcomeRecord};
use super::CycleReport;
use crate::domain::{to_micros, WorkspaceId};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::Event;
use crate::ports::Store;
use crate::supervisor::{RestartPolicy, RestartTracker};

/// Config section `[learner]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerConfig {
    /// Two recommendations of one workflow and type agree when their
    /// `content.<decision_key>` are equal (or their whole contents, without it).
    pub decision_key: String,
    /// Mining thresholds.
    pub mining: MiningParams,
    /// Lifecycle thresholds.
    pub lifecycle: LifecycleParams,
    /// Keep each workspace's outcomes in memory between cycles and read only
    /// newer ones (a changed verdict forces a full reload).
    pub cache_outcomes: bool,
    /// Learning from unevaluated workflows (`[learner.agreement]`).
    pub agreement: super::agreement::AgreementConfig,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        Self {
            decision_key: "decision".into(),
            mining: MiningParams::default(),
            lifecycle: LifecycleParams::default(),
            cache_outcomes: true,
            agreement: super::agreement::AgreementConfig::default(),
        }
    }
}

/// Run one cycle now.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<CycleReport, EngineError>")]
pub struct RunCycle {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// `api`, `schedule`, `outcomes`, `cli`.
    pub reason: String,
}

/// Handle to the meta-learner; cheap to clone, hides actix.
#[derive(Clone)]
pub struct Learner {
    addr: Addr<MetaLearner>,
}

impl Learner {
    /// Starts the supervised actor.
    pub fn start(
        store: Arc<dyn Store>,
        engine: Engine,
        config: LearnerConfig,
        policy: RestartPolicy,
    ) -> Self {
        Self {
            addr: MetaLearner::start_supervised(store, engine, config, policy),
        }
    }

    /// Runs one cycle now (refused with a conflict while one runs for `ws`).
    pub async fn run(&self, ws: WorkspaceId, reason: &str) -> Result<CycleReport, EngineError> {
        self.addr
            .send(RunCycle {
                workspace: ws,
                reason: reason.into(),
            })
            .await
            .map_err(|_| EngineError::ShuttingDown)?
    }

    /// Requests a cycle without waiting (the outcome trigger, the scheduler).
    pub fn request(&self, ws: WorkspaceId, reason: &str) {
        self.addr.do_send(RunCycle {
            workspace: ws,
            reason: reason.into(),
        });
    }
}

/// The actor.
pub struct MetaLearner {
    store: Arc<dyn Store>,
    engine: Engine,
    config: Arc<LearnerConfig>,
    running: HashSet<WorkspaceId>,
    restarts: RestartTracker,
    /// Outcomes kept between cycles (survives restarts: reloaded when stale).
    cache: OutcomeCache,
}

impl MetaLearner {
    /// Starts under a supervisor.
    pub fn start_supervised(
        store: Arc<dyn Store>,
        engine: Engine,
        config: LearnerConfig,
        policy: RestartPolicy,
    ) -> Addr<Self> {
        let config = Arc::new(config);
        Supervisor::start(move |_| Self {
            store,
            engine,
            config,
            running: HashSet::new(),
            restarts: RestartTracker::new(policy),
            cache: OutcomeCache::default(),
        })
    }
}

impl Actor for MetaLearner {
    type Context = Context<Self>;
}

impl Supervised for MetaLearner {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Cycles in flight were dropped with the old context.
        self.running.clear();
        let _ = self.restarts.on_restart(Instant::now());
        metrics::counter!("swarmwise_actor_restarts_total", "actor" => "meta_learner").increment(1);
    }
}

/// Reports a cycle's phases (the CLI draws a progress bar with it).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// Outcomes loaded by earlier cycles, so a cycle reads only newer ones.
#[derive(Debug, Default)]
pub struct RecordCache {
    records: Vec<OutcomeRecord>,
    ids: HashSet<Uuid>,
    /// The engine's verdict revision when loaded; a change means reload.
    revision: u64,
}

/// Per-workspace outcome caches, shared by the cycles of one node.
pub type OutcomeCache = Arc<std::sync::Mutex<HashMap<WorkspaceId, RecordCache>>>;

/// Re-read this far back on incremental loads, so outcomes committed late by
/// another node (evaluation times are per node) are not missed.
const OVERLAP: TimeDelta = TimeDelta::minutes(10);

/// Runs a cycle to the end (no single-flight: the actor provides it).
pub async fn cycle(
    store: Arc<dyn Store>,
    engine: Engine,
    config: Arc<LearnerConfig>,
    ws: WorkspaceId,
    reason: String,
    progress: Progress,
    cache: OutcomeCache,
) -> Result<CycleReport, EngineError> {
    let Some(lock) = store.try_lock_cycle(ws).await? else {
        return Err(EngineError::Conflict(
            "another node is running this workspace's learning cycle; read it with GET /api/v1/learning/cycles/latest".into(),
        ));
    };
    let result = locked_cycle(store, engine, config, ws, reason, progress, cache).await;
    lock.release().await;
    result
}

async fn locked_cycle(
    store: Arc<dyn Store>,
    engine: Engine,
    config: Arc<LearnerConfig>,
    ws: WorkspaceId,
    reason: String,
    progress: Progress,
    cache: OutcomeCache,
) -> Result<CycleReport, EngineError> {
    let started = Instant::now();
    let mut report = CycleReport {
        id: Uuid::now_v7(),
        workspace_id: ws,
        status: "running".into(),
        reason,
        started_at: to_micros(Utc::now()),
        finished_at: None,
        recommendations_processed: 0,
        patterns_discovered: 0,
        patterns_confirmed: 0,
        patterns_retired: 0,
        rules_updated: 0,
        model_accuracy: None,
        coverage: None,
        insights: json!({}),
        error: None,
    };
    store.insert_cycle(&report).await?;
    let result: Result<_, EngineError> = async {
        engine.flush_workspace(ws).await?;
        let revision = engine.verdict_revision(ws);
        let mut cached = cache
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&ws))
            .filter(|c| config.cache_outcomes && c.revision == revision)
            .unwrap_or_else(|| RecordCache {
                revision,
                ..RecordCache::default()
            });
        let since = cached.records.last().map(|r| r.evaluated_at - OVERLAP);
        progress(if since.is_some() {
            "loading new outcomes"
        } else {
            "loading outcomes"
        });
        let fresh = store
            .outcome_records(ws, &config.decision_key, since)
            .await?;
        let mut added = 0u64;
        for r in fresh {
            if cached.ids.insert(r.id) {
                cached.records.push(r);
                added += 1;
            }
        }
        if since.is_some() && added > 0 {
            // Nearly sorted already: the stable sort is close to linear here.
            cached.records.sort_by_key(|r| (r.evaluated_at, r.id));
        }
        progress(&format!(
            "mining {} outcomes ({added} new)",
            cached.records.len()
        ));
        let existing = store.patterns(ws).await?;
        let version = store.cycle_count(ws).await? + 1;
        let trust = engine.trust(ws);
        let pending = if config.agreement.enabled {
            progress("loading unevaluated recommendations for agreement");
            store
                .pending_decisions(ws, &config.decision_key, config.agreement.max_pending)
                .await?
        } else {
            Vec::new()
        };
        let cfg = Arc::clone(&config);
        let now = to_micros(Utc::now());
        let (outcome, agreement, cached) = tokio::task::spawn_blocking(move || {
            let o = run_cycle(
                &cached.records,
                existing,
                &trust,
                &cfg.mining,
                &cfg.lifecycle,
                now,
            );
            let a = super::agreement::estimate(&cached.records, &pending, &cfg.agreement);
            (o, a, cached)
        })
        .await
        .map_err(|e| {
            EngineError::Store(crate::ports::StoreError::Unexpected(anyhow::anyhow!(
                "mining failed: {e}"
            )))
        })?;
        if config.cache_outcomes {
            if let Ok(mut m) = cache.lock() {
                m.insert(ws, cached);
            }
        }
        Ok((outcome, agreement, version, added))
    }
    .await;
    match result {
        Ok((o, agreement, version, added)) => {
            report.status = "succeeded".into();
            report.finished_at = Some(to_micros(Utc::now()));
            report.recommendations_processed = o.processed;
            report.patterns_discovered = o.discovered;
            report.patterns_confirmed = o.confirmed;
            report.patterns_retired = o.retired;
            report.rules_updated = o.rules_added + o.rules_changed + o.rules_retired;
            report.model_accuracy = (o.holdout.test > 0).then_some(o.holdout.model_accuracy);
            report.coverage = (o.holdout.test > 0).then_some(o.holdout.coverage);
            report.insights = json!({
                "key_insights": o.insights,
                "recommended_actions": o.actions,
                "holdout": o.holdout,
                "candidates_tested": o.tested,
                "new_outcomes": added,
                "rules_added": o.rules_added,
                "rules_changed": o.rules_changed,
                "rules_retired": o.rules_retired,
                "rules_active": o.rules.len(),
                "rule_version": version,
                "duration_seconds": started.elapsed().as_secs_f64(),
                "agreement": &agreement,
            });
            progress(&format!(
                "storing {} patterns and {} rules",
                o.patterns.len(),
                o.rules.len()
            ));
            store
                .save_cycle(&report, &o.patterns, &o.rules, version as i32)
                .await?;
            engine.set_agreement(ws, Arc::new(agreement));
            metrics::histogram!("swarmwise_learning_cycle_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("swarmwise_learning_cycles_total", "status" => "succeeded")
                .increment(1);
            engine.events().publish(Event::LearningCycle {
                workspace_id: ws,
                cycle_id: report.id.to_string(),
                status: report.status.clone(),
                error: None,
                reason: report.reason.clone(),
                duration_seconds: started.elapsed().as_secs_f64(),
                patterns_discovered: report.patterns_discovered,
            });
            Ok(report)
        }
        Err(e) => {
            report.status = "failed".into();
            report.finished_at = Some(to_micros(Utc::now()));
            report.error = Some(e.to_string());
            metrics::counter!("swarmwise_learning_cycles_total", "status" => "failed").increment(1);
            tracing::error!(workspace = %ws, error = %e, "learning cycle failed");
            engine.events().publish(Event::LearningCycle {
                workspace_id: ws,
                cycle_id: report.id.to_string(),
                status: "failed".into(),
                error: report.error.clone(),
                reason: report.reason.clone(),
                duration_seconds: started.elapsed().as_secs_f64(),
                patterns_discovered: 0,
            });
            if let Err(store_err) = store.fail_cycle(&report).await {
                // The failure itself is not lost: logged whole, with the cycle id.
                tracing::error!(workspace = %ws, cycle = %report.id, error = %e, store_error = %store_err, "could not record the failed learning cycle; it stays `running` in the store until the next start marks it interrupted");
            }
            Err(e)
        }
    }
}

impl Handler<RunCycle> for MetaLearner {
    type Result = ResponseActFuture<Self, Result<CycleReport, EngineError>>;

    fn handle(&mut self, msg: RunCycle, _ctx: &mut Context<Self>) -> Self::Result {
        let ws = msg.workspace;
        if !self.running.insert(ws) {
            return Box::pin(actix::fut::ready(Err(EngineError::Conflict(
                "a learning cycle is already running for this workspace; read it with GET /api/v1/learning/cycles/latest".into(),
            ))));
        }
        let fut = cycle(
            Arc::clone(&self.store),
            self.engine.clone(),
            Arc::clone(&self.config),
            ws,
            msg.reason,
            Arc::new(|_: &str| {}),
            Arc::clone(&self.cache),
        );
        Box::pin(fut.into_actor(self).map(move |res, act, _| {
            act.running.remove(&ws);
            res
        }))
    }
}
