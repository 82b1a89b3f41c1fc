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
    /// One connection for the writes made under the gate
    /// ([`SqliteStore::write_turn`]); see [`WRITER_CACHE_KIB`].
    pub(super) writer: SqlitePool,
    /// This process's write gate (see [`SqliteStore::write_turn`]).
    writes: std::sync::Arc<tokio::sync::Semaphore>,
    /// Stamped on the change-feed rows this store writes (`changes/`).
    pub(super) origin: std::sync::Arc<str>,
    /// Held by every clone; the checkpointer ([`spawn_checkpointer`]) stops
    /// once the last clone is gone.
    _alive: std::sync::Arc<()>,
}

/// A turn at `gate` ([`SqliteStore::write_turn`]); `None` once it is closed.
async fn gate_turn(
    gate: &std::sync::Arc<tokio::sync::Semaphore>,
    operation: &'static str,
) -> Option<WriteTurn> {
    let asked = Instant::now();
    let permit = std::sync::Arc::clone(gate).acquire_owned().await.ok()?;
    metrics::histogram!("swarmwise_sqlite_write_gate_wait_seconds", "operation" => operation)
        .record(asked.elapsed().as_secs_f64());
    Some(WriteTurn {
        _permit: permit,
        since: Instant::now(),
        operation,
    })
}

/// With the background checkpointer on, SQLite's own checkpoint (run by
/// the commit that takes the WAL past this many pages, 40 MB at 4 KiB a
/// page) stays only as a backstop: should the task fall behind, the WAL
/// still stops growing.
const BACKSTOP_CHECKPOINT_PAGES: u32 = 10_000;

/// The page cache of the connection that makes every gated write, in KiB.
/// In WAL mode a connection drops its whole page cache when it begins a
/// transaction after another connection committed, so gated writes spread
/// over the pool's connections began cold and read every page they touched
/// back (a profile of the runtime bench: `pread` and page-cache misses were
/// about a tenth of the connection threads' time, with the gate held). One
/// connection that makes all of them keeps its cache: only its own commits
/// change the file between its transactions. Its cache holds the pages
/// those writes touch again and again (the indexes' newest leaves and the
/// tree above them); SQLite's default is 2 MiB.
const WRITER_CACHE_KIB: u32 = 16 * 1024;

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
            // Statement journals (a multi-row statement's undo log, kept so
            // that statement alone can be rolled back) in memory: SQLite's
            // default spills them to a temporary file past 64 KiB, and a
            // group commit's multi-row inserts into a table with 10 indexes
            // go past it (a profile of the runtime bench: about a tenth of
            // the connection threads' time in `pwrite` to that file, with
            // the write gate held).
            .pragma("temp_store", "memory")
            .busy_timeout(Duration::from_secs(10));
        // An in-memory database has no WAL to checkpoint (and its shared
        // cache would refuse a checkpoint during any transaction).
        let in_memory = settings.url.contains(":memory:") || settings.url.contains("mode=memory");
        let checkpoint_every = if in_memory {
            Duration::ZERO
        } else {
            Duration::from_millis(settings.sqlite_checkpoint_interval_ms)
        };
        let options = if checkpoint_every.is_zero() {
            options
        } else {
            options.pragma("wal_autocheckpoint", BACKSTOP_CHECKPOINT_PAGES.to_string())
        };
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
            .connect_with(options.clone())
            .await?;
        if settings.migrate {
            MIGRATOR.run(&pool).await?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
            .test_before_acquire(false)
            .connect_with(options.pragma("cache_size", format!("-{WRITER_CACHE_KIB}")))
            .await?;
        let alive = std::sync::Arc::new(());
        let store = Self {
            pool,
            writer,
            writes: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            origin: origin.into(),
            _alive: std::sync::Arc::clone(&alive),
        };
        if !checkpoint_every.is_zero() {
            spawn_checkpointer(&store, std::sync::Arc::downgrade(&alive), checkpoint_every);
        }
        Ok(store)
    }

    /// Waits for this process's turn to write. SQLite has one writer at a
    /// time; two of our connections writing at once meet `SQLITE_BUSY`, and
    /// SQLite's busy handler then sleeps 1, 2, 5, 10, … ms between tries, so
    /// under load most of a commit's time is spent asleep. The hot write
    /// paths (tracking, evaluations, runs' writes, trust cards) take this
    /// gate around their transaction instead, so they queue in memory, in
    /// order, without sleeping. Hold the turn until the commit, and write on
    /// `self.writer` (one connection, its page cache kept warm). Other
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
        gate_turn(&self.writes, operation).await
    }

    /// The pool (tests read the file directly through it).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Checkpoints the write-ahead log every `every`, mostly off the write path.
///
/// SQLite's default checkpoint runs inside the commit that takes the WAL
/// past 1,000 pages: that commit copies the WAL's pages into the database
/// file and syncs both, with this process's write gate held, so every
/// queued write waits for it (a profile of the runtime bench: about 7% of
/// the connection threads' time, all of it gated). Here each tick runs two
/// `PASSIVE` checkpoints (<https://www.sqlite.org/wal.html#ckpt>):
/// - the first on a pool connection without the gate: it takes no write
///   lock and copies what no reader still needs while writers go on
///   appending;
/// - the second under the gate, on the writer's connection: it copies only
///   the frames appended meanwhile. With nothing left to copy, the next
///   write starts the WAL over from its beginning; a checkpoint that never
///   catches up with the writers would let the WAL grow to the backstop.
///
/// Each tick's duration is recorded in `swarmwise_sqlite_checkpoint_seconds`
/// (its gated part in the gate histograms, operation `checkpoint`); a
/// failed one is logged and tried again at the next tick. The task ends
/// when the store's last clone is dropped or its pool closed.
fn spawn_checkpointer(store: &SqliteStore, alive: std::sync::Weak<()>, every: Duration) {
    let (pool, writer, gate) = (
        store.pool.clone(),
        store.writer.clone(),
        std::sync::Arc::clone(&store.writes),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.strong_count() == 0 || pool.is_closed() {
                break;
            }
            let started = Instant::now();
            let done = async {
                sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await?;
                let _turn = gate_turn(&gate, "checkpoint").await;
                sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&writer)
                    .await
            }
            .await;
            match done {
                Ok(_) => metrics::histogram!("swarmwise_sqlite_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64()),
                Err(e) if pool.is_closed() => {
                    tracing::debug!(error = %e, "SQLite checkpoint stopped: the pool is closed");
                    break;
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "SQLite WAL checkpoint failed; retrying at the next tick (SQLite's own checkpoint in commits stays as a backstop)"
                ),
            }
        }
    });
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
