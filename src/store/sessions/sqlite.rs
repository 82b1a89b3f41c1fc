//! [`SessionStore`] on SQLite: every query names the workspace or the
//! cookie digest; times are integer microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::StoreError;

use super::{SessionStore, StoredSession};
use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

#[async_trait]
impl SessionStore for SqliteStore {
    async fn start_session(
        &self,
        id_hash: &str,
        s: &StoredSession,
        max_per_workspace: u32,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        sqlx::query(
            "DELETE FROM dashboard_sessions WHERE workspace_id = ?1 AND id_hash IN \
             (SELECT id_hash FROM dashboard_sessions WHERE workspace_id = ?1 \
              ORDER BY started_at DESC, id_hash LIMIT -1 OFFSET ?2)",
        )
        .bind(s.workspace.0)
        .bind(i64::from(max_per_workspace.max(1)) - 1)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_hash, workspace_id, key_hash, csrf, started_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id_hash)
        .bind(s.workspace.0)
        .bind(&s.key_hash)
        .bind(&s.csrf)
        .bind(micros(s.started_at))
        .bind(micros(s.expires_at))
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
            "SELECT workspace_id, key_hash, csrf, started_at, expires_at FROM dashboard_sessions \
             WHERE id_hash = ? AND expires_at > ?",
        )
        .bind(id_hash)
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.map(|r| -> anyhow::Result<StoredSession> {
            Ok(StoredSession {
                workspace: WorkspaceId(r.try_get("workspace_id")?),
                key_hash: r.try_get("key_hash")?,
                csrf: r.try_get("csrf")?,
                started_at: from_micros(r.try_get("started_at")?)?,
                expires_at: from_micros(r.try_get("expires_at")?)?,
            })
        })
        .transpose()
        .map_err(StoreError::Unexpected)
    }

    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(())
    }

    async fn sweep_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= ?")
            .bind(micros(now))
            .execute(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(done.rows_affected())
    }

    async fn count_sessions(&self, ws: WorkspaceId) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM dashboard_sessions WHERE workspace_id = ?")
                .bind(ws.0)
                .fetch_one(&self.pool)
                .await
                .map_err(unexpected)?;
        Ok(n.max(0) as u64)
    }
}
