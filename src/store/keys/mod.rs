//! The key and audit aggregate: a workspace's API keys (list, revoke,
//! rotate), the admin's workspace listing, and the append-only audit log.
//! `KeyStore` is a supertrait of [`super::AdminStore`], so every store the
//! service opens has it; the dialects live beside each other in
//! `postgres.rs` (row-level security: key rows are read and changed in a
//! transaction scoped to their workspace; workspaces are listed through a
//! SECURITY DEFINER function) and `sqlite.rs`.
//!
//! Invariants: a key's hash never leaves the store through these methods; a
//! revoked key stays listed with its `revoked_at` and never comes back; a
//! rotation revokes the old key and adds the new one in one transaction.

mod postgres;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::StoreError;
use uuid::Uuid;

use super::NewApiKey;

/// A workspace as the admin lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct WorkspaceInfo {
    /// Workspace id.
    pub id: WorkspaceId,
    /// Display name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// An API key as listed: never the key, never its hash.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    /// Key id (the `{key_id}` of the revoke and rotate endpoints).
    pub id: Uuid,
    /// The key's first characters, to recognise it (`swk_` and 6 hex).
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; null while it is valid.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a revocation or rotation found.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyChange {
    /// Done; the old key as it now is (revoked).
    Done(ApiKeyInfo),
    /// The key was already revoked; nothing changed.
    AlreadyRevoked(ApiKeyInfo),
    /// No such key in this workspace.
    NotFound,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Entry id (UUIDv7, time-ordered; the pagination cursor).
    pub id: Uuid,
    /// When the action happened.
    pub at: DateTime<Utc>,
    /// Who acted: `admin` or `workspace:<id>`.
    pub actor: String,
    /// What was done, e.g. `workspace.create`, `api_key.revoke`.
    pub action: String,
    /// The workspace acted on, if any.
    pub workspace_id: Option<WorkspaceId>,
    /// The object acted on, e.g. a key id or an agent id.
    pub target: String,
    /// Structured details of the action.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Filters of `GET /audit`; combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Only entries about this workspace.
    pub workspace_id: Option<WorkspaceId>,
    /// Only this action.
    pub action: Option<String>,
    /// Only entries about this object (e.g. an agent id); combine with
    /// `workspace_id`, as object ids are unique only within a workspace.
    pub target: Option<String>,
    /// Only ids strictly older than this (the cursor).
    pub before: Option<Uuid>,
    /// At most this many, newest first.
    pub limit: u32,
}

/// Keys, workspaces and the audit log (the engine's side of workspaces,
/// `workspace_ids`, is [`swarmwise_actors::ports::WorkspaceStore`]).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Creates a workspace with its first API key, atomically.
    async fn create_workspace(
        &self,
        ws: WorkspaceId,
        name: &str,
        key: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Adds an API key to a workspace.
    async fn add_api_key(
        &self,
        ws: WorkspaceId,
        key: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The workspace of a (non-revoked) key hash.
    async fn workspace_for_key(&self, key_hash: &str) -> Result<Option<WorkspaceId>, StoreError>;
    /// Workspaces by id, those after `after`, at most `limit`.
    async fn workspaces(
        &self,
        after: Option<WorkspaceId>,
        limit: u32,
    ) -> Result<Vec<WorkspaceInfo>, StoreError>;
    /// One workspace, if it exists.
    async fn workspace(&self, ws: WorkspaceId) -> Result<Option<WorkspaceInfo>, StoreError>;
    /// Every key of a workspace, oldest first, revoked ones included.
    async fn api_keys(&self, ws: WorkspaceId) -> Result<Vec<ApiKeyInfo>, StoreError>;
    /// Revokes a key of `ws` at `at`.
    async fn revoke_api_key(
        &self,
        ws: WorkspaceId,
        key_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<KeyChange, StoreError>;
    /// Revokes a key of `ws` and adds `new` in its place, atomically.
    async fn rotate_api_key(
        &self,
        ws: WorkspaceId,
        key_id: Uuid,
        new: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<KeyChange, StoreError>;
    /// Appends an entry to the audit log.
    async fn insert_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Audit entries, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;
}
