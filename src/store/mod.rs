//! Storage adapters: the engine's storage ports (`swarmwise_actors::ports`,
//! one trait per aggregate, gathered by `Store`) plus what only the service
//! needs ([`AdminStore`], [`KeyStore`]), for PostgreSQL (row-level security)
//! and SQLite (the embedded default). Both pass one conformance suite in
//! `tests/api/store.rs`.
//!
//! ## Layout: one folder per aggregate
//!
//! | folder | trait | what it stores |
//! |---|---|---|
//! | `keys/` | `WorkspaceStore`, [`KeyStore`] | workspaces, API keys, the audit log |
//! | `agents/` | `AgentStore` | agent registrations (read with their admission row) |
//! | `admission/` | `AdmissionStore` | agents' quarantine, probation and post-override grace, audited in the same transaction |
//! | `recommendations/` | `RecommendationStore` | recommendations, verdicts, dead letters, agent failures |
//! | `trust/` | `TrustStore` | trust cards and trust history |
//! | `learning/` | `LearningStore` | outcomes to mine, patterns, rules, cycle reports, the cycle lock |
//! | `runs/` | `RunStore` | workflow runs (and marking leftovers interrupted) |
//! | `alerts/` | `AlertStore` | alerts (one firing per fingerprint) and silences |
//! | `sessions/` | [`SessionStore`] | dashboard sign-in sessions (by the cookie's SHA-256), shared by every node |
//! | `idempotency/` | [`IdempotencyStore`] | `Idempotency-Key` records: the claim, its lease, the stored answer |
//! | `scheduling/` | `SchedulerStore` | the scheduler's leadership lease and the claims of scheduled occurrences |
//! | `retention/` | `RetentionStore` | removing or archiving old recommendations, leaving outcome digests |
//! | `changes/` | [`ChangeFeed`] | the change feed other nodes tail (rows written by the other aggregates' calls, in their transactions) |
//! | `series/` | [`SeriesStore`] | the dashboards' read models: an agent's time series and calibration bins, the run listing (no tables of its own) |
//!
//! Each folder is `mod.rs` (the rows and SQL both dialects share, e.g. column
//! lists), `postgres.rs` (`impl Trait for PgStore`) and `sqlite.rs`
//! (`impl Trait for SqliteStore`). The files beside this one hold what every
//! aggregate uses: `postgres.rs` (the pool, migrations, `set_workspace` for
//! row-level security, readiness) and `sqlite.rs` (the pool, migrations,
//! `micros`/`from_micros`, readiness); here, [`connect`] and the error
//! classification (`unexpected`).
//!
//! **Adding an aggregate** (e.g. `series/` for dashboards): declare its trait
//! in `actors/src/ports.rs` if the engine uses it (and add it to `Store`'s
//! supertraits), or in `series/mod.rs` if only the service does (and add it to
//! [`AdminStore`]'s supertraits); write `series/{mod.rs,postgres.rs,sqlite.rs}`
//! as above; add `mod series;` below; add its tables to both
//! `migrations/postgres` (with an RLS policy) and `migrations/sqlite`; extend
//! the conformance suite, which runs every test on both backends, and add
//! its methods to the forwarding lists of `metered.rs`.
//!
//! ## Metering
//!
//! [`connect_for`] wraps the store in [`MeteredStore`], which times every
//! call (`swarmwise_store_query_duration_seconds{operation}`) and counts
//! failures (`swarmwise_store_errors_total{operation,kind}`), so both
//! backends are measured at one place.

mod admission;
mod agents;
mod alerts;
pub mod changes;
mod idempotency;
mod keys;
mod learning;
mod metered;
mod postgres;
mod recommendations;
mod retention;
mod runs;
mod scheduling;
mod series;
mod sessions;
mod sqlite;
mod trust;

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use swarmwise_actors::ports::{Store, StoreError};
use swarmwise_actors::tracker::WriteMode;

pub use changes::{Change, ChangeFeed, ChangeKind, FeedPosition};
pub use idempotency::{
    ClaimOutcome, IdempotencyClaim, IdempotencyScope, IdempotencyStore, StoredResponse,
};
pub use keys::{ApiKeyInfo, AuditEntry, AuditFilter, KeyChange, KeyStore, WorkspaceInfo};
pub use metered::{error_kind, MeteredStore};
pub use postgres::PgStore;
pub use series::{Bucket, CalibrationBin, RunSummary, SeriesPoint, SeriesStore};
pub use sessions::{SessionStore, StoredSession};
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

/// Everything the service stores: the engine's port ([`Store`], one trait per
/// aggregate), workspaces, keys and the audit log ([`KeyStore`]), the
/// dashboards' read models ([`SeriesStore`]), dashboard sessions
/// ([`SessionStore`]), `Idempotency-Key` records ([`IdempotencyStore`]), and
/// the store's own health.
#[async_trait]
pub trait AdminStore:
    Store + KeyStore + SeriesStore + SessionStore + IdempotencyStore + ChangeFeed
{
    /// Database reachable and the newest migration applied.
    async fn ready(&self) -> Result<(), StoreError>;
    /// Which backend, for logs and `/readyz`.
    fn backend(&self) -> &'static str;
    /// Row-level security self-check (the `swarmwise_store_rls_enforced`
    /// gauge): `None` where the backend has no row-level security (SQLite,
    /// where every query carries `workspace_id = ?` instead).
    async fn rls_check(&self) -> Result<Option<RlsCheck>, StoreError> {
        Ok(None)
    }
}

/// What the row-level security self-check found (PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsCheck {
    /// Workspace-scoped tables the service role is not held to by a policy
    /// (row security off, no policy, or owned by the service role without
    /// `FORCE ROW LEVEL SECURITY`), by name; empty when all are.
    pub unprotected_tables: Vec<String>,
    /// The service role may bypass row-level security (superuser or
    /// `BYPASSRLS`).
    pub role_bypasses: bool,
    /// Rows of `agent_recommendations` visible without a workspace set (must be 0).
    pub rows_visible_unscoped: i64,
}

impl RlsCheck {
    /// Every workspace table holds the service role to its policy.
    pub fn enforced(&self) -> bool {
        self.unprotected_tables.is_empty() && !self.role_bypasses && self.rows_visible_unscoped == 0
    }
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
    let origin = swarmwise_actors::cluster::NodeId::generate();
    connect_as(settings, mode, &origin).await
}

/// [`connect_for`] stamping `origin` on the change-feed rows this store
/// writes (a server passes its `NodeId`, so it can skip its own changes;
/// other callers, such as `swarmwise learn`, get a generated one and their
/// changes reach every server).
pub async fn connect_as(
    settings: &DatabaseSettings,
    mode: WriteMode,
    origin: &swarmwise_actors::cluster::NodeId,
) -> anyhow::Result<Arc<dyn AdminStore>> {
    let url = settings.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect_as(settings, origin.as_str())
            .await
            .with_context(|| format!("could not open PostgreSQL at {}", redact(url)))?;
        Ok(Arc::new(MeteredStore::new(Arc::new(store))))
    } else if url.starts_with("sqlite:") {
        let store = SqliteStore::connect_as(settings, mode == WriteMode::Durable, origin.as_str())
            .await
            .with_context(|| format!("could not open SQLite at {url}"))?;
        Ok(Arc::new(MeteredStore::new(Arc::new(store))))
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
