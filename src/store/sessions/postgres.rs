//! [`SessionStore`] on PostgreSQL: starting and counting run in a
//! transaction scoped to the workspace (the `dashboard_sessions` policy
//! applies); the lookup by cookie digest, the sign-out and the sweep go
//! through SECURITY DEFINER functions (20261201000007_dashboard_sessions.sql).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::StoreError;

use super::{SessionStore, StoredSession};
use crate::store::postgres::PgStore;
use crate::store::unexpected;

#[async_trait]
impl SessionStore for PgStore {
    async fn start_session(
        &self,
        id_hash: &str,
        s: &StoredSession,
        max_per_workspace: u32,
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(s.workspace).await?;
        sqlx::query(
            "DELETE FROM dashboard_sessions WHERE workspace_id = $1 AND id_hash IN \
             (SELECT id_hash FROM dashboard_sessions WHERE workspace_id = $1 \
              ORDER BY started_at DESC, id_hash OFFSET $2)",
        )
        .bind(s.workspace.0)
        .bind(i64::from(max_per_workspace.max(1)) - 1)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_hash, workspace_id, key_hash, csrf, started_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_hash)
        .bind(s.workspace.0)
        .bind(&s.key_hash)
        .bind(&s.csrf)
        .bind(s.started_at)
        .bind(s.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)
    }

    async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredSession>, StoreError> {
        let row = sqlx::query(
            "SELECT workspace_id, key_hash, csrf, started_at, expires_at FROM swarmwise_session($1, $2)",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.map(|r| -> Result<StoredSession, sqlx::Error> {
            Ok(StoredSession {
                workspace: WorkspaceId(r.try_get("workspace_id")?),
                key_hash: r.try_get("key_hash")?,
                csrf: r.try_get("csrf")?,
                started_at: r.try_get("started_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
        .map_err(unexpected)
    }

    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT swarmwise_end_session($1)")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(())
    }

    async fn sweep_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT swarmwise_sweep_sessions($1)")
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(n.max(0) as u64)
    }

    async fn count_sessions(&self, ws: WorkspaceId) -> Result<u64, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM dashboard_sessions WHERE workspace_id = $1")
                .bind(ws.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        Ok(n.max(0) as u64)
    }
}
