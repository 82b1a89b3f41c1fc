//! Evaluation: `Evaluate` and `Feedback` wait for the writer, then record
//! verdicts with monotonic evaluation times and tell the `TrustScorer` the
//! outcome samples after their commit. Evaluations are group-committed
//! ([`Evaluator`]): every evaluation queued while the previous batch was
//! committing goes into the next transaction (at most
//! `tracking.evaluation_batch_size`); `Feedback` is rare and writes alone,
//! under the same lock, so the fold order stays the commit order.

use std::borrow::Cow;
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
    /// Verdicts of stored rows.
    updates: Vec<VerdictUpdate>,
    /// Rows never tracked, with their verdicts applied.
    inserts: Vec<Recommendation>,
    samples: Vec<OutcomeSample>,
    summary: EvaluationSummary,
}

impl Judged {
    /// Moves the verdicts of `fresh` rows from `updates` onto the rows
    /// themselves, to be inserted judged.
    fn inserting(mut self, mut fresh: HashMap<Uuid, Recommendation>) -> Self {
        if fresh.is_empty() {
            return self;
        }
        let mut updates = Vec::with_capacity(self.updates.len());
        for u in self.updates {
            match fresh.remove(&u.id) {
                Some(mut r) => {
                    r.status = u.verdict.status();
                    r.outcome_quality = Some(u.quality);
                    r.feedback = u.feedback;
                    r.evaluated_at = Some(u.evaluated_at);
                    self.inserts.push(r);
                }
                None => updates.push(u),
            }
        }
        self.updates = updates;
        self
    }

    /// What it writes, as its own group.
    fn group(&self) -> VerdictGroup {
        VerdictGroup {
            workspace: self.workspace,
            updates: self.updates.clone(),
            inserts: self.inserts.clone(),
        }
    }
}

/// The rows an evaluation is judged over, and its never-tracked ones by id.
type Admitted<'a> = (Cow<'a, [Recommendation]>, HashMap<Uuid, Recommendation>);

/// Checks an evaluation's never-tracked rows (each pending, of its
/// workspace and workflow) and returns the rows to judge it over: the
/// workflow's `stored` rows plus copies of those of `rows` the store does
/// not hold (a stored row keeps its stored copy), with the latter by id.
fn admit_fresh<'a>(
    msg: &Evaluate,
    rows: Vec<Recommendation>,
    stored: &'a [Recommendation],
) -> Result<Admitted<'a>, EngineError> {
    if rows.is_empty() {
        return Ok((Cow::Borrowed(stored), HashMap::new()));
    }
    let known: HashSet<Uuid> = stored.iter().map(|r| r.id).collect();
    let mut all = stored.to_vec();
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        if r.workspace_id != msg.workspace
            || r.workflow_id != msg.workflow_id
            || r.status != RecommendationStatus::Pending
        {
            return Err(EngineError::Conflict(format!(
                "recommendation {} passed with the evaluation of workflow {:?} is not a pending recommendation of it",
                r.id, msg.workflow_id
            )));
        }
        if known.contains(&r.id) || out.contains_key(&r.id) {
            continue;
        }
        all.push(r.clone());
        out.insert(r.id, r);
    }
    Ok((Cow::Owned(all), out))
}

#[async_trait::async_trait]
impl BatchProcess for Evaluator {
    type Item = Pending;
    type Answer = Result<EvaluationSummary, EngineError>;

    async fn process(&mut self, mut items: Vec<Pending>) -> Vec<Self::Answer> {
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
        // nothing pending left for a second evaluation of it. An
        // evaluation's never-tracked rows join only its own judging: another
        // evaluation of the same workflow in the batch never sees them.
        let mut judged: Vec<Result<Judged, EngineError>> = Vec::with_capacity(n);
        let mut taken: HashSet<(WorkspaceId, String)> = HashSet::new();
        for p in &mut items {
            let key = (p.msg.workspace, p.msg.workflow_id.clone());
            let own = std::mem::take(&mut p.msg.fresh);
            let result = if let Some(e) = unreadable.get(&p.msg.workspace) {
                Err(EngineError::Store(e.clone()))
            } else {
                let stored = recs.get(&key).map_or(&[][..], Vec::as_slice);
                admit_fresh(&p.msg, own, stored).and_then(|(rows, fresh)| {
                    let already = taken.contains(&key);
                    p.span.in_scope(|| {
                        judge(&p.msg, &rows, already, &self.params, &mut state)
                            .map(|j| j.inserting(fresh))
                    })
                })
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
                Some(g) => {
                    g.updates.extend(j.updates.iter().cloned());
                    g.inserts.extend(j.inserts.iter().cloned());
                }
                None => groups.push(j.group()),
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
                        each.push(self.store.apply_verdict_groups(&[j.group()]).await);
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
                        if !j.inserts.is_empty() {
                            let rows = j.inserts.len() as u64;
                            metrics::counter!("swarmwise_recommendations_tracked_total")
                                .increment(rows);
                            metrics::counter!("swarmwise_recommendations_persisted_total")
                                .increment(rows);
                        }
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
        inserts: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AgentId;

    fn rec(ws: WorkspaceId, workflow: &str) -> Recommendation {
        Recommendation {
            id: Uuid::now_v7(),
            workspace_id: ws,
            agent_id: AgentId::parse("agent_id", "a1").unwrap_or_else(|e| panic!("{e}")),
            agent_name: "A1".into(),
            correlation_id: "c".into(),
            workflow_id: workflow.into(),
            recommendation_type: "t".into(),
            content: serde_json::Value::Null,
            confidence: 0.5,
            reasoning: None,
            latency_ms: None,
            deadline_ms: None,
            status: RecommendationStatus::Pending,
            outcome_quality: None,
            feedback: None,
            created_at: to_micros(Utc::now()),
            evaluated_at: None,
            usage: Default::default(),
        }
    }

    fn evaluate(ws: WorkspaceId, fresh: Vec<Recommendation>) -> Evaluate {
        Evaluate {
            workspace: ws,
            workflow_id: "wf".into(),
            overall_quality: QualityScore::parse("q", 90.0).unwrap_or_else(|e| panic!("{e}")),
            verdicts: Vec::new(),
            feedback: Some("fine".into()),
            fresh,
        }
    }

    #[test]
    fn fresh_rows_of_another_workspace_workflow_or_status_are_refused() {
        let ws = WorkspaceId(Uuid::now_v7());
        let other = WorkspaceId(Uuid::now_v7());
        let mut judged = rec(ws, "wf");
        judged.status = RecommendationStatus::Approved;
        for bad in [rec(other, "wf"), rec(ws, "another"), judged] {
            let msg = evaluate(ws, Vec::new());
            let got = admit_fresh(&msg, vec![rec(ws, "wf"), bad], &[]);
            assert!(matches!(got, Err(EngineError::Conflict(_))), "{got:?}");
        }
    }

    #[test]
    fn fresh_rows_are_judged_with_the_stored_ones_and_inserted_judged() {
        let ws = WorkspaceId(Uuid::now_v7());
        let stored_row = rec(ws, "wf");
        let fresh_row = rec(ws, "wf");
        let stored = vec![stored_row.clone()];
        // A fresh copy of a stored row keeps the stored one.
        let msg = evaluate(ws, Vec::new());
        let (rows, fresh) = admit_fresh(&msg, vec![fresh_row.clone(), stored_row.clone()], &stored)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((rows.len(), fresh.len()), (2, 1));
        // Another evaluation of the same workflow in the batch, without
        // rows of its own, is judged over the stored rows only.
        let (theirs, none) =
            admit_fresh(&msg, Vec::new(), &stored).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((theirs.len(), none.len()), (1, 0));
        let mut state = EvalState {
            last_at: DateTime::<Utc>::MIN_UTC,
        };
        let j = judge(&msg, &rows, false, &TrustParams::default(), &mut state)
            .unwrap_or_else(|e| panic!("{e}"))
            .inserting(fresh);
        assert_eq!(j.summary.evaluated, 2);
        assert_eq!(j.samples.len(), 2);
        let ids: Vec<Uuid> = j.updates.iter().map(|u| u.id).collect();
        assert_eq!(ids, [stored_row.id], "only the stored row is updated");
        let [inserted] = j.inserts.as_slice() else {
            panic!("one insert, got {:?}", j.inserts);
        };
        assert_eq!(inserted.id, fresh_row.id);
        assert_eq!(inserted.status, RecommendationStatus::Approved);
        assert_eq!(inserted.outcome_quality, Some(90.0));
        assert_eq!(inserted.feedback.as_deref(), Some("fine"));
        assert!(inserted.evaluated_at.is_some());
        let group = j.group();
        assert_eq!((group.updates.len(), group.inserts.len()), (1, 1));
    }
}
