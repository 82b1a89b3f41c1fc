//! The dashboard session aggregate: sign-in sessions in the database, so
//! that every node behind a load balancer knows a session another node
//! started, and a sign-out on one node ends it on all (issue 13).
//!
//! Invariants: the cookie's value never reaches the store, only its SHA-256
//! (`id_hash`), so a database dump cannot be replayed as cookies; a lookup
//! returns nothing once `expires_at` has passed; a workspace holds at most
//! `max_per_workspace` sessions (starting one more ends the oldest).

mod postgres;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::StoreError;

/// A stored session.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// The workspace the key belonged to at sign-in.
    pub workspace: WorkspaceId,
    /// SHA-256 (hex) of the workspace key used to sign in.
    pub key_hash: String,
    /// The CSRF token forms send back.
    pub csrf: String,
    /// When it started (the oldest of a workspace is ended first).
    pub started_at: DateTime<Utc>,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

/// Where sessions live; `id_hash` is the SHA-256 (hex) of the cookie value.
#[async_trait]
pub trait SessionStore {
    /// Stores a new session, first ending the oldest sessions of its
    /// workspace so that at most `max_per_workspace` remain with it.
    async fn start_session(
        &self,
        id_hash: &str,
        session: &StoredSession,
        max_per_workspace: u32,
    ) -> Result<(), StoreError>;
    /// The session, unless unknown or expired at `now`.
    async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSession>, StoreError>;
    /// Ends one session (nothing when unknown).
    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Deletes the sessions expired at `now` → how many.
    async fn sweep_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Sessions of `ws` (tests, metrics).
    async fn count_sessions(&self, ws: WorkspaceId) -> Result<u64, StoreError>;
}
