//! The change feed (`change_feed`): one row per committed change that other
//! processes sharing the database must fold into what they keep in memory
//! (trust snapshots, cached patterns, keys and agent names, running agent
//! actors, admission state). The row is written by the store call that makes
//! the change, in the same transaction (see `append` in `postgres.rs` and
//! `sqlite.rs`), so a change is in the feed exactly when it is committed;
//! `crate::sync` tails it on every node.
//!
//! Positions: SQLite serialises writers, so `seq` alone orders the feed. On
//! PostgreSQL rows commit out of `seq` order (a `bigserial` is drawn at
//! insert time, long before a slow transaction commits), so the position is
//! `(txid, seq)` with `txid` the writing transaction, and a read returns only
//! rows whose transaction is older than every transaction still running
//! (`pg_snapshot_xmin`): every row that may still commit has a larger txid
//! than any row already returned, so none is ever skipped.
//!
//! Rows name their workspace; only the sync task reads them (across
//! workspaces, through the SECURITY DEFINER functions of the migration on
//! PostgreSQL), and the API never exposes them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::ports::StoreError;

mod postgres;
mod sqlite;

pub(crate) use postgres::append as pg_append;
pub(crate) use sqlite::append as sqlite_append;

/// What a feed row announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Evaluations committed: the named agents' trust changed.
    Outcomes,
    /// An already evaluated verdict was overridden (feedback): trust of the
    /// named agents changed, and outcome caches keyed on verdict revisions
    /// are stale.
    Verdicts,
    /// Failed executions recorded: the named agents' reliability changed.
    Failures,
    /// The named agents were registered, enabled, disabled or deleted.
    Agents,
    /// The named agents' quarantine, probation or grace changed.
    Admission,
    /// A learning cycle saved patterns and rules.
    Patterns,
    /// An API key of the workspace was revoked or rotated.
    Keys,
}

impl ChangeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outcomes => "outcomes",
            Self::Verdicts => "verdicts",
            Self::Failures => "failures",
            Self::Agents => "agents",
            Self::Admission => "admission",
            Self::Patterns => "patterns",
            Self::Keys => "keys",
        }
    }

    /// The kind of a stored name (`None`: written by a newer binary; the
    /// reader skips it).
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "outcomes" => Self::Outcomes,
            "verdicts" => Self::Verdicts,
            "failures" => Self::Failures,
            "agents" => Self::Agents,
            "admission" => Self::Admission,
            "patterns" => Self::Patterns,
            "keys" => Self::Keys,
            _ => return None,
        })
    }
}

/// A position in the feed: everything at or before it has been read.
/// `txid` is 0 on SQLite (rows commit in `seq` order there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedPosition {
    /// The writing transaction (PostgreSQL `xid8`), 0 on SQLite.
    pub txid: i64,
    /// The row's sequence number.
    pub seq: i64,
}

/// One feed row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Where it is in the feed.
    pub position: FeedPosition,
    /// Whose state changed.
    pub workspace: WorkspaceId,
    /// The `NodeId` (as text) of the process that wrote it.
    pub origin: String,
    /// What changed (`None`: a kind this binary does not know).
    pub kind: Option<ChangeKind>,
    /// The agents it concerns (empty for `patterns` and `keys`).
    pub agents: Vec<AgentId>,
    /// When it was written (the database's clock on PostgreSQL).
    pub at: DateTime<Utc>,
}

/// Reading and pruning the feed (the sync task); writing is done by the
/// store calls that change things, in their own transactions.
#[async_trait]
pub trait ChangeFeed: Send + Sync + 'static {
    /// The identity stamped on the rows this store writes (`origin`).
    fn origin(&self) -> &str;
    /// The newest position a reader may start from (nothing at or before it
    /// can still appear); `FeedPosition::default()` on an empty feed.
    async fn feed_head(&self) -> Result<FeedPosition, StoreError>;
    /// Rows after `after`, in feed order, at most `limit`, every workspace.
    async fn feed_since(&self, after: FeedPosition, limit: u32) -> Result<Vec<Change>, StoreError>;
    /// Deletes rows written before `before`; returns how many.
    async fn prune_feed(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Distinct agent ids, sorted, as stored.
pub(crate) fn agent_list<'a>(ids: impl IntoIterator<Item = &'a AgentId>) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = ids.into_iter().map(AgentId::as_str).collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Parses stored agent ids, dropping any that no longer parse.
fn parse_agents(raw: Vec<String>) -> Vec<AgentId> {
    raw.iter()
        .filter_map(|a| AgentId::parse("agent_id", a).ok())
        .collect()
}
