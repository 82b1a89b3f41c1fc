//! Evaluation: `Evaluate` and `Feedback` wait for the writer, then record
//! verdicts one at a time with monotonic evaluation times and tell the
//! `TrustScorer` the outcome samples after their commit.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use tracing::Instrument;
use uuid::Uuid;

use crate::domain::{
    to_micros, OutcomeSample, ParseError, QualityScore, Recommendation, RecommendationStatus,
    Verdict, VerdictUpdate,
};
use crate::error::EngineError;
use crate::trust::{OutcomesRecorded, RecomputeAgent};

use super::{
    EvalState, Evaluate, EvaluationSummary, ExplicitVerdict, Feedback, RecommendationTracker,
};

impl Handler<Evaluate> for RecommendationTracker {
    type Result = ResponseFuture<Result<EvaluationSummary, EngineError>>;

    fn handle(&mut self, msg: Evaluate, _ctx: &mut Context<Self>) -> Self::Result {
        let target = self.hand_off();
        let flushed = self.committed_up_to(target);
        let store = Arc::clone(&self.store);
        let params = Arc::clone(&self.params);
        let scorer = self.scorer.clone();
        let eval = Arc::clone(&self.eval);
        // Not the sender's span (a handler runs in the actor's task): the
        // run's fields instead; a run's workflow_id is its run id.
        let span = tracing::info_span!(
            "evaluate",
            workspace = %msg.workspace,
            workflow_id = %msg.workflow_id,
        );
        Box::pin(async move {
            flushed.await?;
            let mut state = eval.lock().await;
            let recs = store
                .workflow_recommendations(msg.workspace, &msg.workflow_id)
                .await?;
            if recs.is_empty() {
                return Err(EngineError::NotFound {
                    what: "workflow",
                    id: msg.workflow_id,
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
                .filter(|r| r.status == RecommendationStatus::Pending)
                .collect();
            if pending.is_empty() {
                return Err(EngineError::Conflict(format!(
                    "workflow {:?} has no pending recommendations: it was evaluated already; use POST /api/v1/recommendations/{{id}}/feedback to change a verdict",
                    msg.workflow_id
                )));
            }
            let at = next_time(&mut state);
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
            crate::trace::store_call(
                "apply_verdicts",
                store.apply_verdicts(msg.workspace, &updates),
            )
            .await?;
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
            metrics::counter!("swarmwise_recommendations_evaluated_total")
                .increment(summary.evaluated);
            // Sent while holding the lock: the scorer sees evaluations in commit order.
            scorer.do_send(OutcomesRecorded {
                workspace: msg.workspace,
                samples,
            });
            drop(state);
            Ok(summary)
        }.instrument(span))
    }
}

impl Handler<Feedback> for RecommendationTracker {
    type Result = ResponseFuture<Result<Recommendation, EngineError>>;

    fn handle(&mut self, msg: Feedback, _ctx: &mut Context<Self>) -> Self::Result {
        let target = self.hand_off();
        let flushed = self.committed_up_to(target);
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
