//! PostgreSQL store. Every workspace-scoped query runs in a transaction that
//! first sets `app.workspace_id`; the pool's connections `SET ROLE
//! swarmwise_app`, a role that row-level security cannot be bypassed by.
//! Bulk writes use `UNNEST` arrays.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgPool, Postgres, Transaction};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::StoreError;

use super::{unexpected, AdminStore};
use crate::config::DatabaseSettings;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The role every service query runs as (created by the first migration).
pub const APP_ROLE: &str = "swarmwise_app";

/// PostgreSQL implementation of the stores.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
}

impl PgStore {
    /// Connects (migrating first if configured).
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(&settings.url)?;
        if settings.migrate {
            let mut conn = sqlx::PgConnection::connect_with(&options).await?;
            MIGRATOR.run(&mut conn).await?;
            conn.close().await?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(format!("SET ROLE {APP_ROLE}").as_str())
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The pool (tests use it to prove row-level security on its own).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) async fn scoped(
        &self,
        ws: WorkspaceId,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        set_workspace(&mut tx, ws).await?;
        Ok(tx)
    }
}

/// Scopes the rest of transaction `tx` to workspace `ws` for row-level
/// security (`app.workspace_id`, transaction-local).
pub(super) async fn set_workspace(
    tx: &mut Transaction<'static, Postgres>,
    ws: WorkspaceId,
) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('app.workspace_id', $1, true)")
        .bind(ws.0.to_string())
        .execute(&mut **tx)
        .await
        .map_err(unexpected)?;
    Ok(())
}

#[async_trait]
impl AdminStore for PgStore {
    async fn ready(&self) -> Result<(), StoreError> {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(unexpected)?;
        super::check_migrations(&MIGRATOR, applied)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
