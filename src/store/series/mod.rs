//! The read-model aggregate the dashboards and the time-series endpoints
//! need: an agent's recommendations bucketed by hour or day, its
//! calibration bins (the reliability diagram), and the workspace's recent
//! workflow runs. `SeriesStore` is a supertrait of [`super::AdminStore`];
//! the dialects live beside each other in `postgres.rs` (inside a
//! transaction scoped to the workspace, so row-level security applies) and
//! `sqlite.rs` (every query names the workspace).
//!
//! Invariants: every method reads one workspace's rows only; buckets are
//! aligned to UTC hours or days and returned newest first, so the start of
//! the last bucket of a page is the cursor of the next.

mod postgres;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use swarmwise_actors::domain::{AgentId, Priority, WorkspaceId};
use swarmwise_actors::ports::StoreError;
use swarmwise_actors::workflow::RunStatus;
use uuid::Uuid;

/// Width of a time-series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// One UTC hour.
    Hour,
    /// One UTC day.
    Day,
}

impl Bucket {
    /// The bucket's width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Bucket::Hour => 3600,
            Bucket::Day => 86_400,
        }
    }

    /// `hour` or `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    /// From `hour` or `day`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }
}

/// One bucket of an agent's recommendations (by creation time).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    /// Start of the bucket (UTC, aligned to the hour or day).
    pub bucket_start: DateTime<Utc>,
    /// Recommendations tracked in the bucket.
    pub recommendations: u64,
    /// Of them, approved.
    pub approved: u64,
    /// Of them, partial.
    pub partial: u64,
    /// Of them, rejected.
    pub rejected: u64,
    /// Approved / (approved + partial + rejected); null when none was evaluated.
    pub approval_rate: Option<f64>,
    /// Mean outcome quality (0–100) of the evaluated ones; null when none.
    pub avg_quality: Option<f64>,
    /// Mean stated confidence (0–1).
    pub avg_confidence: f64,
}

/// One bin of the reliability diagram: evaluated recommendations whose
/// confidence fell in `[bin/10, (bin+1)/10)` (the last bin includes 1.0).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CalibrationBin {
    /// 0–9.
    pub bin: u8,
    /// Evaluated recommendations in the bin.
    pub count: u64,
    /// Their mean stated confidence.
    pub mean_confidence: f64,
    /// Their observed approval rate (partial counts half, as in trust accuracy).
    pub observed_rate: f64,
}

/// A workflow run as listed (without input and result).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    /// Run id.
    pub id: Uuid,
    /// Definition name.
    pub workflow: String,
    /// Status.
    pub status: RunStatus,
    /// Requested priority.
    pub priority: Priority,
    /// Why it failed.
    pub error: Option<String>,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Read models of the dashboards.
#[async_trait]
pub trait SeriesStore: Send + Sync {
    /// An agent's buckets, newest first, starting before `before` (a bucket
    /// start from the previous page), at most `limit`.
    async fn agent_series(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        bucket: Bucket,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<SeriesPoint>, StoreError>;
    /// An agent's reliability diagram over its evaluated recommendations;
    /// only non-empty bins, by bin.
    async fn calibration_bins(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
    ) -> Result<Vec<CalibrationBin>, StoreError>;
    /// Runs newest first (by id, UUIDv7), starting after cursor `before`.
    async fn recent_runs(
        &self,
        ws: WorkspaceId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<RunSummary>, StoreError>;
}

fn run_status(raw: &str) -> anyhow::Result<RunStatus> {
    RunStatus::parse(raw).ok_or_else(|| anyhow::anyhow!("bad run status {raw}"))
}

/// (bin, count, mean confidence, observed rate) rows → bins.
fn bins(rows: Vec<(i64, i64, f64, f64)>) -> Vec<CalibrationBin> {
    rows.into_iter()
        .map(
            |(bin, count, mean_confidence, observed_rate)| CalibrationBin {
                bin: bin.clamp(0, 9) as u8,
                count: count.max(0) as u64,
                mean_confidence,
                observed_rate,
            },
        )
        .collect()
}
