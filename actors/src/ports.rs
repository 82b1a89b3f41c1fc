//! Ports: what the engine needs from the world, as traits. Storage is one
//! trait per aggregate ([`WorkspaceStore`], [`AgentStore`],
//! [`RecommendationStore`], [`TrustStore`], [`LearningStore`], [`RunStore`],
//! [`AlertStore`], [`AdmissionStore`], [`SchedulerStore`], [`RetentionStore`]),
//! gathered by the [`Store`] supertrait. `src/store` implements them with sqlx
//! for PostgreSQL and SQLite; both pass one conformance suite
//! (`tests/api/store.rs`).
//!
//! Every method takes the `WorkspaceId` it acts in; an implementation must
//! never return or change another workspace's rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::admission::{AdmissionChange, AdmissionRow, ChangeOutcome};
use crate::domain::{
    Agent, AgentFailure, AgentId, OutcomeSample, Recommendation, RecommendationFilter,
    RecommendationStatus, VerdictUpdate, WorkspaceId,
};
use crate::learner::agreement::PendingDecision;
use crate::learner::cycle::{Rule, StoredPattern};
use crate::learner::patterns::OutcomeRecord;
use crate::learner::CycleReport;
use crate::trust::TrustCard;
use crate::workflow::WorkflowRun;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row exists already (unique key).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The database cannot be reached or timed out; retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused the data itself (a value it cannot hold, a
    /// check or foreign-key constraint): the same rows fail again on retry.
    #[error("refused by the database: {0}")]
    Rejected(String),
    /// Anything else: a bug or a broken schema.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Clone for StoreError {
    /// A copy for several callers of one failed batch (group commit); an
    /// `Unexpected` copy keeps the whole message (`{:#}`), not the source chain.
    fn clone(&self) -> Self {
        match self {
            Self::Conflict(m) => Self::Conflict(m.clone()),
            Self::Unavailable(m) => Self::Unavailable(m.clone()),
            Self::Rejected(m) => Self::Rejected(m.clone()),
            Self::Unexpected(e) => Self::Unexpected(anyhow::anyhow!("{e:#}")),
        }
    }
}

/// One row of `agent_trust_scores` (an agent, or agent × type when
/// `recommendation_type` is set).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustRow {
    /// Whose.
    pub agent_id: AgentId,
    /// `None` for the agent's overall card.
    pub recommendation_type: Option<String>,
    /// The card.
    pub card: TrustCard,
}

/// A point of an agent's trust history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustHistoryPoint {
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Overall trust then.
    pub overall_trust: f64,
    /// Accuracy then.
    pub accuracy_score: f64,
    /// Outcomes it rested on.
    pub sample_count: u64,
}

/// Token and cost totals of one agent's recommendations over a time range
/// (`created_at`), summed by the store. Only recommendations with a known
/// token count are counted in `recommendations`; unknown counts add 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentUsage {
    /// Whose.
    pub agent_id: AgentId,
    /// Recommendations with at least one known token count.
    pub recommendations: u64,
    /// Sum of the known prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Sum of the known completion (output) tokens.
    pub completion_tokens: u64,
    /// Sum of the known costs, USD.
    pub cost_usd: f64,
    /// Recommendations with tokens but no cost (a model without a price
    /// row, or a count unknown): `cost_usd` is a lower bound when this is
    /// not 0.
    pub unpriced: u64,
}

/// A tracked recommendation the store refused for a permanent reason,
/// kept in the dead-letter table (`tracker_dead_letters`) for inspection and
/// replay instead of blocking the rows behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The recommendation's id (as acknowledged to its caller).
    pub recommendation_id: Uuid,
    /// Its workspace.
    pub workspace_id: WorkspaceId,
    /// Its agent.
    pub agent_id: AgentId,
    /// The store's error for this row.
    pub error: String,
    /// The whole recommendation as JSON text. NUL characters are written as
    /// the `\u0000` escape, so the payload itself is always storable.
    pub payload: String,
    /// When it was refused.
    pub failed_at: DateTime<Utc>,
}

impl DeadLetter {
    /// The dead letter of `rec`, refused with `error`.
    pub fn of(rec: &Recommendation, error: &str, failed_at: DateTime<Utc>) -> Self {
        Self {
            recommendation_id: rec.id,
            workspace_id: rec.workspace_id,
            agent_id: rec.agent_id.clone(),
            // An error message may quote the offending value.
            error: error.replace('\0', "\\u0000"),
            payload: serde_json::to_string(rec)
                .unwrap_or_else(|e| format!("{{\"unserialisable\": {:?}}}", e.to_string())),
            failed_at,
        }
    }
}

/// Held while this node runs a workspace's learning cycle; other nodes
/// sharing the database cannot take it until it is released.
#[async_trait]
pub trait CycleLock: Send {
    /// Releases the lock.
    async fn release(self: Box<Self>);
}

/// The lock of a single-node store (SQLite): always granted.
pub struct LocalLock;

#[async_trait]
impl CycleLock for LocalLock {
    async fn release(self: Box<Self>) {}
}

/// Workspaces: which exist (the engine reloads each one's trust at start). The service adds creating them and their API keys (`KeyStore` in `src/store/keys/`).
#[async_trait]
pub trait WorkspaceStore: Send + Sync + 'static {
    /// Every workspace id (for reloading trust at start).
    async fn workspace_ids(&self) -> Result<Vec<WorkspaceId>, StoreError>;
}

/// Agents: registrations of a workspace's agents.
#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// Registers an agent; `Conflict` if the id is taken.
    async fn create_agent(&self, ws: WorkspaceId, agent: &Agent) -> Result<(), StoreError>;
    /// One agent.
    async fn agent(&self, ws: WorkspaceId, id: &AgentId) -> Result<Option<Agent>, StoreError>;
    /// Every agent, by id.
    async fn agents(&self, ws: WorkspaceId) -> Result<Vec<Agent>, StoreError>;
    /// Removes an agent's registration (its recommendations and trust
    /// history stay); `false` if unknown.
    async fn delete_agent(&self, ws: WorkspaceId, id: &AgentId) -> Result<bool, StoreError>;
    /// Enables or disables; `None` if unknown.
    async fn set_agent_enabled(
        &self,
        ws: WorkspaceId,
        id: &AgentId,
        enabled: bool,
    ) -> Result<Option<Agent>, StoreError>;
}

/// Admission: agents' quarantine, probation and post-override grace (one
/// row per agent that has one, removed with the agent), and the audit entry
/// of each change, written in the same transaction.
#[async_trait]
pub trait AdmissionStore: Send + Sync + 'static {
    /// Workspaces with at least one admission row (the periodic check
    /// visits only these).
    async fn admission_workspaces(&self) -> Result<Vec<WorkspaceId>, StoreError>;
    /// Every admission row of a workspace, by agent id.
    async fn admissions(&self, ws: WorkspaceId) -> Result<Vec<AdmissionRow>, StoreError>;
    /// One agent's admission row, if any.
    async fn admission(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
    ) -> Result<Option<AdmissionRow>, StoreError>;
    /// Applies `change` atomically: only when the agent exists (else
    /// `NotFound`), is enabled if required (else `Disabled`) and its row is
    /// still at `expected_version` (else `Stale`); then writes the new row
    /// (version + 1) or removes it, sets `enabled` if asked, and appends the
    /// audit entry, in one transaction.
    async fn change_admission(
        &self,
        ws: WorkspaceId,
        change: &AdmissionChange,
    ) -> Result<ChangeOutcome, StoreError>;
}

/// One workspace's verdicts in an evaluation batch
/// ([`RecommendationStore::apply_verdict_groups`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictGroup {
    /// Whose recommendations.
    pub workspace: WorkspaceId,
    /// The verdicts, as for [`RecommendationStore::apply_verdicts`].
    pub updates: Vec<VerdictUpdate>,
    /// Recommendations of this workspace that were never tracked, inserted
    /// in the same transaction already judged (status, quality, feedback
    /// and evaluation time set): a workflow run's answers evaluated at once
    /// ([`crate::tracker::Evaluate::fresh`]), written once instead of
    /// inserted and then updated.
    pub inserts: Vec<Recommendation>,
}

impl VerdictGroup {
    /// `Rejected` when a group would insert a row of another workspace
    /// (each backend checks before writing anything).
    pub fn check_inserts(groups: &[Self]) -> Result<(), StoreError> {
        match groups
            .iter()
            .find_map(|g| g.inserts.iter().find(|r| r.workspace_id != g.workspace))
        {
            Some(r) => Err(StoreError::Rejected(format!(
                "recommendation {} is not of the workspace whose verdicts insert it",
                r.id
            ))),
            None => Ok(()),
        }
    }
}

/// One write of a run's life in a group commit ([`RunStore::run_writes`]).
/// The run is shared, not copied: a finished run's progress and report are
/// JSON trees of a few KB, and the runner hands its own over.
#[derive(Debug, Clone, PartialEq)]
pub enum RunWrite {
    /// [`RunStore::insert_run`].
    Insert(std::sync::Arc<WorkflowRun>),
    /// [`RunStore::save_progress`].
    Progress(std::sync::Arc<WorkflowRun>),
    /// [`RunStore::finish_run`].
    Finish(std::sync::Arc<WorkflowRun>),
}

impl RunWrite {
    /// The run written.
    pub fn run(&self) -> &WorkflowRun {
        match self {
            Self::Insert(run) | Self::Progress(run) | Self::Finish(run) => run,
        }
    }
}

/// Recommendations and their verdicts, the dead letters of refused ones, and agents' failed executions: the tracker's write path and what trust folds.
#[async_trait]
pub trait RecommendationStore: Send + Sync + 'static {
    /// Inserts tracked recommendations (any mix of workspaces) atomically.
    async fn insert_recommendations(&self, recs: &[Recommendation]) -> Result<(), StoreError>;
    /// Records recommendations the store refused (see [`DeadLetter`]), any
    /// mix of workspaces, atomically.
    async fn insert_dead_letters(&self, rows: &[DeadLetter]) -> Result<(), StoreError>;
    /// One recommendation.
    async fn recommendation(
        &self,
        ws: WorkspaceId,
        id: Uuid,
    ) -> Result<Option<Recommendation>, StoreError>;
    /// Newest first, filtered, at most `filter.limit`.
    async fn list_recommendations(
        &self,
        ws: WorkspaceId,
        filter: &RecommendationFilter,
    ) -> Result<Vec<Recommendation>, StoreError>;
    /// The lower end of a page's scan window: the id of the `rows`-th
    /// recommendation (newest first, below `filter.before`) matching only
    /// the filter the store leads with (agent, else type, else status),
    /// read from that filter's index alone. `None` when fewer rows match:
    /// the window is then the rest of the workspace. Used for pages of
    /// combined filters ([`RecommendationFilter::combines_filters`]).
    async fn recommendation_scan_floor(
        &self,
        ws: WorkspaceId,
        filter: &RecommendationFilter,
        rows: u32,
    ) -> Result<Option<Uuid>, StoreError>;
    /// Every recommendation of a workflow, oldest first.
    async fn workflow_recommendations(
        &self,
        ws: WorkspaceId,
        workflow_id: &str,
    ) -> Result<Vec<Recommendation>, StoreError>;
    /// Every recommendation of several workflows of `ws`, in one query;
    /// by workflow, then oldest first (the tracker's evaluation batches).
    async fn workflows_recommendations(
        &self,
        ws: WorkspaceId,
        workflow_ids: &[String],
    ) -> Result<Vec<Recommendation>, StoreError>;
    /// Writes verdicts atomically.
    async fn apply_verdicts(
        &self,
        ws: WorkspaceId,
        updates: &[VerdictUpdate],
    ) -> Result<(), StoreError>;
    /// Group commit of evaluations: writes every group's verdicts in one
    /// transaction, all or none, each group as [`Self::apply_verdicts`]
    /// would (its own change-feed row, which also names the agents of its
    /// `inserts`), after inserting the group's `inserts` as
    /// [`Self::insert_recommendations`] would but with their verdicts. Groups
    /// may name any workspaces.
    async fn apply_verdict_groups(&self, groups: &[VerdictGroup]) -> Result<(), StoreError>;
    /// Evaluated outcomes in fold order, of one agent or all.
    async fn outcome_samples(
        &self,
        ws: WorkspaceId,
        agent: Option<&AgentId>,
    ) -> Result<Vec<OutcomeSample>, StoreError>;
    /// Records failed executions (errors, timeouts, invalid answers) of
    /// agents of one workspace, atomically, in one statement.
    async fn insert_failures(
        &self,
        ws: WorkspaceId,
        rows: &[AgentFailure],
    ) -> Result<(), StoreError>;
    /// Failed executions in fold order (time, id), of one agent or all.
    async fn agent_failures(
        &self,
        ws: WorkspaceId,
        agent: Option<&AgentId>,
    ) -> Result<Vec<AgentFailure>, StoreError>;
    /// Recommendation counts per agent and status.
    async fn status_counts(
        &self,
        ws: WorkspaceId,
    ) -> Result<Vec<(AgentId, RecommendationStatus, u64)>, StoreError>;
    /// Token and cost totals per agent of the recommendations created in
    /// `[since, until)` (either bound optional); agents without any known
    /// token count are left out.
    async fn usage_totals(
        &self,
        ws: WorkspaceId,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<AgentUsage>, StoreError>;
}

/// Trust: the current cards (agent, and agent × type) and the history of overall trust.
#[async_trait]
pub trait TrustStore: Send + Sync + 'static {
    /// Upserts trust rows and appends the overall ones to the history.
    async fn save_trust(
        &self,
        ws: WorkspaceId,
        rows: &[TrustRow],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Inserts the rows that do not exist yet; returns how many were new.
    async fn initialize_trust(
        &self,
        ws: WorkspaceId,
        rows: &[TrustRow],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Newest first.
    async fn trust_history(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        limit: u32,
    ) -> Result<Vec<TrustHistoryPoint>, StoreError>;
}

/// Learning: the evaluated outcomes a cycle mines, the patterns and rules it keeps, its reports, and the cross-node lock that lets one node at a time run a workspace's cycle.
#[async_trait]
pub trait LearningStore: Send + Sync + 'static {
    /// Evaluated recommendations for mining (all, or those evaluated at or
    /// after `since`), oldest first; `decision` is `content.<decision_key>` as
    /// text, or the whole content.
    async fn outcome_records(
        &self,
        ws: WorkspaceId,
        decision_key: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<OutcomeRecord>, StoreError>;
    /// Unevaluated (`pending`) recommendations for agreement learning: the
    /// newest `limit` of the workspace (by id, i.e. creation order), each as
    /// its workflow, agent, type and `content.<decision_key>` as text (or the
    /// whole content).
    async fn pending_decisions(
        &self,
        ws: WorkspaceId,
        decision_key: &str,
        limit: u32,
    ) -> Result<Vec<PendingDecision>, StoreError>;
    /// Every pattern of the workspace.
    async fn patterns(&self, ws: WorkspaceId) -> Result<Vec<StoredPattern>, StoreError>;
    /// Writes a cycle's results atomically: upserts patterns (by key), stores
    /// the rules as version `version` (earlier versions become `superseded`),
    /// and the finished report.
    async fn save_cycle(
        &self,
        report: &CycleReport,
        patterns: &[StoredPattern],
        rules: &[Rule],
        version: i32,
    ) -> Result<(), StoreError>;
    /// Takes the cross-node lock of a workspace's learning cycle, or `None`
    /// when another node holds it (PostgreSQL advisory lock).
    async fn try_lock_cycle(
        &self,
        ws: WorkspaceId,
    ) -> Result<Option<Box<dyn CycleLock>>, StoreError>;
    /// Records a cycle as running.
    async fn insert_cycle(&self, report: &CycleReport) -> Result<(), StoreError>;
    /// Stores a failed cycle's report.
    async fn fail_cycle(&self, report: &CycleReport) -> Result<(), StoreError>;
    /// Newest first.
    async fn cycles(&self, ws: WorkspaceId, limit: u32) -> Result<Vec<CycleReport>, StoreError>;
    /// Number of finished cycles (the next rule version is this + 1).
    async fn cycle_count(&self, ws: WorkspaceId) -> Result<i64, StoreError>;
    /// Marks the cycles of `ws` still `running` as `interrupted` (with
    /// `reason` and `at`), but only when no live process holds the
    /// workspace's cycle lock: a cycle another node is running right now is
    /// left alone. PostgreSQL takes the advisory lock for the duration of
    /// the update (a lock held by a dead process's connection is gone);
    /// SQLite serves one node, so every `running` cycle there is a
    /// leftover. Returns how many were marked.
    async fn interrupt_orphaned_cycles(
        &self,
        ws: WorkspaceId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// A lease that lets one node at a time act as the holder of `name` (the
/// scheduler's leadership), kept in the database so it works the same on
/// every backend and survives no process: a holder that stops renewing it
/// loses it at `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The lease's name (`scheduler`).
    pub name: String,
    /// The [`NodeId`](crate::cluster::NodeId) holding it.
    pub holder: String,
    /// Increases by one every time the lease changes hands (never on a
    /// renewal by the same holder): a fencing token. Writes made under the
    /// lease carry it, and the store refuses a stale one.
    pub fencing_token: i64,
    /// When the holder took it.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed (the database's clock where it has one).
    pub expires_at: DateTime<Utc>,
}

/// One occurrence of a scheduled job, claimed by the node that ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OccurrenceClaim {
    /// The job (`learning_cycle`, `retention`).
    pub job: String,
    /// The cron occurrence's time (the claim's key with `job`).
    pub scheduled_at: DateTime<Utc>,
    /// Who ran it.
    pub node: String,
    /// The leadership lease's fencing token it was claimed under.
    pub fencing_token: i64,
    /// When it was claimed (the claimer's clock).
    pub claimed_at: DateTime<Utc>,
}

/// Scheduling across nodes: the leadership lease and the per-occurrence
/// claims (operator-level tables, no workspace).
#[async_trait]
pub trait SchedulerStore: Send + Sync + 'static {
    /// Takes lease `name` for `node` for `ttl_secs` seconds when it is free,
    /// expired or already `node`'s (then it is renewed, same fencing token);
    /// `None` when another node holds it unexpired. A change of holder
    /// increases the fencing token.
    async fn acquire_lease(
        &self,
        name: &str,
        node: &str,
        ttl_secs: u32,
    ) -> Result<Option<Lease>, StoreError>;
    /// Gives the lease up if `node` holds it (a clean stop hands over at
    /// once instead of after the expiry); `false` when it did not hold it.
    async fn release_lease(&self, name: &str, node: &str) -> Result<bool, StoreError>;
    /// The lease as stored (possibly expired), if ever taken.
    async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError>;
    /// Claims occurrence (`job`, `scheduled_at`) for `node`: `true` only for
    /// the first claimer, and only while `node` holds lease `lease`
    /// unexpired with token `fencing_token` (a deposed leader is refused).
    async fn claim_occurrence(
        &self,
        lease: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        node: &str,
        fencing_token: i64,
    ) -> Result<bool, StoreError>;
    /// Claims of `job` scheduled at or after `since`, oldest first.
    async fn occurrence_claims(
        &self,
        job: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<OccurrenceClaim>, StoreError>;
    /// Deletes claims claimed before `before`; returns how many.
    async fn prune_claims(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Retention of recommendations (operator-only; see `crate::retention`).
#[async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// Settled (not `pending`) recommendations of `ws` created before
    /// `before`: what [`RetentionStore::retire_recommendations`] would remove.
    async fn count_retirable(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Removes the oldest `limit` settled recommendations of `ws` created
    /// before `before`, in one transaction: each evaluated one leaves its
    /// outcome digest (what trust and pattern mining read, with `decision`
    /// taken as `content.<decision_key>` or the whole content), and with
    /// `archive` the whole row is copied to the archive table first.
    /// Returns how many were removed (0: nothing left).
    async fn retire_recommendations(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
        decision_key: &str,
        archive: bool,
        limit: u32,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Dead letters of `ws` that failed before `before`: how many, or
    /// (with `delete`) deleted.
    async fn purge_dead_letters(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
        delete: bool,
    ) -> Result<u64, StoreError>;
    /// Trust history points of `ws` recorded before `before`: what
    /// [`RetentionStore::purge_trust_history`] would remove.
    async fn count_trust_history(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Deletes the oldest `limit` trust history points of `ws` recorded
    /// before `before`, in one transaction. Returns how many (0: none left).
    async fn purge_trust_history(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

/// Workflow runs: start, progress, finish, read; the leases that make runs
/// durable across nodes (claim, renew, release, all fenced); approval
/// decisions; and marking what a process from before durable runs left
/// running (runs without an owner, and learning cycles) as interrupted.
///
/// Times are the caller's clock (`now`, `until`): nodes sharing a database
/// must agree on time to well within `workflows.lease_secs` (NTP does).
/// Every write of an executing node is conditional on the run being
/// `running` with the fencing token of its lease (`RunLease`), and
/// answers `false` when that no longer holds (another node claimed it).
#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Records a new (running) workflow run, with its lease.
    async fn insert_run(&self, run: &WorkflowRun) -> Result<(), StoreError>;
    /// Group commit of runs' writes: every write in one transaction, in
    /// order, all or none; answers one flag per write, as the single call
    /// would (`Insert`: always `true`; the others `false` when fenced out).
    async fn run_writes(&self, writes: &[RunWrite]) -> Result<Vec<bool>, StoreError>;
    /// Stores a run's final status, report and error; fenced by
    /// `run.lease` when it has one (`false`: the lease was lost, nothing
    /// written), else only while the run is `running`.
    async fn finish_run(&self, run: &WorkflowRun) -> Result<bool, StoreError>;
    /// One run.
    async fn run(&self, ws: WorkspaceId, id: Uuid) -> Result<Option<WorkflowRun>, StoreError>;
    /// Marks every workflow run of `ws` still `running` without an owner
    /// (written before durable runs) as `interrupted`, with `reason` as its
    /// error and `at` as its end (called at start). Returns (runs, 0):
    /// learning cycles are marked by
    /// [`LearningStore::interrupt_orphaned_cycles`], which spares the cycles
    /// a live node is running (the second count stays for compatibility).
    async fn interrupt_unfinished(
        &self,
        ws: WorkspaceId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError>;
    /// Stores `run.progress` and extends the lease to `run.lease.until`;
    /// fenced (`false`: lease lost, nothing written).
    async fn save_progress(&self, run: &WorkflowRun) -> Result<bool, StoreError>;
    /// Pauses a running run as `awaiting_approval` until
    /// `run.approval_deadline`, storing `run.progress` and dropping its
    /// lease end (owner and fencing token stay, for the decision); fenced.
    async fn pause_run(&self, run: &WorkflowRun) -> Result<bool, StoreError>;
    /// Records an approval decision: only while the run is
    /// `awaiting_approval` with fencing token `expected_fencing` (so of two
    /// concurrent decisions exactly one wins; `false` for the other). Writes
    /// `run`'s status, progress, result, error and end, and, when it is
    /// `running` again, its lease (owner and until; the fencing token
    /// becomes `expected_fencing + 1`).
    async fn decide_run(
        &self,
        run: &WorkflowRun,
        expected_fencing: i64,
    ) -> Result<bool, StoreError>;
    /// Extends to `until` the lease of each of `runs` that is `running` and
    /// held by `owner` (the runs this process executes: one statement per
    /// node, in chunks of a few hundred ids on SQLite). Returns how many. A
    /// run `owner` holds but this process does not execute (a leftover of
    /// an earlier process of the same node id) is not kept alive: its lease
    /// expires and it is taken over.
    async fn renew_leases(
        &self,
        owner: &str,
        until: DateTime<Utc>,
        runs: &[Uuid],
    ) -> Result<u64, StoreError>;
    /// Ends now the lease of every `running` run `owner` holds, so another
    /// node takes it over at its next sweep (a graceful stop). Returns how many.
    async fn release_leases(&self, owner: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Claims up to `limit` `running` runs of any workspace whose lease
    /// ended before `now` (and, with `own_before`, every run `owner` held
    /// whose lease ends before that instant: a node taking back at start
    /// the leftovers of its previous process, never the runs this process
    /// leased, whose leases all end later): each gets owner `owner`, lease
    /// until `until`, and its fencing token + 1. Concurrent claimers never
    /// claim the same run. Returns the claimed runs.
    async fn claim_runs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        own_before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<WorkflowRun>, StoreError>;
    /// Up to `limit` runs of any workspace `awaiting_approval` whose
    /// deadline passed before `now`: (workspace, run id).
    async fn due_approvals(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(WorkspaceId, Uuid)>, StoreError>;
}

/// Who reads or changes alerts and silences: one workspace (a workspace
/// key), or the operator (the admin key, and the `Alerter` itself), who sees
/// every workspace's and the node-level ones (no workspace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertScope {
    /// Only this workspace's rows.
    Workspace(WorkspaceId),
    /// Every row, node-level ones included.
    Admin,
}

impl AlertScope {
    /// The scope that owns rows of `ws` (`None`: node-level, the admin's).
    pub fn of(ws: Option<WorkspaceId>) -> Self {
        ws.map_or(Self::Admin, Self::Workspace)
    }
}

/// A page of alerts, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Only firing or only resolved.
    pub status: Option<crate::alerts::AlertStatus>,
    /// Only this severity.
    pub severity: Option<crate::alerts::Severity>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// Admin scope only: only this workspace's alerts.
    pub workspace: Option<WorkspaceId>,
    /// Keyset cursor: only alerts with a smaller (older) id.
    pub before: Option<Uuid>,
    /// Page size.
    pub limit: u32,
}

/// What recording a new alert did.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertInsert {
    /// It is stored.
    Inserted,
    /// A firing alert with the same fingerprint exists (another node, or an
    /// earlier life of this one, raised it): nothing was written, here it is.
    AlreadyFiring(Box<crate::alerts::Alert>),
}

/// Alerts and silences (the `Alerter`'s memory, the alerts API). At most one
/// firing alert per fingerprint, enforced by the store, so several nodes
/// evaluating the same state raise one alert.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// Records a new alert (firing, or a one-shot already resolved).
    async fn insert_alert(&self, alert: &crate::alerts::Alert) -> Result<AlertInsert, StoreError>;
    /// Marks firing alert `alert.id` resolved with `alert`'s `resolved_at`
    /// and `value`; `false` when it was not firing any more (another node
    /// resolved it first).
    async fn resolve_alert(&self, alert: &crate::alerts::Alert) -> Result<bool, StoreError>;
    /// Every firing alert of every workspace and the node (restored at start).
    async fn firing_alerts(&self) -> Result<Vec<crate::alerts::Alert>, StoreError>;
    /// One alert, if `scope` may see it.
    async fn alert(
        &self,
        scope: AlertScope,
        id: Uuid,
    ) -> Result<Option<crate::alerts::Alert>, StoreError>;
    /// A page, newest first.
    async fn list_alerts(
        &self,
        scope: AlertScope,
        filter: &AlertFilter,
    ) -> Result<Vec<crate::alerts::Alert>, StoreError>;
    /// Acknowledges an alert (the first acknowledgement is kept); `None`
    /// when `scope` cannot see it.
    async fn ack_alert(
        &self,
        scope: AlertScope,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<crate::alerts::Alert>, StoreError>;
    /// Deletes resolved alerts resolved before `before`; returns how many.
    async fn purge_alerts(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Stores a silence.
    async fn insert_silence(&self, silence: &crate::alerts::Silence) -> Result<(), StoreError>;
    /// Silences `scope` may see that have not ended at `now` (all when `None`),
    /// newest first.
    async fn silences(
        &self,
        scope: AlertScope,
        now: Option<DateTime<Utc>>,
    ) -> Result<Vec<crate::alerts::Silence>, StoreError>;
    /// Deletes a silence; `false` when `scope` cannot see it.
    async fn delete_silence(&self, scope: AlertScope, id: Uuid) -> Result<bool, StoreError>;
}

/// Storage the engine uses: every aggregate's port. Implemented for any type
/// that implements them all (a blanket impl), so `Arc<dyn Store>` is the one
/// handle actors hold. Implementations: `PgStore`, `SqliteStore` (one folder
/// per aggregate under `src/store/`).
pub trait Store:
    WorkspaceStore
    + AgentStore
    + AdmissionStore
    + RecommendationStore
    + TrustStore
    + LearningStore
    + RunStore
    + AlertStore
    + SchedulerStore
    + RetentionStore
{
}

impl<T> Store for T where
    T: WorkspaceStore
        + AgentStore
        + AdmissionStore
        + RecommendationStore
        + TrustStore
        + LearningStore
        + RunStore
        + AlertStore
        + SchedulerStore
        + RetentionStore
{
}
