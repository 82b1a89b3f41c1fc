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
use swarmwise_actors::learner::agreement::PendingDecision;
use swarmwise_actors::ports::{Store, StoreError};
use swarmwise_actors::tracker::WriteMode;

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
/// applying migrations first when `settings.migrate` is set; SQLite commits
/// with `synchronous = NORMAL` (see [`connect_for`]).
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Arc<dyn AdminStore>> {
    connect_for(settings, WriteMode::WriteBehind).await
}

/// [`connect`] for a tracking mode: in `durable` mode SQLite commits with
/// `synchronous = FULL`, so an acknowledged row survives a power loss, not
/// only a crash of the process (WAL with NORMAL is enough for
/// `write_behind`, which acknowledges before the commit anyway).
pub async fn connect_for(
    settings: &DatabaseSettings,
    mode: WriteMode,
) -> anyhow::Result<Arc<dyn AdminStore>> {
    let url = settings.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect(settings)
            .await
            .with_context(|| format!("could not open PostgreSQL at {}", redact(url)))?;
        Ok(Arc::new(store))
    } else if url.starts_with("sqlite:") {
        let store = SqliteStore::connect_with(settings, mode == WriteMode::Durable)
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

/// A `pending_decisions` row (both dialects select the same text columns).
fn pending_decision<R>(r: &R) -> Result<PendingDecision, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
{
    let get = || -> Result<PendingDecision, anyhow::Error> {
        let agent: String = r.try_get("agent_id")?;
        Ok(PendingDecision {
            workflow_id: r.try_get("workflow_id")?,
            agent_id: swarmwise_actors::domain::AgentId::parse("agent_id", &agent)?,
            recommendation_type: r.try_get("recommendation_type")?,
            decision: r.try_get("decision")?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

/// Classifies a driver error: transient (`Unavailable`: retrying may work),
/// the data refused (`Rejected`, `Conflict`: it fails again), or anything
/// else (`Unexpected`). The write-behind writer retries the first kind and
/// isolates rows on the others.
fn unexpected(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(ref db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        sqlx::Error::Database(ref db) => {
            let code = db.code().unwrap_or_default();
            if is_transient_code(&code) {
                StoreError::Unavailable(db.message().to_owned())
            } else if is_data_code(&code) || !matches!(db.kind(), sqlx::error::ErrorKind::Other) {
                StoreError::Rejected(db.message().to_owned())
            } else {
                StoreError::Unexpected(e.into())
            }
        }
        other => StoreError::Unexpected(other.into()),
    }
}

/// PostgreSQL SQLSTATEs (and SQLite result codes) worth retrying: connection
/// exceptions (08), insufficient resources (53), operator intervention such
/// as a server restart (57P), serialization failures and deadlocks (40001,
/// 40P01); SQLite BUSY (5, and 261/517 extended) and LOCKED (6, 262). Also a
/// database not usable as configured (42: an undefined table, a missing
/// privilege; 3D/3F: a missing database or schema): no row is at fault, so
/// the writer keeps the rows and retries until an operator fixes it, rather
/// than dead-lettering every row.
fn is_transient_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code.starts_with("42")
        || code.starts_with("3D")
        || code.starts_with("3F")
        || matches!(code, "40001" | "40P01" | "5" | "6" | "261" | "517" | "262")
}

/// Data refused: PostgreSQL data exceptions (22: invalid text such as a NUL
/// or a bad encoding, out of range) and integrity violations (23); SQLite
/// constraint (19 and its extended codes) and too big (18).
fn is_data_code(code: &str) -> bool {
    code.starts_with("22")
        || code.starts_with("23")
        || code == "18"
        || code
            .parse::<u32>()
            .is_ok_and(|c| c == 19 || (c > 255 && c & 0xff == 19))
}
