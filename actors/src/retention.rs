//! Retention of recommendations (issue 14, item 6): settled (not
//! `pending`) recommendations created more than `max_age_days` ago are
//! removed, or with `mode = "archive"` moved to the archive table, in
//! batches of `batch_size`, one workspace after another. Off by default.
//!
//! Trust and patterns do not change: trust folds every evaluated outcome
//! (`outcome_samples`) and the meta-learner mines them all
//! (`outcome_records`), so before a row goes, what those two read of it
//! (agent, type, confidence, verdict, quality, latency, deadline, workflow,
//! decision, evaluation time: no content, reasoning, correlation id or
//! feedback) is written to `outcome_digests` in the same transaction, and
//! both reads take the union. A per-outcome digest rather than a folded
//! aggregate, because pattern mining groups outcomes by workflow and splits
//! them by time (hold-out, confirmation on newer data), which no fixed sum
//! preserves; and trust then still follows changes of `[trust]` parameters.
//!
//! Related rows: dead letters older than the cutoff are purged too (they
//! are not folded anywhere); trust history points (the time series behind
//! the trust charts, one point per changed agent per save, at most every
//! `trust.persist_interval_ms`) recorded more than
//! `trust_history_max_age_days` ago go in batches too (no trust state is
//! read from them: the cards are rebuilt from the outcomes); agent failures
//! stay (reliability folds them, and they are small); workflow runs,
//! patterns, rules and cycle reports are untouched. Who runs it: the
//! scheduler's leader (the `retention` job, claimed per occurrence) and
//! `swarmwise retention`. No tenant can trigger or observe it: there is no
//! workspace endpoint.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ParseError, WorkspaceId};
use crate::ports::{Store, StoreError};

/// What happens to a removed recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionMode {
    /// Deleted (its outcome digest stays).
    Delete,
    /// Moved to `agent_recommendations_archive` (and its digest written).
    Archive,
}

impl RetentionMode {
    /// `delete` or `archive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Archive => "archive",
        }
    }
}

/// Config section `[retention]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Run the scheduled job (the CLI runs regardless).
    pub enabled: bool,
    /// Settled recommendations created more than this many days ago go.
    pub max_age_days: u32,
    /// When the job runs (six-field cron, UTC).
    pub schedule: String,
    /// `delete` or `archive`.
    pub mode: RetentionMode,
    /// Rows per transaction.
    pub batch_size: u32,
    /// Trust history points recorded more than this many days ago go.
    pub trust_history_max_age_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_age_days: 90,
            schedule: "0 30 3 * * *".into(),
            mode: RetentionMode::Delete,
            batch_size: 1000,
            trust_history_max_age_days: 90,
        }
    }
}

/// Largest accepted age, in days (a century; far larger ages would overflow
/// the cutoff's arithmetic).
pub const MAX_AGE_DAYS: u32 = 36_500;

/// Largest accepted `batch_size` (a transaction of this many rows is still
/// short on both backends).
pub const MAX_BATCH_SIZE: u32 = 100_000;

impl RetentionConfig {
    /// Checks the values; the error names the key (without `retention.`).
    pub fn validate(&self) -> Result<(), ParseError> {
        if self.max_age_days == 0 || self.max_age_days > MAX_AGE_DAYS {
            return Err(ParseError::new(
                "max_age_days",
                format!("must be 1 to {MAX_AGE_DAYS} (days); to keep everything, set retention.enabled = false"),
            ));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(ParseError::new(
                "batch_size",
                format!("must be 1 to {MAX_BATCH_SIZE}; e.g. 1000"),
            ));
        }
        if self.trust_history_max_age_days == 0 || self.trust_history_max_age_days > MAX_AGE_DAYS {
            return Err(ParseError::new(
                "trust_history_max_age_days",
                format!("must be 1 to {MAX_AGE_DAYS} (days); to keep the history longer, raise it (at most {MAX_AGE_DAYS}: a century)"),
            ));
        }
        crate::scheduler::parse_cron("schedule", &self.schedule)?;
        Ok(())
    }

    /// The recording time before which trust history points go, seen from
    /// `now`.
    pub fn trust_history_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - TimeDelta::days(i64::from(self.trust_history_max_age_days))
    }

    /// The creation time before which rows go, seen from `now`.
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - TimeDelta::days(i64::from(self.max_age_days))
    }
}

/// What retention did (or, in a dry run, would do) in one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceRetention {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Recommendations removed (archived in archive mode).
    pub recommendations: u64,
    /// Dead letters purged.
    pub dead_letters: u64,
    /// Trust history points removed.
    pub trust_history: u64,
}

/// What a retention run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Rows created before this went.
    pub cutoff: DateTime<Utc>,
    /// `delete` or `archive`.
    pub mode: RetentionMode,
    /// Counted only, nothing changed.
    pub dry_run: bool,
    /// Per workspace with anything to remove.
    pub workspaces: Vec<WorkspaceRetention>,
    /// Sum of recommendations over workspaces.
    pub recommendations: u64,
    /// Sum of dead letters over workspaces.
    pub dead_letters: u64,
    /// Trust history points recorded before this went.
    pub trust_history_cutoff: DateTime<Utc>,
    /// Sum of trust history points over workspaces.
    pub trust_history: u64,
}

/// Progress of a run: called after every batch with the workspace, what
/// the rows are (`recommendations` or `trust history points`), the rows
/// done in it so far and the rows it had to do at its start.
pub type Progress<'a> = &'a (dyn Fn(WorkspaceId, &'static str, u64, u64) + Send + Sync);

/// Removes up to `todo` rows in batches with `batch` (rows it removed, 0:
/// nothing left), counting and reporting each batch.
async fn in_batches<F, Fut>(
    ws: WorkspaceId,
    kind: &'static str,
    metric: &'static str,
    mode: &'static str,
    todo: u64,
    progress: Progress<'_>,
    mut batch: F,
) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut done = 0u64;
    while done < todo {
        let n = batch().await?;
        if n == 0 {
            break;
        }
        done += n;
        metrics::counter!("swarmwise_retention_removed_rows_total", "kind" => metric).increment(n);
        tracing::info!(workspace = %ws, done, todo, kind, mode, "retention: batch committed");
        progress(ws, kind, done, todo);
    }
    Ok(done)
}

/// Runs retention over every workspace with `now` as the present:
/// counts only when `dry_run`, else removes in batches (each batch its own
/// transaction; a failure stops the run, what was committed stays, and the
/// next run goes on from there). Logs progress per workspace and counts
/// `swarmwise_retention_removed_rows_total{kind}`.
pub async fn run(
    store: &dyn Store,
    config: &RetentionConfig,
    decision_key: &str,
    now: DateTime<Utc>,
    dry_run: bool,
    progress: Progress<'_>,
) -> Result<RetentionReport, StoreError> {
    let cutoff = config.cutoff(now);
    let mut report = RetentionReport {
        cutoff,
        mode: config.mode,
        dry_run,
        workspaces: Vec::new(),
        recommendations: 0,
        dead_letters: 0,
        trust_history_cutoff: config.trust_history_cutoff(now),
        trust_history: 0,
    };
    let archive = config.mode == RetentionMode::Archive;
    for ws in store.workspace_ids().await? {
        let todo = store.count_retirable(ws, cutoff).await?;
        let done = if dry_run {
            todo
        } else {
            in_batches(
                ws,
                "recommendations",
                "recommendations",
                config.mode.as_str(),
                todo,
                progress,
                || {
                    store.retire_recommendations(
                        ws,
                        cutoff,
                        decision_key,
                        archive,
                        config.batch_size,
                        now,
                    )
                },
            )
            .await?
        };
        let history_cutoff = report.trust_history_cutoff;
        let history_todo = store.count_trust_history(ws, history_cutoff).await?;
        let history = if dry_run {
            history_todo
        } else {
            in_batches(
                ws,
                "trust history points",
                "trust_history",
                "delete",
                history_todo,
                progress,
                || store.purge_trust_history(ws, history_cutoff, config.batch_size),
            )
            .await?
        };
        let dead = store.purge_dead_letters(ws, cutoff, !dry_run).await?;
        if !dry_run && dead > 0 {
            metrics::counter!("swarmwise_retention_removed_rows_total", "kind" => "dead_letters")
                .increment(dead);
        }
        if done + dead + history > 0 {
            if dry_run {
                progress(ws, "recommendations", done, todo);
                progress(ws, "trust history points", history, history_todo);
            }
            tracing::info!(workspace = %ws, recommendations = done, dead_letters = dead, trust_history = history, dry_run, "retention: workspace done");
            report.recommendations += done;
            report.dead_letters += dead;
            report.trust_history += history;
            report.workspaces.push(WorkspaceRetention {
                workspace_id: ws,
                recommendations: done,
                dead_letters: dead,
                trust_history: history,
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_off_and_valid_and_bad_values_name_their_key() {
        let c = RetentionConfig::default();
        assert!(!c.enabled);
        c.validate().unwrap();
        let bad = |f: fn(&mut RetentionConfig)| {
            let mut c = RetentionConfig::default();
            f(&mut c);
            c.validate().unwrap_err().field
        };
        assert_eq!(bad(|c| c.max_age_days = 0), "max_age_days");
        assert_eq!(bad(|c| c.batch_size = 0), "batch_size");
        assert_eq!(bad(|c| c.batch_size = MAX_BATCH_SIZE + 1), "batch_size");
        assert_eq!(bad(|c| c.schedule = "daily".into()), "schedule");
        assert_eq!(
            bad(|c| c.trust_history_max_age_days = 0),
            "trust_history_max_age_days"
        );
        assert_eq!(
            bad(|c| c.trust_history_max_age_days = MAX_AGE_DAYS + 1),
            "trust_history_max_age_days"
        );
        assert_eq!(bad(|c| c.max_age_days = u32::MAX), "max_age_days");
    }
}
