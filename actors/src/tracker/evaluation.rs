//! Evaluation: `Evaluate` and `Feedback` wait for the writer, then record
//! verdicts with monotonic evaluation times and tell the `TrustScorer` the
//! outcome samples after their commit. Evaluations are group-committed
//! ([`Evaluator`]): every evaluation queued while the previous batch was
//! committing goes into the next transaction (at most
//! `tracking.evaluation_batch_size`); `Feedback` is rare and writes alone,
//! under the same lock, so the fold order stays the commit order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::domain::{
    to_micros, OutcomeSample, ParseError, QualityScore, Recommendation, RecommendationStatus,
    Verdict, VerdictUpdate, WorkspaceId,
};
use crate::error::EngineError;
use crate::group_commit::BatchProcess;
use crate::ports::{Store, StoreError, VerdictGroup};
use crate::trust::{OutcomesRecorded, RecomputeAgent, TrustParams, TrustScorer};

use super::{
    CommitBarrier, EvalState, Evaluate, EvaluationSummary, ExplicitVerdict, Feedback,
    RecommendationTracker,
};

impl Handler<Evaluate> for RecommendationTracker {
    type Result = ResponseFuture<Result<EvaluationSummary, EngineError>>;

    fn handle(&mut self, msg: Evaluate, _ctx: &mut Context<Self>) -> Self::Result {
        // The workspace's rows tracked before this evaluation are handed to
        // the writer now; the batch waits for them to commit before reading
        // (not for other workspaces' rows behind them).
        let target = self.workspace_target(msg.workspace);
        let evaluator = self.evaluator.clone();
        // Not the sender's span (a handler runs in the actor's task): the
        // run's fields instead; a run's workflow_id is its run id.
        let span = tracing::info_span!(
            "evaluate",
            workspace = %msg.workspace,
            workflow_id = %msg.workflow_id,
        );
        Box::pin(async move {
            evaluator
                .submit(Pending { msg, target, span })
                .await
                .unwrap_or(Err(EngineError::ShuttingDown))
        })
    }
}

/// An evaluation waiting for its batch: the request, the writer sequence
/// it must see committed, and its span.
pub(super) struct Pending {
    msg: Evaluate,
    target: u64,
    span: tracing::Span,
}

/// The evaluation batch processor (group commit, [`crate::group_commit`]):
/// one flush barrier, one read per workspace, one transaction for every
/// evaluation of the batch, then the outcome samples to the trust scorer in
/// commit order. Each evaluation is answered only after that commit; one
/// that is invalid (unknown workflow, foreign verdict id, nothing pending)
/// gets its own error and does not affect the others.
pub(super) struct Evaluator {
    pub(super) store: Arc<dyn Store>,
    pub(super) params: Arc<TrustParams>,
    pub(super) scorer: Addr<TrustScorer>,
    pub(super) eval: Arc<Mutex<EvalState>>,
    pub(super) barrier: CommitBarrier,
}

/// One evaluation after validation: what it writes and what trust folds.
struct Judged {
    workspace: WorkspaceId,
    updates: Vec<VerdictUpdate>,
    samples: Vec<OutcomeSample>,
    summary: EvaluationSummary,
}

#[async_trait::async_trait]
impl BatchProcess for Evaluator {
    type Item = Pending;
    type Answer = Result<EvaluationSummary, EngineError>;

    async fn process(&mut self, items: Vec<Pending>) -> Vec<Self::Answer> {
        let n = items.len();
        let target = items.iter().map(|p| p.target).max().unwrap_or(0);
        if let Err(e) = self.barrier.wait(target, None).await {
            // Each caller hears of its own workspace's rows only.
            return items
                .iter()
                .map(|p| {
                    let own = self.barrier.by_workspace.get(p.msg.workspace);
                    Err(e.with_pending(own).to_engine())
                })
                .collect();
        }
        let mut state = self.eval.lock().await;
        // One read per workspace of every workflow in the batch.
        let mut wanted: HashMap<WorkspaceId, Vec<String>> = HashMap::new();
        for p in &items {
            let ids = wanted.entry(p.msg.workspace).or_default();
            if !ids.contains(&p.msg.workflow_id) {
                ids.push(p.msg.workflow_id.clone());
            }
        }
        let mut recs: HashMap<(WorkspaceId, String), Vec<Recommendation>> = HashMap::new();
        let mut unreadable: HashMap<WorkspaceId, StoreError> = HashMap::new();
        for (ws, ids) in wanted {
            match self.store.workflows_recommendations(ws, &ids).await {
                Ok(rows) => {
                    for r in rows {
                        recs.entry((ws, r.workflow_id.clone())).or_default().push(r);
                    }
                }
                Err(e) => {
                    unreadable.insert(ws, e);
                }
            }
        }
        // Judge each in order; a workflow judged earlier in the batch has
        // nothing pending left for a second evaluation of it.
        let mut judged: Vec<Result<Judged, EngineError>> = Vec::with_capacity(n);
        let mut taken: HashSet<(WorkspaceId, String)> = HashSet::new();
        for p in &items {
            let key = (p.msg.workspace, p.msg.workflow_id.clone());
            let result = if let Some(e) = unreadable.get(&p.msg.workspace) {
                Err(EngineError::Store(e.clone()))
            } else {
                let rows = recs.get(&key).map_or(&[][..], Vec::as_slice);
                let already = taken.contains(&key);
                p.span
                    .in_scope(|| judge(&p.msg, rows, already, &self.params, &mut state))
            };
            if result.is_ok() {
                taken.insert(key);
            }
            judged.push(result);
        }
        // One group per workspace: one change-feed row and one statement
        // per workspace in the batch.
        let mut groups: Vec<VerdictGroup> = Vec::new();
        for j in judged.iter().filter_map(|j| j.as_ref().ok()) {
            match groups.iter_mut().find(|g| g.workspace == j.workspace) {
                Some(g) => g.updates.extend(j.updates.iter().cloned()),
                None => groups.push(VerdictGroup {
                    workspace: j.workspace,
                    updates: j.updates.clone(),
                }),
            }
        }
        let written: Vec<Result<(), StoreError>> = if groups.is_empty() {
            Vec::new()
        } else {
            let store = Arc::clone(&self.store);
            let commit = crate::trace::store_call("apply_verdicts", async move {
                store.apply_verdict_groups(&groups).await
            });
            match commit.await {
                Ok(()) => judged
                    .iter()
                    .filter(|j| j.is_ok())
                    .map(|_| Ok(()))
                    .collect(),
                Err(StoreError::Unavailable(m)) => judged
                    .iter()
                    .filter(|j| j.is_ok())
                    .map(|_| Err(StoreError::Unavailable(m.clone())))
                    .collect(),
                Err(e) => {
                    // Isolate the evaluation the store refuses: each alone.
                    tracing::debug!(error = %e, "an evaluation batch was refused; writing its evaluations one by one");
                    let mut each = Vec::new();
                    for j in judged.iter().filter_map(|j| j.as_ref().ok()) {
                        each.push(self.store.apply_verdicts(j.workspace, &j.updates).await);
                    }
                    each
                }
            }
        };
        let mut written = written.into_iter();
        let mut answers = Vec::with_capacity(n);
        for j in judged {
            answers.push(match j {
                Err(e) => Err(e),
                Ok(j) => match written.next() {
                    Some(Ok(())) => {
                        metrics::counter!("swarmwise_recommendations_evaluated_total")
                            .increment(j.summary.evaluated);
                        // Sent while holding the lock: the scorer sees
                        // evaluations in commit order.
                        self.scorer.do_send(OutcomesRecorded {
                            workspace: j.workspace,
                            samples: j.samples,
                        });
                        Ok(j.summary)
                    }
                    Some(Err(e)) => Err(EngineError::Store(e)),
                    None => Err(EngineError::ShuttingDown),
                },
            });
        }
        drop(state);
        answers
    }
}

/// Validates one evaluation against its workflow's rows and derives its
/// verdicts (explicit ones override the verdict derived from the overall
/// quality); `already`: an earlier evaluation of the batch took its rows.
fn judge(
    msg: &Evaluate,
    recs: &[Recommendation],
    already: bool,
    params: &TrustParams,
    state: &mut EvalState,
) -> Result<Judged, EngineError> {
    if recs.is_empty() {
        return Err(EngineError::NotFound {
            what: "workflow",
            id: msg.workflow_id.clone(),
        });
    }
    let by_id: HashMap<Uuid, &Recommendation> = recs.iter().map(|r| (r.id, r)).collect();
    for (i, v) in msg.verdicts.iter().enumerate() {
        if !by_id.contains_key(&v.recommendation_id) {
            return Err(ParseError::new(
                format!("verdicts[{i}].recommendation_id"),
                format!(
                    "{} is not a recommendation of workflow {:?}",
                    v.recommendation_id, msg.workflow_id
                ),
            )
            .into());
        }
    }
    let explicit: HashMap<Uuid, &ExplicitVerdict> = msg
        .verdicts
        .iter()
        .map(|v| (v.recommendation_id, v))
        .collect();
    let pending: Vec<&Recommendation> = recs
        .iter()
        .filter(|r| !already && r.status == RecommendationStatus::Pending)
        .collect();
    if pending.is_empty() {
        return Err(EngineError::Conflict(format!(
            "workflow {:?} has no pending recommendations: it was evaluated already; use POST /api/v1/recommendations/{{id}}/feedback to change a verdict",
            msg.workflow_id
        )));
    }
    let at = next_time(state);
    let overall = msg.overall_quality.get();
    let mut updates: Vec<VerdictUpdate> = pending
        .iter()
        .map(|r| {
            let (verdict, quality) = match explicit.get(&r.id) {
                Some(v) => (v.verdict, v.quality.map_or(overall, QualityScore::get)),
                None => (params.derive_verdict(overall), overall),
            };
            VerdictUpdate {
                id: r.id,
                verdict,
                quality,
                feedback: msg.feedback.clone(),
                evaluated_at: at,
            }
        })
        .collect();
    updates.sort_by_key(|u| u.id);
    let mut summary = EvaluationSummary {
        workflow_id: msg.workflow_id.clone(),
        ..EvaluationSummary::default()
    };
    let mut samples = Vec::with_capacity(updates.len());
    for u in &updates {
        match u.verdict {
            Verdict::Approved => summary.approved += 1,
            Verdict::Partial => summary.partial += 1,
            Verdict::Rejected => summary.rejected += 1,
        }
        if let Some(r) = by_id.get(&u.id) {
            samples.push(sample_of(r, u));
        }
    }
    summary.evaluated = updates.len() as u64;
    Ok(Judged {
        workspace: msg.workspace,
        updates,
        samples,
        summary,
    })
}

impl Handler<Feedback> for RecommendationTracker {
    type Result = ResponseFuture<Result<Recommendation, EngineError>>;

    fn handle(&mut self, msg: Feedback, _ctx: &mut Context<Self>) -> Self::Result {
        let target = self.workspace_target(msg.workspace);
        let flushed = self.committed_up_to(target, Some(msg.workspace));
        let store = Arc::clone(&self.store);
        let scorer = self.scorer.clone();
        let eval = Arc::clone(&self.eval);
        let revisions = Arc::clone(&self.revisions);
        Box::pin(async move {
            flushed.await?;
            let mut state = eval.lock().await;
            let Some(mut rec) = store.recommendation(msg.workspace, msg.id).await? else {
                return Err(EngineError::NotFound {
                    what: "recommendation",
                    id: msg.id.to_string(),
                });
            };
            let was_evaluated = rec.evaluated_at;
            let quality = match (msg.quality, rec.outcome_quality) {
                (Some(q), _) => q.get(),
                (None, Some(q)) if Verdict::of_status(rec.status) == Some(msg.verdict) => q,
                _ => msg.verdict.score() * 100.0,
            };
            let at = match was_evaluated {
                Some(at) => at,
                None => next_time(&mut state),
            };
            let update = VerdictUpdate {
                id: rec.id,
                verdict: msg.verdict,
                quality,
                feedback: msg.comment.clone(),
                evaluated_at: at,
            };
            store
                .apply_verdicts(msg.workspace, std::slice::from_ref(&update))
                .await?;
            rec.status = msg.verdict.status();
            rec.outcome_quality = Some(quality);
            rec.evaluated_at = Some(at);
            if msg.comment.is_some() {
                rec.feedback = msg.comment;
            }
            metrics::counter!("swarmwise_feedback_total").increment(1);
            if was_evaluated.is_some() {
                *revisions.entry(msg.workspace).or_insert(0) += 1;
                scorer.do_send(RecomputeAgent {
                    workspace: msg.workspace,
                    agent: rec.agent_id.clone(),
                });
            } else {
                metrics::counter!("swarmwise_recommendations_evaluated_total").increment(1);
                scorer.do_send(OutcomesRecorded {
                    workspace: msg.workspace,
                    samples: vec![sample_of(&rec, &update)],
                });
            }
            drop(state);
            Ok(rec)
        })
    }
}

/// The next evaluation time: now, but strictly after the previous one.
fn next_time(state: &mut EvalState) -> DateTime<Utc> {
    let now = to_micros(Utc::now());
    let at = if now > state.last_at {
        now
    } else {
        state.last_at + TimeDelta::microseconds(1)
    };
    state.last_at = at;
    at
}

fn sample_of(r: &Recommendation, u: &VerdictUpdate) -> OutcomeSample {
    OutcomeSample {
        id: r.id,
        agent_id: r.agent_id.clone(),
        agent_name: r.agent_name.clone(),
        recommendation_type: r.recommendation_type.clone(),
        confidence: r.confidence,
        verdict: u.verdict,
        quality: u.quality,
        latency_ms: r.latency_ms,
        deadline_ms: r.deadline_ms,
        evaluated_at: u.evaluated_at,
    }
}
