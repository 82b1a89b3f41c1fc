//! Dashboard sign-in sessions: a random 256-bit id in an HttpOnly,
//! SameSite=Strict cookie, stored in the database (`SessionStore`) under
//! the SHA-256 of that id, with the digest of the workspace key that
//! started it, its workspace, a CSRF token and an expiry. In the database,
//! not in a node's memory, so that several nodes behind one load balancer
//! serve one browser without sticky sessions, and a sign-out on one node
//! ends the session on all of them.
//!
//! Invariants:
//! - the API key itself is never kept, logged, or put in a cookie or URL;
//!   only its SHA-256 digest is held, to check it again on every request
//!   through the key cache (`AppState::key_cache`, then the store), so a
//!   revoked key's sessions end within `auth.cache_ttl_secs`;
//! - the cookie's value is never stored either, only its digest;
//! - a session answers only for the workspace its key resolves to *now*;
//! - at most `dashboard.max_sessions_per_workspace` sessions per workspace
//!   (the oldest is ended), and expired ones are swept, so storage is bounded.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngCore;
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::StoreError;

use crate::auth::hash_key;
use crate::store::{AdminStore, StoredSession};

/// The session cookie's name.
pub const COOKIE: &str = "swarmwise_session";

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 (hex) of the workspace key used to sign in.
    pub key_hash: String,
    /// The workspace the key belonged to at sign-in.
    pub workspace: WorkspaceId,
    /// Sent back in every form as `csrf`; compared on every POST.
    pub csrf: String,
    /// When it was started (the oldest is ended first).
    pub started: DateTime<Utc>,
    /// When it ends.
    pub expires: DateTime<Utc>,
}

impl From<StoredSession> for Session {
    fn from(s: StoredSession) -> Self {
        Self {
            key_hash: s.key_hash,
            workspace: s.workspace,
            csrf: s.csrf,
            started: s.started_at,
            expires: s.expires_at,
        }
    }
}

/// The sessions every node shares (through the store).
pub struct Sessions {
    store: Arc<dyn AdminStore>,
    ttl: Duration,
    per_workspace: u32,
}

/// 32 random bytes, hex.
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Equality that does not stop at the first different byte.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// Sessions kept in `store` that last `ttl`, at most `per_workspace`
    /// per workspace.
    pub fn new(store: Arc<dyn AdminStore>, ttl: Duration, per_workspace: usize) -> Self {
        Self {
            store,
            ttl,
            per_workspace: u32::try_from(per_workspace).unwrap_or(u32::MAX).max(1),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a session → its id (the cookie's value). Sweeps expired
    /// sessions of every workspace first.
    pub async fn start(
        &self,
        key_hash: String,
        workspace: WorkspaceId,
    ) -> Result<(String, Session), StoreError> {
        let now = Utc::now();
        self.store.sweep_sessions(now).await?;
        let stored = StoredSession {
            workspace,
            key_hash,
            csrf: token(),
            started_at: now,
            expires_at: now
                + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(365)),
        };
        let id = token();
        self.store
            .start_session(&hash_key(&id), &stored, self.per_workspace)
            .await?;
        Ok((id, stored.into()))
    }

    /// The live session with this id (`None`: unknown, ended or expired).
    pub async fn get(&self, id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self
            .store
            .session(&hash_key(id), Utc::now())
            .await?
            .map(Session::from))
    }

    /// Ends a session, on every node.
    pub async fn end(&self, id: &str) -> Result<(), StoreError> {
        self.store.end_session(&hash_key(id)).await
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cookie_parsing_and_comparison() {
        assert_eq!(
            cookie_value("a=1; swarmwise_session=xyz; b=2", COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie_value("a=1", COOKIE), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
