//! Storage adapters: the engine's `Store` port plus what only the service
//! needs (`AdminStore`: workspaces, API keys, readiness), for PostgreSQL
//! (`postgres.rs`, row-level security) and SQLite (`sqlite.rs`, the embedded
//! default). Keys, the workspace listing and the audit log are their own
//! aggregate in `keys/`. Both pass one conformance suite in `tests/api/store.rs`.

mod keys;
mod postgres;
mod sqlite;

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::{Store, StoreError};

pub use keys::{ApiKeyInfo, AuditEntry, AuditFilter, KeyChange, KeyStore, WorkspaceInfo};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::config::DatabaseSettings;

/// A new API key's stored form.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Row id.
    pub id: uuid::Uuid,
    /// SHA-256 of the key, hex; the key itself is never stored.
    pub key_hash: String,
    /// The first characters of the key, to recognise it in listings.
    pub prefix: String,
}

/// What the service needs beyond the engine's port (keys, workspaces and the
/// audit log are in [`KeyStore`]).
#[async_trait]
pub trait AdminStore: Store + KeyStore {
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
    /// Database reachable and the newest migration applied.
    async fn ready(&self) -> Result<(), StoreError>;
    /// Which backend, for logs and `/readyz`.
    fn backend(&self) -> &'static str;
}

/// Opens the database named by `settings.url` (`postgres://` or `sqlite:`),
/// applying migrations first when `settings.migrate` is set.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Arc<dyn AdminStore>> {
    let url = settings.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect(settings)
            .await
            .with_context(|| format!("could not open PostgreSQL at {}", redact(url)))?;
        Ok(Arc::new(store))
    } else if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(settings)
            .await
            .with_context(|| format!("could not open SQLite at {url}"))?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!(
            "database.url must start with postgres://, postgresql:// or sqlite: (got {:?}); e.g. sqlite://data/swarmwise.db",
            redact(url)
        )
    }
}

/// Applies migrations only (the `migrate` command).
pub async fn migrate(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let mut s = settings.clone();
    s.migrate = true;
    connect(&s).await.map(|_| ())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = url.get(scheme + 3..at).unwrap_or("");
            let user = creds.split(':').next().unwrap_or("");
            format!(
                "{}{}:***{}",
                url.get(..scheme + 3).unwrap_or(""),
                user,
                url.get(at..).unwrap_or("")
            )
        }
        _ => url.to_owned(),
    }
}

/// Ready when the newest migration this binary carries has been applied.
fn check_migrations(
    migrator: &sqlx::migrate::Migrator,
    applied: Option<i64>,
) -> Result<(), StoreError> {
    let newest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    if applied.unwrap_or(0) < newest {
        return Err(StoreError::Unavailable(format!(
            "migrations pending: newest applied is {applied:?}, this binary needs {newest}; run `swarmwise migrate`"
        )));
    }
    Ok(())
}

/// A priority's database name.
fn priority_name(p: swarmwise_actors::domain::Priority) -> &'static str {
    use swarmwise_actors::domain::Priority;
    match p {
        Priority::Low => "LOW",
        Priority::Normal => "NORMAL",
        Priority::High => "HIGH",
        Priority::Critical => "CRITICAL",
    }
}

/// A pattern category's database name.
fn category_name(c: swarmwise_actors::learner::patterns::Category) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A pattern status from its database name.
fn pattern_status(raw: &str) -> anyhow::Result<swarmwise_actors::learner::cycle::PatternStatus> {
    swarmwise_actors::learner::cycle::PatternStatus::parse(raw)
        .ok_or_else(|| anyhow::anyhow!("bad pattern status {raw}"))
}

fn unexpected(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(ref db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        other => StoreError::Unexpected(other.into()),
    }
}
