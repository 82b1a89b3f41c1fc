//! Durable runs: what a run stores as it progresses ([`Progress`]), the
//! sweeper every node runs ([`Workflows::sweep`]: renew this node's leases,
//! take over runs whose lease expired, apply approval deadlines), and the
//! approval decision ([`Workflows::decide`]).
//!
//! Invariants:
//! - A run is executed by the node holding its lease (`owner_node`,
//!   `lease_until`); every write of that node is fenced by the token it
//!   claimed with, so after a takeover the old node's writes are refused and
//!   it stops at its next stage boundary.
//! - A completed stage is stored before its answers are tracked and is
//!   never run again: a resumed run continues after the last stored stage.
//! - An approval decision is a conditional update on (`awaiting_approval`,
//!   fencing token): of two concurrent decisions, on any nodes, exactly one
//!   wins; the other gets `Conflict`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::judging::assemble;
use super::{RunReport, StageReport, Workflows};
use crate::domain::{to_micros, Verdict, WorkspaceId};
use crate::error::EngineError;
use crate::events::Event;
use crate::tracker::{EvaluationSummary, Feedback};
use crate::workflow::definition::{ApprovalAction, OnRestart};
use crate::workflow::{RunLease, RunStatus, WorkflowRun};

/// What a run stores as it progresses (`workflow_runs.progress`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// One record per completed stage, in order.
    #[serde(default)]
    pub stages: Vec<StageReport>,
    /// The outcome was evaluated (a resumed run does not evaluate again).
    #[serde(default)]
    pub evaluated: bool,
    /// What the evaluation counted.
    #[serde(default)]
    pub evaluation: Option<EvaluationSummary>,
}

impl Progress {
    /// The run's stored progress (empty before its first stage completed).
    pub fn of(run: &WorkflowRun) -> Result<Self, EngineError> {
        match &run.progress {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                EngineError::Conflict(format!(
                    "the stored progress of run {} is unreadable ({e}); the run cannot resume",
                    run.id
                ))
            }),
        }
    }
}

/// The approval step of a stage with `approval = true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// `pending`, `approved` or `rejected`.
    pub decision: String,
    /// When the default action applies.
    pub deadline: DateTime<Utc>,
    /// The person's comment (also the feedback on the stage's answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `api`, `dashboard`, or `deadline` (the default action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
}

impl ApprovalRecord {
    /// Waiting for a decision until `deadline`.
    pub fn pending(deadline: DateTime<Utc>) -> Self {
        Self {
            decision: "pending".into(),
            deadline,
            comment: None,
            decided_by: None,
            decided_at: None,
        }
    }

    /// No decision yet.
    pub fn is_pending(&self) -> bool {
        self.decision == "pending"
    }
}

/// An approval decision on a paused run.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Approve (continue with the next stage) or reject (end `rejected`).
    pub action: ApprovalAction,
    /// Becomes the feedback comment on the stage's recommendations.
    pub comment: Option<String>,
    /// Who decided: `api`, `dashboard`, `deadline`.
    pub by: &'static str,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Leases of this node's runs extended.
    pub renewed: u64,
    /// Runs of dead nodes claimed and resumed here.
    pub resumed: usize,
    /// Runs claimed and failed (`on_restart = "fail"`).
    pub failed: usize,
    /// Approval deadlines whose default action was applied.
    pub deadlines: usize,
}

impl Workflows {
    /// One sweep of this node: renews the leases of the runs it executes,
    /// claims runs whose lease expired (with `own`, also every run this node
    /// id leased before this process started: its leftovers at start) and
    /// resumes or fails each per its `on_restart`, then applies the default
    /// action of due approval deadlines. With `claim`
    /// false (the node is stopping) it only renews. After
    /// [`Workflows::hand_over_in_flight`] it does nothing. Errors are
    /// logged; the next sweep tries again.
    pub async fn sweep(&self, own: bool, claim: bool) -> SweepReport {
        let mut report = SweepReport::default();
        if self.handed_over.load(std::sync::atomic::Ordering::Acquire) {
            return report;
        }
        let now = to_micros(Utc::now());
        if !self.in_flight.is_empty() {
            match self
                .store
                .renew_leases(self.node.as_str(), self.lease_until(), &self.executing())
                .await
            {
                Ok(n) => report.renewed = n,
                Err(e) => {
                    tracing::warn!(node = %self.node, error = %e, "could not renew this node's run leases; if the database stays unreachable past workflows.lease_secs another node takes them over")
                }
            }
        }
        if !claim {
            return report;
        }
        let claimed = match self
            .store
            .claim_runs(
                self.node.as_str(),
                now,
                self.lease_until(),
                own.then_some(self.first_lease_end),
                self.config.sweep_batch,
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(node = %self.node, error = %e, "could not look for runs to take over; retrying at the next sweep");
                Vec::new()
            }
        };
        for run in claimed {
            let previous = "its node stopped before it finished (its lease expired)";
            let fail = self
                .defs
                .get(&run.workflow)
                .is_some_and(|d| d.on_restart == OnRestart::Fail);
            if fail {
                let mut done = run;
                done.status = RunStatus::Failed;
                done.error = Some(format!(
                    "{previous}; its workflow says on_restart = \"fail\", so it was not resumed; start it again"
                ));
                done.finished_at = Some(to_micros(Utc::now()));
                match self.store.finish_run(&done).await {
                    Ok(true) => {
                        report.failed += 1;
                        metrics::counter!("swarmwise_workflow_runs_total", "status" => "failed")
                            .increment(1);
                        self.events.publish(Event::WorkflowProgress {
                            workspace_id: done.workspace_id,
                            run_id: done.id.to_string(),
                            stage: "finished".into(),
                            status: "failed".into(),
                        });
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(run = %done.id, error = %e, "could not fail a run taken over; it is claimed again after its lease")
                    }
                }
                continue;
            }
            report.resumed += 1;
            metrics::counter!("swarmwise_workflow_runs_taken_over_total").increment(1);
            tracing::info!(run = %run.id, workspace = %run.workspace_id, node = %self.node, "took over a run whose node stopped; resuming after its last stored stage");
            let wf = self.clone();
            actix::spawn(async move {
                let id = run.id;
                if let Err(e) = wf.execute(run).await {
                    tracing::warn!(run = %id, error = %e, "resumed workflow run failed");
                }
            });
        }
        match self.store.due_approvals(now, self.config.sweep_batch).await {
            Ok(due) => {
                for (ws, id) in due {
                    match self.apply_deadline(ws, id).await {
                        Ok(()) => report.deadlines += 1,
                        // Another node decided first.
                        Err(EngineError::Conflict(_)) => {}
                        Err(e) => {
                            tracing::warn!(run = %id, error = %e, "could not apply an approval deadline; retrying at the next sweep")
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not look for due approval deadlines; retrying at the next sweep")
            }
        }
        report
    }

    /// Applies the default action of a run whose approval deadline passed.
    async fn apply_deadline(&self, ws: WorkspaceId, id: Uuid) -> Result<(), EngineError> {
        let Some(run) = self.store.run(ws, id).await? else {
            return Ok(());
        };
        let progress = Progress::of(&run)?;
        let stage = progress
            .stages
            .len()
            .checked_sub(1)
            .and_then(|i| self.defs.get(&run.workflow).and_then(|d| d.stages.get(i)));
        let action = stage
            .and_then(|s| s.approval_default_action)
            .unwrap_or(self.config.approval_default_action);
        let comment = format!(
            "no decision before the approval deadline; default action {} applied (workflows.approval_default_action or the stage's approval_default_action)",
            action.as_str()
        );
        self.decide(
            ws,
            id,
            Decision {
                action,
                comment: Some(comment),
                by: "deadline",
            },
        )
        .await
        .map(|_| ())
    }

    /// Approves or rejects a run `awaiting_approval` (on any node: the run
    /// is read from the store). Approve: the run is leased to this node and
    /// continues with the next stage in the background; reject: it ends
    /// `rejected`. The stage's tracked recommendations get the decision as
    /// a person's feedback (approved or rejected, with the comment), so
    /// trust sees it. Returns the run as stored by the decision.
    ///
    /// Errors: `NotFound` (no such run in `ws`), `Conflict` (not awaiting
    /// approval, or another decision won a race).
    pub async fn decide(
        &self,
        ws: WorkspaceId,
        id: Uuid,
        decision: Decision,
    ) -> Result<WorkflowRun, EngineError> {
        let Some(run) = self.store.run(ws, id).await? else {
            return Err(EngineError::NotFound {
                what: "workflow run",
                id: id.to_string(),
            });
        };
        if run.status != RunStatus::AwaitingApproval {
            return Err(not_awaiting(&run));
        }
        // A paused run keeps its last owner and fencing token (no lease end).
        let expected = run.lease.as_ref().map_or(0, |l| l.fencing);
        let mut progress = Progress::of(&run)?;
        let now = to_micros(Utc::now());
        let Some(stage) = progress.stages.last_mut() else {
            return Err(not_awaiting(&run));
        };
        let Some(approval) = stage.approval.as_mut() else {
            return Err(not_awaiting(&run));
        };
        let approve = decision.action == ApprovalAction::Approve;
        approval.decision = if approve { "approved" } else { "rejected" }.into();
        approval.comment.clone_from(&decision.comment);
        approval.decided_by = Some(decision.by.into());
        approval.decided_at = Some(now);
        let stage_name = stage.name.clone();
        let recs: Vec<Uuid> = stage
            .agents
            .iter()
            .filter(|a| !a.deferred)
            .filter_map(|a| a.recommendation_id)
            .collect();
        let mut next = run.clone();
        next.progress = Some(serde_json::to_value(&progress).map_err(|e| {
            EngineError::Conflict(format!("could not serialise the run's progress: {e}"))
        })?);
        next.approval_deadline = None;
        if approve {
            next.status = RunStatus::Running;
            next.lease = Some(RunLease {
                owner: self.node.to_string(),
                fencing: expected + 1,
                until: self.lease_until(),
            });
        } else {
            next.status = RunStatus::Rejected;
            next.lease = None;
            next.finished_at = Some(now);
            let why = decision
                .comment
                .as_deref()
                .map_or_else(String::new, |c| format!(": {c}"));
            next.error = Some(format!("rejected at stage {stage_name:?}{why}"));
            let def = self.defs.get(&run.workflow);
            let report = RunReport {
                run_id: run.id,
                workflow: run.workflow.clone(),
                status: RunStatus::Rejected,
                quality: None,
                result: def.map_or(Value::Null, |d| assemble(&progress.stages, d, None)),
                stages: progress.stages.clone(),
                evaluation: None,
                error: next.error.clone(),
            };
            next.result = serde_json::to_value(&report).ok();
        }
        if !self.store.decide_run(&next, expected).await? {
            return Err(EngineError::Conflict(format!(
                "workflow run {id} was decided by another request at the same time; read it with GET /api/v1/workflows/runs/{id}"
            )));
        }
        let label = if approve { "approved" } else { "rejected" };
        metrics::counter!("swarmwise_workflow_approvals_total", "decision" => label, "by" => decision.by)
            .increment(1);
        tracing::info!(run = %id, workspace = %ws, stage = %stage_name, decision = label, by = decision.by, "approval decided");
        self.events.publish(Event::WorkflowProgress {
            workspace_id: ws,
            run_id: id.to_string(),
            stage: stage_name.clone(),
            status: label.into(),
        });
        if self.engine.learning_enabled() && !recs.is_empty() {
            let verdict = if approve {
                Verdict::Approved
            } else {
                Verdict::Rejected
            };
            let comment = decision.comment.clone().or_else(|| {
                Some(format!(
                    "{label} at the approval step of stage {stage_name:?} ({})",
                    decision.by
                ))
            });
            let mut n = 0;
            for rec in recs {
                match self
                    .engine
                    .feedback(Feedback {
                        workspace: ws,
                        id: rec,
                        verdict,
                        quality: None,
                        comment: comment.clone(),
                    })
                    .await
                {
                    Ok(_) => n += 1,
                    Err(e) => {
                        tracing::warn!(run = %id, recommendation = %rec, error = %e, "could not record the approval as feedback on a recommendation")
                    }
                }
            }
            self.cycles.outcomes_evaluated(ws, n);
        }
        if approve {
            let wf = self.clone();
            let resumed = next.clone();
            actix::spawn(async move {
                if let Err(e) = wf.execute(resumed).await {
                    tracing::warn!(run = %id, error = %e, "approved workflow run failed");
                }
            });
        } else {
            metrics::counter!("swarmwise_workflow_runs_total", "status" => "rejected").increment(1);
        }
        Ok(next)
    }
}

fn not_awaiting(run: &WorkflowRun) -> EngineError {
    EngineError::Conflict(format!(
        "workflow run {} is {}, not awaiting_approval: only a run paused at a stage with approval = true can be approved or rejected",
        run.id,
        run.status.as_str()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::barrier::{AgentOutcome, AgentResult, Completion};
    use crate::domain::{AgentId, FailureKind, Priority};
    use crate::workflow::runner::StageAgent;

    #[test]
    fn a_stage_record_round_trips_through_its_stored_json() {
        let ok = AgentOutcome::Ok {
            answer: crate::agent::backend::AgentAnswer {
                content: serde_json::json!({"decision": "go", "quality": 80}),
                confidence: 0.7,
                reasoning: Some("why".into()),
                ground_truth: None,
                usage: Default::default(),
            },
            latency_ms: 12,
        };
        let err = AgentOutcome::Error {
            kind: FailureKind::Error,
            message: "boom".into(),
            latency_ms: 3,
        };
        let agent = |id: &str, outcome| AgentResult {
            agent_id: AgentId::parse("agent", id).unwrap(),
            priority: Some(Priority::High),
            outcome,
        };
        let progress = Progress {
            stages: vec![StageReport {
                name: "review".into(),
                recommendation_type: "review".into(),
                completed_by: Completion::Deadline,
                agents: vec![
                    StageAgent {
                        result: agent("a", ok),
                        recommendation_id: Some(Uuid::now_v7()),
                        attempts: 2,
                        ground_truth: Some(true),
                        deferred: true,
                    },
                    StageAgent {
                        result: agent("b", err),
                        recommendation_id: None,
                        attempts: 4,
                        ground_truth: None,
                        deferred: false,
                    },
                    StageAgent {
                        result: agent(
                            "c",
                            AgentOutcome::Skipped {
                                reason: "disabled".into(),
                            },
                        ),
                        recommendation_id: None,
                        attempts: 0,
                        ground_truth: None,
                        deferred: false,
                    },
                ],
                aggregate: None,
                approval: Some(ApprovalRecord::pending(to_micros(Utc::now()))),
                completed_at: Some(to_micros(Utc::now())),
            }],
            evaluated: true,
            evaluation: None,
        };
        let stored = serde_json::to_value(&progress).unwrap();
        let back: Progress = serde_json::from_value(stored).unwrap();
        assert_eq!(back, progress);
        assert!(back.stages[0].approval.as_ref().unwrap().is_pending());
    }
}
