//! Dashboard sign-in sessions: a random 256-bit id in an HttpOnly,
//! SameSite=Strict cookie, mapped in this node's memory to the digest of the
//! workspace key that started it, its workspace, a CSRF token and an expiry.
//!
//! Invariants:
//! - the API key itself is never kept, logged, or put in a cookie or URL;
//!   only its SHA-256 digest is held, to check it again on every request
//!   through the key cache (`AppState::key_cache`, then the store), so a
//!   revoked key's sessions end within `auth.cache_ttl_secs`;
//! - a session answers only for the workspace its key resolves to *now*;
//! - at most `dashboard.max_sessions_per_workspace` sessions per workspace
//!   (the oldest is ended), and expired ones are swept, so memory is bounded.

use std::time::{Duration, Instant};

use dashmap::DashMap;
use rand::RngCore;
use swarmwise_actors::domain::WorkspaceId;

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
    pub started: Instant,
    /// When it ends.
    pub expires: Instant,
}

/// Sessions of this node.
#[derive(Debug)]
pub struct Sessions {
    by_id: DashMap<String, Session>,
    ttl: Duration,
    per_workspace: usize,
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
    /// Sessions that last `ttl`, at most `per_workspace` per workspace.
    pub fn new(ttl: Duration, per_workspace: usize) -> Self {
        Self {
            by_id: DashMap::new(),
            ttl,
            per_workspace: per_workspace.max(1),
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a session → its id (the cookie's value).
    pub fn start(&self, key_hash: String, workspace: WorkspaceId) -> (String, Session) {
        self.sweep();
        let mut mine: Vec<(String, Instant)> = self
            .by_id
            .iter()
            .filter(|e| e.value().workspace == workspace)
            .map(|e| (e.key().clone(), e.value().started))
            .collect();
        if mine.len() >= self.per_workspace {
            mine.sort_by_key(|(_, started)| *started);
            let excess = mine.len() + 1 - self.per_workspace;
            for (id, _) in mine.into_iter().take(excess) {
                self.by_id.remove(&id);
            }
        }
        let now = Instant::now();
        let session = Session {
            key_hash,
            workspace,
            csrf: token(),
            started: now,
            expires: now + self.ttl,
        };
        let id = token();
        self.by_id.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let s = self.by_id.get(id)?.value().clone();
        if s.expires <= Instant::now() {
            self.by_id.remove(id);
            return None;
        }
        Some(s)
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.by_id.remove(id);
    }

    /// Ends every session of a workspace (its key stopped resolving).
    pub fn end_workspace(&self, ws: WorkspaceId) {
        self.by_id.retain(|_, s| s.workspace != ws);
    }

    /// Forgets expired sessions.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.by_id.retain(|_, s| s.expires > now);
    }

    /// Sessions held (tests, metrics).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// No session is held.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
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
    fn oldest_session_of_a_workspace_is_ended_past_the_cap() {
        let s = Sessions::new(Duration::from_secs(60), 2);
        let ws = WorkspaceId(uuid::Uuid::now_v7());
        let other = WorkspaceId(uuid::Uuid::now_v7());
        let (a, _) = s.start("h".into(), ws);
        let (o, _) = s.start("h2".into(), other);
        let (b, _) = s.start("h".into(), ws);
        let (c, _) = s.start("h".into(), ws);
        assert!(s.get(&a).is_none(), "the oldest is ended");
        assert!(s.get(&b).is_some() && s.get(&c).is_some());
        assert!(s.get(&o).is_some(), "another workspace is untouched");
        s.end_workspace(ws);
        assert!(s.get(&b).is_none() && s.get(&o).is_some());
    }

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
