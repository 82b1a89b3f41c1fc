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

use super::{unexpected, AdminStore, RlsCheck};
use crate::config::DatabaseSettings;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The role every service query runs as (created by the first migration).
pub const APP_ROLE: &str = "swarmwise_app";

/// Tables with a `workspace_id` column that are admin-level by design and
/// have no workspace policy (see their migrations): the row-level security
/// self-check does not count them. A new one needs its reason in its
/// migration and a line here.
pub const ADMIN_LEVEL_TABLES: &[&str] = &[
    // Append-only record of operator actions across workspaces, read only
    // through the admin endpoint (20261130000005_keys_audit.sql).
    "audit_log",
];

/// PostgreSQL implementation of the stores.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    /// Stamped on the change-feed rows this store writes (`changes/`).
    pub(super) origin: std::sync::Arc<str>,
}

impl PgStore {
    /// Connects (migrating first if configured), with a generated origin.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let origin = swarmwise_actors::cluster::NodeId::generate();
        Self::connect_as(settings, origin.as_str()).await
    }

    /// Connects (migrating first if configured); `origin` is stamped on the
    /// change-feed rows this store writes.
    pub async fn connect_as(settings: &DatabaseSettings, origin: &str) -> anyhow::Result<Self> {
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
        Ok(Self {
            pool,
            origin: origin.into(),
        })
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

    /// Checks, as the service role, that every table of the current schema
    /// with a `workspace_id` column (and `workspaces`) has row security on
    /// and a policy, and is forced where the service role owns it (the
    /// [`ADMIN_LEVEL_TABLES`] aside); that the role is neither superuser nor
    /// `BYPASSRLS`; and that a query without `app.workspace_id` sees no
    /// recommendation.
    async fn rls_check(&self) -> Result<Option<RlsCheck>, StoreError> {
        let unprotected_tables: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
               AND c.relname <> ALL($1) \
               AND (c.relname = 'workspaces' OR EXISTS ( \
                    SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                      AND a.attname = 'workspace_id' AND NOT a.attisdropped)) \
               AND (NOT c.relrowsecurity \
                    OR NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) \
                    OR (c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                        AND NOT c.relforcerowsecurity)) \
             ORDER BY 1",
        )
        .bind(ADMIN_LEVEL_TABLES)
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        let role_bypasses: bool = sqlx::query_scalar(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(unexpected)?;
        // A transaction of its own, so no workspace setting can linger.
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        let rows_visible_unscoped: i64 =
            sqlx::query_scalar("SELECT count(*) FROM agent_recommendations")
                .fetch_one(&mut *tx)
                .await
                .map_err(unexpected)?;
        tx.rollback().await.map_err(unexpected)?;
        Ok(Some(RlsCheck {
            unprotected_tables,
            role_bypasses,
            rows_visible_unscoped,
        }))
    }
}
