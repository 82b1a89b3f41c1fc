//! SQLite store, the embedded default: one file in WAL mode. There is no
//! row-level security; every query carries `workspace_id = ?`. Times are
//! stored as integer microseconds so that they sort and round-trip exactly.

use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use swarmwise_actors::ports::StoreError;

use super::{unexpected, AdminStore};
use crate::config::DatabaseSettings;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite implementation of the stores.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// This process's write gate (see [`SqliteStore::write_turn`]).
    writes: std::sync::Arc<tokio::sync::Semaphore>,
    /// Stamped on the change-feed rows this store writes (`changes/`).
    pub(super) origin: std::sync::Arc<str>,
}

pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn from_micros(v: i64) -> Result<DateTime<Utc>, anyhow::Error> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| anyhow::anyhow!("time {v} out of range"))
}

/// A turn at the write gate ([`SqliteStore::write_turn`]); the gate is
/// released, and the time it was held recorded, when this is dropped.
pub(super) struct WriteTurn {
    _permit: tokio::sync::OwnedSemaphorePermit,
    since: Instant,
    operation: &'static str,
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        metrics::histogram!("swarmwise_sqlite_write_gate_held_seconds", "operation" => self.operation)
            .record(self.since.elapsed().as_secs_f64());
    }
}

impl SqliteStore {
    /// Opens (creating the file and its folder) and migrates if configured;
    /// commits with `synchronous = NORMAL` (WAL).
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Self::connect_with(settings, false).await
    }

    /// [`SqliteStore::connect`]; `full_sync` commits with `synchronous =
    /// FULL` (tracking in `durable` mode: a commit survives a power loss).
    pub async fn connect_with(
        settings: &DatabaseSettings,
        full_sync: bool,
    ) -> anyhow::Result<Self> {
        let origin = swarmwise_actors::cluster::NodeId::generate();
        Self::connect_as(settings, full_sync, origin.as_str()).await
    }

    /// [`SqliteStore::connect_with`]; `origin` is stamped on the change-feed
    /// rows this store writes.
    pub async fn connect_as(
        settings: &DatabaseSettings,
        full_sync: bool,
        origin: &str,
    ) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
            // A local file's connections do not go stale, and sqlx's ping
            // before every acquire is one more hand-off to the connection's
            // thread per statement or transaction (measured on the runtime
            // bench: about a tenth of a run's CPU on the runtime's thread).
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        if settings.migrate {
            MIGRATOR.run(&pool).await?;
        }
        Ok(Self {
            pool,
            writes: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            origin: origin.into(),
        })
    }

    /// Waits for this process's turn to write. SQLite has one writer at a
    /// time; two of our connections writing at once meet `SQLITE_BUSY`, and
    /// SQLite's busy handler then sleeps 1, 2, 5, 10, … ms between tries, so
    /// under load most of a commit's time is spent asleep. The hot write
    /// paths (tracking, evaluations, runs' writes, trust cards) take this
    /// gate around their transaction instead, so they queue in memory, in
    /// order, without sleeping. Hold the turn until the commit. Other
    /// processes on the same file (the CLI) still meet the busy handler
    /// (`busy_timeout`, 10 s).
    ///
    /// `operation` (the store method) labels the histograms
    /// `swarmwise_sqlite_write_gate_wait_seconds` (time waiting for the
    /// turn) and `swarmwise_sqlite_write_gate_held_seconds` (time holding
    /// it, recorded when the turn is dropped). The rate of the latter's sum
    /// over all operations is the share of time the gate is taken: near 1,
    /// SQLite's single writer sets the pace of every write path.
    pub(super) async fn write_turn(&self, operation: &'static str) -> Option<WriteTurn> {
        let asked = Instant::now();
        let permit = std::sync::Arc::clone(&self.writes)
            .acquire_owned()
            .await
            .ok()?;
        metrics::histogram!("swarmwise_sqlite_write_gate_wait_seconds", "operation" => operation)
            .record(asked.elapsed().as_secs_f64());
        Some(WriteTurn {
            _permit: permit,
            since: Instant::now(),
            operation,
        })
    }

    /// The pool (tests read the file directly through it).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn ready(&self) -> Result<(), StoreError> {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(unexpected)?;
        super::check_migrations(&MIGRATOR, applied)
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
