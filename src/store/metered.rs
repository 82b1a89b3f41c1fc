//! [`MeteredStore`]: a decorator over any [`AdminStore`] that times every
//! store call and counts its failures, so query performance and database
//! errors are measured at one place for both backends.
//!
//! Every call records `swarmwise_store_query_duration_seconds{operation}`
//! (the method's name: a closed set fixed by the code, never a value from a
//! request) and, when it fails, `swarmwise_store_errors_total{operation,kind}`
//! with `kind` one of `conflict`, `unavailable`, `rejected`, `unexpected`
//! ([`StoreError`]). [`super::connect_for`] wraps every store it opens.
//!
//! **Adding a store method**: add its forwarding line to the macro call
//! below (the compiler asks for it); it is then metered like the rest.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use swarmwise_actors::admission::{AdmissionChange, AdmissionRow, ChangeOutcome};
use swarmwise_actors::alerts::{Alert, Silence};
use swarmwise_actors::domain::{
    Agent, AgentFailure, AgentId, OutcomeSample, Recommendation, RecommendationFilter,
    RecommendationStatus, VerdictUpdate, WorkspaceId,
};
use swarmwise_actors::learner::agreement::PendingDecision;
use swarmwise_actors::learner::cycle::{Rule, StoredPattern};
use swarmwise_actors::learner::patterns::OutcomeRecord;
use swarmwise_actors::learner::CycleReport;
use swarmwise_actors::ports::{
    AdmissionStore, AgentStore, AgentUsage, AlertFilter, AlertInsert, AlertScope, AlertStore,
    CycleLock, DeadLetter, LearningStore, Lease, OccurrenceClaim, RecommendationStore,
    RetentionStore, RunStore, RunWrite, SchedulerStore, StoreError, TrustHistoryPoint, TrustRow,
    TrustStore, VerdictGroup, WorkspaceStore,
};
use swarmwise_actors::workflow::WorkflowRun;
use uuid::Uuid;

use super::{
    AdminStore, ApiKeyInfo, AuditEntry, AuditFilter, Bucket, CalibrationBin, Change, ChangeFeed,
    ClaimOutcome, FeedPosition, IdempotencyClaim, IdempotencyScope, IdempotencyStore, KeyChange,
    KeyStore, NewApiKey, RlsCheck, RunSummary, SeriesPoint, SeriesStore, SessionStore,
    StoredResponse, StoredSession, WorkspaceInfo,
};

/// Times and counts every call to the store it wraps.
pub struct MeteredStore {
    /// The store doing the work.
    inner: Arc<dyn AdminStore>,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn AdminStore>) -> Self {
        Self { inner }
    }
}

/// The `kind` label of a store error.
pub fn error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::Conflict(_) => "conflict",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Rejected(_) => "rejected",
        StoreError::Unexpected(_) => "unexpected",
    }
}

async fn metered<T>(
    operation: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let res = call.await;
    metrics::histogram!("swarmwise_store_query_duration_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = &res {
        metrics::counter!("swarmwise_store_errors_total", "operation" => operation, "kind" => error_kind(e))
            .increment(1);
    }
    res
}

/// `impl $trait for MeteredStore` forwarding each listed method through
/// [`metered`] under the method's name.
macro_rules! forward {
    ($trait:path { $( fn $name:ident(&self $(, $arg:ident : $ty:ty)* ) -> $ret:ty; )* }) => {
        #[async_trait]
        impl $trait for MeteredStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    metered(stringify!($name), self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

forward!(WorkspaceStore {
    fn workspace_ids(&self) -> Vec<WorkspaceId>;
});

forward!(AgentStore {
    fn create_agent(&self, ws: WorkspaceId, agent: &Agent) -> ();
    fn agent(&self, ws: WorkspaceId, id: &AgentId) -> Option<Agent>;
    fn agents(&self, ws: WorkspaceId) -> Vec<Agent>;
    fn delete_agent(&self, ws: WorkspaceId, id: &AgentId) -> bool;
    fn set_agent_enabled(&self, ws: WorkspaceId, id: &AgentId, enabled: bool) -> Option<Agent>;
});

forward!(AdmissionStore {
    fn admission_workspaces(&self) -> Vec<WorkspaceId>;
    fn admissions(&self, ws: WorkspaceId) -> Vec<AdmissionRow>;
    fn admission(&self, ws: WorkspaceId, agent: &AgentId) -> Option<AdmissionRow>;
    fn change_admission(&self, ws: WorkspaceId, change: &AdmissionChange) -> ChangeOutcome;
});

forward!(RecommendationStore {
    fn insert_recommendations(&self, recs: &[Recommendation]) -> ();
    fn insert_dead_letters(&self, rows: &[DeadLetter]) -> ();
    fn recommendation(&self, ws: WorkspaceId, id: Uuid) -> Option<Recommendation>;
    fn list_recommendations(&self, ws: WorkspaceId, filter: &RecommendationFilter) -> Vec<Recommendation>;
    fn recommendation_scan_floor(&self, ws: WorkspaceId, filter: &RecommendationFilter, rows: u32) -> Option<Uuid>;
    fn workflow_recommendations(&self, ws: WorkspaceId, workflow_id: &str) -> Vec<Recommendation>;
    fn workflows_recommendations(&self, ws: WorkspaceId, workflow_ids: &[String]) -> Vec<Recommendation>;
    fn apply_verdicts(&self, ws: WorkspaceId, updates: &[VerdictUpdate]) -> ();
    fn apply_verdict_groups(&self, groups: &[VerdictGroup]) -> ();
    fn outcome_samples(&self, ws: WorkspaceId, agent: Option<&AgentId>) -> Vec<OutcomeSample>;
    fn insert_failures(&self, ws: WorkspaceId, rows: &[AgentFailure]) -> ();
    fn agent_failures(&self, ws: WorkspaceId, agent: Option<&AgentId>) -> Vec<AgentFailure>;
    fn status_counts(&self, ws: WorkspaceId) -> Vec<(AgentId, RecommendationStatus, u64)>;
    fn usage_totals(&self, ws: WorkspaceId, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Vec<AgentUsage>;
});

forward!(TrustStore {
    fn save_trust(&self, ws: WorkspaceId, rows: &[TrustRow], at: DateTime<Utc>) -> ();
    fn initialize_trust(&self, ws: WorkspaceId, rows: &[TrustRow], at: DateTime<Utc>) -> u64;
    fn trust_history(&self, ws: WorkspaceId, agent: &AgentId, limit: u32) -> Vec<TrustHistoryPoint>;
});

forward!(LearningStore {
    fn outcome_records(&self, ws: WorkspaceId, decision_key: &str, since: Option<DateTime<Utc>>) -> Vec<OutcomeRecord>;
    fn pending_decisions(&self, ws: WorkspaceId, decision_key: &str, limit: u32) -> Vec<PendingDecision>;
    fn patterns(&self, ws: WorkspaceId) -> Vec<StoredPattern>;
    fn save_cycle(&self, report: &CycleReport, patterns: &[StoredPattern], rules: &[Rule], version: i32) -> ();
    fn try_lock_cycle(&self, ws: WorkspaceId) -> Option<Box<dyn CycleLock>>;
    fn insert_cycle(&self, report: &CycleReport) -> ();
    fn fail_cycle(&self, report: &CycleReport) -> ();
    fn cycles(&self, ws: WorkspaceId, limit: u32) -> Vec<CycleReport>;
    fn cycle_count(&self, ws: WorkspaceId) -> i64;
    fn interrupt_orphaned_cycles(&self, ws: WorkspaceId, reason: &str, at: DateTime<Utc>) -> u64;
});

forward!(SchedulerStore {
    fn acquire_lease(&self, name: &str, node: &str, ttl_secs: u32) -> Option<Lease>;
    fn release_lease(&self, name: &str, node: &str) -> bool;
    fn lease(&self, name: &str) -> Option<Lease>;
    fn claim_occurrence(&self, lease: &str, job: &str, scheduled_at: DateTime<Utc>, node: &str, fencing_token: i64) -> bool;
    fn occurrence_claims(&self, job: &str, since: DateTime<Utc>) -> Vec<OccurrenceClaim>;
    fn prune_claims(&self, before: DateTime<Utc>) -> u64;
});

forward!(RetentionStore {
    fn count_retirable(&self, ws: WorkspaceId, before: DateTime<Utc>) -> u64;
    fn retire_recommendations(&self, ws: WorkspaceId, before: DateTime<Utc>, decision_key: &str, archive: bool, limit: u32, at: DateTime<Utc>) -> u64;
    fn purge_dead_letters(&self, ws: WorkspaceId, before: DateTime<Utc>, delete: bool) -> u64;
    fn count_trust_history(&self, ws: WorkspaceId, before: DateTime<Utc>) -> u64;
    fn purge_trust_history(&self, ws: WorkspaceId, before: DateTime<Utc>, limit: u32) -> u64;
});

forward!(RunStore {
    fn insert_run(&self, run: &WorkflowRun) -> ();
    fn run_writes(&self, writes: &[RunWrite]) -> Vec<bool>;
    fn finish_run(&self, run: &WorkflowRun) -> bool;
    fn run(&self, ws: WorkspaceId, id: Uuid) -> Option<WorkflowRun>;
    fn interrupt_unfinished(&self, ws: WorkspaceId, reason: &str, at: DateTime<Utc>) -> (u64, u64);
    fn save_progress(&self, run: &WorkflowRun) -> bool;
    fn pause_run(&self, run: &WorkflowRun) -> bool;
    fn decide_run(&self, run: &WorkflowRun, expected_fencing: i64) -> bool;
    fn renew_leases(&self, owner: &str, until: DateTime<Utc>, runs: &[Uuid]) -> u64;
    fn release_leases(&self, owner: &str, now: DateTime<Utc>) -> u64;
    fn claim_runs(&self, owner: &str, now: DateTime<Utc>, until: DateTime<Utc>, own_before: Option<DateTime<Utc>>, limit: u32) -> Vec<WorkflowRun>;
    fn due_approvals(&self, now: DateTime<Utc>, limit: u32) -> Vec<(WorkspaceId, Uuid)>;
});

forward!(AlertStore {
    fn insert_alert(&self, alert: &Alert) -> AlertInsert;
    fn resolve_alert(&self, alert: &Alert) -> bool;
    fn firing_alerts(&self) -> Vec<Alert>;
    fn alert(&self, scope: AlertScope, id: Uuid) -> Option<Alert>;
    fn list_alerts(&self, scope: AlertScope, filter: &AlertFilter) -> Vec<Alert>;
    fn ack_alert(&self, scope: AlertScope, id: Uuid, by: &str, at: DateTime<Utc>) -> Option<Alert>;
    fn purge_alerts(&self, before: DateTime<Utc>) -> u64;
    fn insert_silence(&self, silence: &Silence) -> ();
    fn silences(&self, scope: AlertScope, now: Option<DateTime<Utc>>) -> Vec<Silence>;
    fn delete_silence(&self, scope: AlertScope, id: Uuid) -> bool;
});

forward!(KeyStore {
    fn create_workspace(&self, ws: WorkspaceId, name: &str, key: &NewApiKey, at: DateTime<Utc>) -> ();
    fn add_api_key(&self, ws: WorkspaceId, key: &NewApiKey, at: DateTime<Utc>) -> ();
    fn workspace_for_key(&self, key_hash: &str) -> Option<WorkspaceId>;
    fn workspaces(&self, after: Option<WorkspaceId>, limit: u32) -> Vec<WorkspaceInfo>;
    fn workspace(&self, ws: WorkspaceId) -> Option<WorkspaceInfo>;
    fn api_keys(&self, ws: WorkspaceId) -> Vec<ApiKeyInfo>;
    fn revoke_api_key(&self, ws: WorkspaceId, key_id: Uuid, at: DateTime<Utc>) -> KeyChange;
    fn rotate_api_key(&self, ws: WorkspaceId, key_id: Uuid, new: &NewApiKey, at: DateTime<Utc>) -> KeyChange;
    fn insert_audit(&self, entry: &AuditEntry) -> ();
    fn audit(&self, filter: &AuditFilter) -> Vec<AuditEntry>;
});

forward!(SessionStore {
    fn start_session(&self, id_hash: &str, session: &StoredSession, max_per_workspace: u32) -> ();
    fn session(&self, id_hash: &str, now: DateTime<Utc>) -> Option<StoredSession>;
    fn end_session(&self, id_hash: &str) -> ();
    fn sweep_sessions(&self, now: DateTime<Utc>) -> u64;
    fn count_sessions(&self, ws: WorkspaceId) -> u64;
});

forward!(SeriesStore {
    fn agent_series(&self, ws: WorkspaceId, agent: &AgentId, bucket: Bucket, before: Option<DateTime<Utc>>, limit: u32) -> Vec<SeriesPoint>;
    fn calibration_bins(&self, ws: WorkspaceId, agent: &AgentId) -> Vec<CalibrationBin>;
    fn recent_runs(&self, ws: WorkspaceId, before: Option<Uuid>, limit: u32) -> Vec<RunSummary>;
});

forward!(IdempotencyStore {
    fn claim_idempotency_key(&self, claim: &IdempotencyClaim) -> ClaimOutcome;
    fn renew_idempotency_key(&self, scope: IdempotencyScope, token: Uuid, lease_until: DateTime<Utc>) -> bool;
    fn complete_idempotency_key(&self, scope: IdempotencyScope, token: Uuid, response: &StoredResponse, at: DateTime<Utc>) -> bool;
    fn release_idempotency_key(&self, scope: IdempotencyScope, token: Uuid) -> bool;
    fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> u64;
});

#[async_trait]
impl AdminStore for MeteredStore {
    async fn ready(&self) -> Result<(), StoreError> {
        metered("ready", self.inner.ready()).await
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn rls_check(&self) -> Result<Option<RlsCheck>, StoreError> {
        metered("rls_check", self.inner.rls_check()).await
    }
}

#[async_trait]
impl ChangeFeed for MeteredStore {
    fn origin(&self) -> &str {
        self.inner.origin()
    }

    async fn feed_head(&self) -> Result<FeedPosition, StoreError> {
        metered("feed_head", self.inner.feed_head()).await
    }

    async fn feed_since(&self, after: FeedPosition, limit: u32) -> Result<Vec<Change>, StoreError> {
        metered("feed_since", self.inner.feed_since(after, limit)).await
    }

    async fn prune_feed(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        metered("prune_feed", self.inner.prune_feed(before)).await
    }
}
