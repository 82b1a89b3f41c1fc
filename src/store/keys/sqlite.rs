//! [`KeyStore`] on SQLite: every query names the workspace; times are
//! integer microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::{StoreError, WorkspaceStore};
use uuid::Uuid;

use super::{ApiKeyInfo, AuditEntry, AuditFilter, KeyChange, KeyStore, WorkspaceInfo};
use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::{unexpected, NewApiKey};

fn key_from_row(row: &SqliteRow) -> Result<ApiKeyInfo, StoreError> {
    let get = || -> anyhow::Result<ApiKeyInfo> {
        Ok(ApiKeyInfo {
            id: row.try_get("id")?,
            prefix: row.try_get("prefix")?,
            created_at: from_micros(row.try_get("created_at")?)?,
            revoked_at: row
                .try_get::<Option<i64>, _>("revoked_at")?
                .map(from_micros)
                .transpose()?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn workspace_from_row(row: &SqliteRow) -> Result<WorkspaceInfo, StoreError> {
    let get = || -> anyhow::Result<WorkspaceInfo> {
        Ok(WorkspaceInfo {
            id: WorkspaceId(row.try_get("id")?),
            name: row.try_get("name")?,
            created_at: from_micros(row.try_get("created_at")?)?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

async fn find_key(
    tx: &mut Transaction<'static, Sqlite>,
    ws: WorkspaceId,
    key_id: Uuid,
) -> Result<Option<ApiKeyInfo>, StoreError> {
    let row = sqlx::query(
        "SELECT id, prefix, created_at, revoked_at FROM api_keys WHERE workspace_id = ? AND id = ?",
    )
    .bind(ws.0)
    .bind(key_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(unexpected)?;
    row.as_ref().map(key_from_row).transpose()
}

/// Revokes `key_id` if still valid; what it found.
async fn revoke_in(
    tx: &mut Transaction<'static, Sqlite>,
    ws: WorkspaceId,
    key_id: Uuid,
    at: DateTime<Utc>,
) -> Result<KeyChange, StoreError> {
    // The UPDATE first: it takes SQLite's write lock, so two revocations
    // (or rotations) of one key cannot both succeed.
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = ? WHERE workspace_id = ? AND id = ? AND revoked_at IS NULL",
    )
    .bind(micros(at))
    .bind(ws.0)
    .bind(key_id)
    .execute(&mut **tx)
    .await
    .map_err(unexpected)?
    .rows_affected()
        == 1;
    Ok(match find_key(tx, ws, key_id).await? {
        None => KeyChange::NotFound,
        Some(k) if done => KeyChange::Done(k),
        Some(k) => KeyChange::AlreadyRevoked(k),
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_workspace(
        &self,
        ws: WorkspaceId,
        name: &str,
        key: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)")
            .bind(ws.0)
            .bind(name)
            .bind(micros(at))
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        insert_key(&mut tx, ws, key, at).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn add_api_key(
        &self,
        ws: WorkspaceId,
        key: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        insert_key(&mut tx, ws, key, at).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn workspace_for_key(&self, key_hash: &str) -> Result<Option<WorkspaceId>, StoreError> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT workspace_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        Ok(id.map(WorkspaceId))
    }

    async fn workspaces(
        &self,
        after: Option<WorkspaceId>,
        limit: u32,
    ) -> Result<Vec<WorkspaceInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM workspaces WHERE (? IS NULL OR id > ?) ORDER BY id LIMIT ?",
        )
        .bind(after.map(|w| w.0))
        .bind(after.map(|w| w.0))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(unexpected)?;
        rows.iter().map(workspace_from_row).collect()
    }

    async fn workspace(&self, ws: WorkspaceId) -> Result<Option<WorkspaceInfo>, StoreError> {
        let row = sqlx::query("SELECT id, name, created_at FROM workspaces WHERE id = ?")
            .bind(ws.0)
            .fetch_optional(self.pool())
            .await
            .map_err(unexpected)?;
        row.as_ref().map(workspace_from_row).transpose()
    }

    async fn api_keys(&self, ws: WorkspaceId) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, prefix, created_at, revoked_at FROM api_keys WHERE workspace_id = ? ORDER BY created_at, id",
        )
        .bind(ws.0)
        .fetch_all(self.pool())
        .await
        .map_err(unexpected)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_api_key(
        &self,
        ws: WorkspaceId,
        key_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<KeyChange, StoreError> {
        let mut tx = self.pool().begin().await.map_err(unexpected)?;
        let change = revoke_in(&mut tx, ws, key_id, at).await?;
        if matches!(change, KeyChange::Done(_)) {
            crate::store::changes::sqlite_append(
                &mut tx,
                &self.origin,
                ws,
                crate::store::ChangeKind::Keys,
                &[],
            )
            .await?;
        }
        tx.commit().await.map_err(unexpected)?;
        Ok(change)
    }

    async fn rotate_api_key(
        &self,
        ws: WorkspaceId,
        key_id: Uuid,
        new: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<KeyChange, StoreError> {
        let mut tx = self.pool().begin().await.map_err(unexpected)?;
        let change = revoke_in(&mut tx, ws, key_id, at).await?;
        if matches!(change, KeyChange::Done(_)) {
            insert_key(&mut tx, ws, new, at).await?;
        }
        if matches!(change, KeyChange::Done(_)) {
            crate::store::changes::sqlite_append(
                &mut tx,
                &self.origin,
                ws,
                crate::store::ChangeKind::Keys,
                &[],
            )
            .await?;
        }
        tx.commit().await.map_err(unexpected)?;
        Ok(change)
    }

    async fn insert_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, workspace_id, target, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.id)
        .bind(micros(e.at))
        .bind(&e.actor)
        .bind(&e.action)
        .bind(e.workspace_id.map(|w| w.0))
        .bind(&e.target)
        .bind(e.details.to_string())
        .execute(self.pool())
        .await
        .map_err(unexpected)?;
        Ok(())
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT id, at, actor, action, workspace_id, target, details FROM audit_log WHERE 1 = 1",
        );
        if let Some(ws) = f.workspace_id {
            q.push(" AND workspace_id = ").push_bind(ws.0);
        }
        if let Some(action) = &f.action {
            q.push(" AND action = ").push_bind(action.clone());
        }
        if let Some(target) = &f.target {
            q.push(" AND target = ").push_bind(target.clone());
        }
        if let Some(before) = f.before {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(self.pool()).await.map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                let get = || -> anyhow::Result<AuditEntry> {
                    let details: String = r.try_get("details")?;
                    Ok(AuditEntry {
                        id: r.try_get("id")?,
                        at: from_micros(r.try_get("at")?)?,
                        actor: r.try_get("actor")?,
                        action: r.try_get("action")?,
                        workspace_id: r
                            .try_get::<Option<Uuid>, _>("workspace_id")?
                            .map(WorkspaceId),
                        target: r.try_get("target")?,
                        details: serde_json::from_str(&details)?,
                    })
                };
                get().map_err(StoreError::Unexpected)
            })
            .collect()
    }
}

async fn insert_key(
    tx: &mut Transaction<'static, Sqlite>,
    ws: WorkspaceId,
    key: &NewApiKey,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO api_keys (id, workspace_id, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(key.id)
        .bind(ws.0)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(micros(at))
        .execute(&mut **tx)
        .await
        .map_err(unexpected)?;
    Ok(())
}

#[async_trait]
impl WorkspaceStore for SqliteStore {
    async fn workspace_ids(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM workspaces ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(ids.into_iter().map(WorkspaceId).collect())
    }
}
