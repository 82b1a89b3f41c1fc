//! Idempotency keys ([`IdempotencyStore`]): what makes a repeated create
//! (`Idempotency-Key` header) answer with the first result instead of
//! running again, on any node sharing the database. Only the service uses
//! it (the `crate::idempotency` middleware); the engine never sees it.
//!
//! A row is one (scope, endpoint, key): claimed (`in_progress`, under a
//! lease the claimant renews while its request runs), then completed with
//! the stored answer, or released (deleted) when the answer must not be
//! kept. Every change after the claim matches the claim's token (a fencing
//! token): a claimant whose lease lapsed and was taken over changes nothing.
//!
//! The PostgreSQL (`postgres.rs`) and SQLite (`sqlite.rs`) implementations
//! sit side by side; what both dialects share lives here.

mod postgres;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::StoreError;
use uuid::Uuid;

/// Whose keys: a workspace's (workspace API key), or the admin's (the admin
/// key; no workspace). The same key string in two scopes names two
/// independent records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyScope {
    /// Requests made with this workspace's keys.
    Workspace(WorkspaceId),
    /// Requests made with the admin key.
    Admin,
}

impl IdempotencyScope {
    /// The `workspace_id` column (NULL for the admin).
    pub fn workspace(self) -> Option<WorkspaceId> {
        match self {
            IdempotencyScope::Workspace(ws) => Some(ws),
            IdempotencyScope::Admin => None,
        }
    }
}

/// A first claim of a key: what [`IdempotencyStore::claim_idempotency_key`]
/// inserts (or writes over a lapsed or expired record).
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Whose key.
    pub scope: IdempotencyScope,
    /// Method and route pattern, e.g. `POST /api/v1/recommendations/{id}/feedback`.
    pub endpoint: String,
    /// The `Idempotency-Key` value (validated: 1–255 printable ASCII).
    pub key: String,
    /// SHA-256 (hex) of the request: method, path, query and canonical body.
    pub fingerprint: String,
    /// This claim's fencing token.
    pub token: Uuid,
    /// The claiming node (`cluster.node_id`).
    pub node: String,
    /// When the claim is made (the store compares leases and expiries with it).
    pub now: DateTime<Utc>,
    /// The claim lapses after this unless renewed (`idempotency.lease_secs`).
    pub lease_until: DateTime<Utc>,
    /// The record may be forgotten after this (`idempotency.ttl_secs`).
    pub expires_at: DateTime<Utc>,
}

/// A stored answer, replayed as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status code.
    pub status: u16,
    /// The headers that matter for a replay (`Content-Type`, `Location`), by name.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The key is this request's: run it, then complete or release.
    Claimed,
    /// Another request holds the key and runs now (its lease ends at `lease_until`).
    InProgress {
        /// The holder's lease end.
        lease_until: DateTime<Utc>,
        /// The holder's request has the same fingerprint.
        same_request: bool,
    },
    /// The key's request finished; `response` is its answer.
    Completed {
        /// The stored request has the same fingerprint.
        same_request: bool,
        /// Its answer.
        response: StoredResponse,
    },
}

/// Idempotency records (see the module header).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `claim.key` for this request: inserts the record, or takes
    /// over one whose lease lapsed (`in_progress`, `lease_until <= now`) or
    /// that expired (`expires_at <= now`); otherwise reports what holds it.
    /// Atomic: of two racing claims exactly one gets [`ClaimOutcome::Claimed`].
    async fn claim_idempotency_key(
        &self,
        claim: &IdempotencyClaim,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Extends a held claim's lease; false when the claim is no longer this
    /// token's (it lapsed and was taken over, or was released).
    async fn renew_idempotency_key(
        &self,
        scope: IdempotencyScope,
        token: Uuid,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Stores the answer of a held claim (state `completed`); false when the
    /// claim is no longer this token's.
    async fn complete_idempotency_key(
        &self,
        scope: IdempotencyScope,
        token: Uuid,
        response: &StoredResponse,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Deletes a held claim, so the key may be used again at once (an
    /// answer that must not be replayed: 5xx, 429, 408, 409); false when the
    /// claim is no longer this token's.
    async fn release_idempotency_key(
        &self,
        scope: IdempotencyScope,
        token: Uuid,
    ) -> Result<bool, StoreError>;

    /// Deletes every record (all scopes) with `expires_at <= before`;
    /// returns how many.
    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

const STATE_IN_PROGRESS: &str = "in_progress";
const STATE_COMPLETED: &str = "completed";

/// A stored record as both dialects read it back.
struct Existing {
    token: Uuid,
    fingerprint: String,
    state: String,
    lease_until: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    status: Option<i32>,
    headers: Option<String>,
    body: Option<Vec<u8>>,
}

impl Existing {
    /// Whether `claim` may take this record over: it expired, or it is an
    /// unfinished claim whose lease lapsed (its node died or hung).
    fn is_free_for(&self, claim: &IdempotencyClaim) -> bool {
        self.expires_at <= claim.now
            || (self.state == STATE_IN_PROGRESS && self.lease_until <= claim.now)
    }

    /// What the claim found, when it may not take the record over.
    fn outcome(self, claim: &IdempotencyClaim) -> Result<ClaimOutcome, StoreError> {
        let same_request = self.fingerprint == claim.fingerprint;
        if self.state != STATE_COMPLETED {
            return Ok(ClaimOutcome::InProgress {
                lease_until: self.lease_until,
                same_request,
            });
        }
        let headers: Vec<(String, String)> = match self.headers.as_deref() {
            Some(raw) => serde_json::from_str(raw)
                .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("bad stored headers: {e}")))?,
            None => Vec::new(),
        };
        let status = self
            .status
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| {
                StoreError::Unexpected(anyhow::anyhow!("completed idempotency key without status"))
            })?;
        Ok(ClaimOutcome::Completed {
            same_request,
            response: StoredResponse {
                status,
                headers,
                body: self.body.unwrap_or_default(),
            },
        })
    }
}

fn headers_json(response: &StoredResponse) -> Result<String, StoreError> {
    serde_json::to_string(&response.headers)
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("headers not serialisable: {e}")))
}
