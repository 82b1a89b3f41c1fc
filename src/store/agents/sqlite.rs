//! [`AgentStore`] on SQLite. Every query carries `workspace_id = ?`;
//! times are integer microseconds.

use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use swarmwise_actors::domain::{Agent, AgentId, WorkspaceId};
use swarmwise_actors::ports::{AgentStore, StoreError};

use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

fn agent_from_row(row: &SqliteRow) -> Result<Agent, StoreError> {
    let get = || -> Result<Agent, anyhow::Error> {
        let id: String = row.try_get("id")?;
        let config: String = row.try_get("config")?;
        let mut agent = Agent {
            id: AgentId::parse("id", &id)?,
            name: row.try_get("name")?,
            kind: row.try_get("kind")?,
            config: serde_json::from_str(&config)?,
            enabled: row.try_get("enabled")?,
            created_at: from_micros(row.try_get("created_at")?)?,
            quarantine: None,
            override_grace: None,
        };
        let admission = crate::store::admission::sqlite::raw_from_row(row)?
            .map(|raw| raw.into_admission().map(|(_, a)| a))
            .transpose()?;
        crate::store::admission::attach(&mut agent, admission);
        Ok(agent)
    };
    get().map_err(StoreError::Unexpected)
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn create_agent(&self, ws: WorkspaceId, a: &Agent) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        sqlx::query(
            "INSERT INTO agents (workspace_id, id, name, kind, config, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(ws.0)
        .bind(a.id.as_str())
        .bind(&a.name)
        .bind(&a.kind)
        .bind(a.config.to_string())
        .bind(a.enabled)
        .bind(micros(a.created_at))
        .bind(micros(a.created_at))
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        crate::store::changes::sqlite_append(
            &mut tx,
            &self.origin,
            ws,
            crate::store::ChangeKind::Agents,
            &[a.id.as_str().to_owned()],
        )
        .await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn agent(&self, ws: WorkspaceId, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(&format!(
            "{} WHERE a.workspace_id = ? AND a.id = ?",
            super::select_agents()
        ))
        .bind(ws.0)
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn agents(&self, ws: WorkspaceId) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(&format!(
            "{} WHERE a.workspace_id = ? ORDER BY a.id",
            super::select_agents()
        ))
        .bind(ws.0)
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn delete_agent(&self, ws: WorkspaceId, id: &AgentId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        let done = sqlx::query("DELETE FROM agents WHERE workspace_id = ? AND id = ?")
            .bind(ws.0)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        if done.rows_affected() > 0 {
            crate::store::changes::sqlite_append(
                &mut tx,
                &self.origin,
                ws,
                crate::store::ChangeKind::Agents,
                &[id.as_str().to_owned()],
            )
            .await?;
        }
        tx.commit().await.map_err(unexpected)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_agent_enabled(
        &self,
        ws: WorkspaceId,
        id: &AgentId,
        enabled: bool,
    ) -> Result<Option<Agent>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        sqlx::query(
            "UPDATE agents SET enabled = ?, updated_at = ? WHERE workspace_id = ? AND id = ?",
        )
        .bind(enabled)
        .bind(micros(Utc::now()))
        .bind(ws.0)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        let row = sqlx::query(&format!(
            "{} WHERE a.workspace_id = ? AND a.id = ?",
            super::select_agents()
        ))
        .bind(ws.0)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        if row.is_some() {
            crate::store::changes::sqlite_append(
                &mut tx,
                &self.origin,
                ws,
                crate::store::ChangeKind::Agents,
                &[id.as_str().to_owned()],
            )
            .await?;
        }
        tx.commit().await.map_err(unexpected)?;
        row.as_ref().map(agent_from_row).transpose()
    }
}
