//! [`AgentStore`] on PostgreSQL. Every workspace-scoped query runs in a
//! transaction scoped to its workspace (row-level security).

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;
use swarmwise_actors::domain::{Agent, AgentId, WorkspaceId};
use swarmwise_actors::ports::{AgentStore, StoreError};

use crate::store::postgres::PgStore;
use crate::store::unexpected;

fn agent_from_row(row: &PgRow) -> Result<Agent, StoreError> {
    let get = || -> Result<Agent, anyhow::Error> {
        let id: String = row.try_get("id")?;
        let mut agent = Agent {
            id: AgentId::parse("id", &id)?,
            name: row.try_get("name")?,
            kind: row.try_get("kind")?,
            config: row.try_get("config")?,
            enabled: row.try_get("enabled")?,
            created_at: row.try_get("created_at")?,
            quarantine: None,
            override_grace: None,
        };
        let admission = crate::store::admission::postgres::raw_from_row(row)?
            .map(|raw| raw.into_admission().map(|(_, a)| a))
            .transpose()?;
        crate::store::admission::attach(&mut agent, admission);
        Ok(agent)
    };
    get().map_err(StoreError::Unexpected)
}

#[async_trait]
impl AgentStore for PgStore {
    async fn create_agent(&self, ws: WorkspaceId, a: &Agent) -> Result<(), StoreError> {
        let mut tx = self.scoped(ws).await?;
        sqlx::query(
            "INSERT INTO agents (workspace_id, id, name, kind, config, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(ws.0)
        .bind(a.id.as_str())
        .bind(&a.name)
        .bind(&a.kind)
        .bind(&a.config)
        .bind(a.enabled)
        .bind(a.created_at)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        crate::store::changes::pg_append(
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
        let mut tx = self.scoped(ws).await?;
        let row = sqlx::query(&format!(
            "{} WHERE a.workspace_id = $1 AND a.id = $2",
            super::select_agents()
        ))
        .bind(ws.0)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn agents(&self, ws: WorkspaceId) -> Result<Vec<Agent>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(&format!(
            "{} WHERE a.workspace_id = $1 ORDER BY a.id",
            super::select_agents()
        ))
        .bind(ws.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn delete_agent(&self, ws: WorkspaceId, id: &AgentId) -> Result<bool, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let done = sqlx::query("DELETE FROM agents WHERE workspace_id = $1 AND id = $2")
            .bind(ws.0)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        if done.rows_affected() > 0 {
            crate::store::changes::pg_append(
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
        let mut tx = self.scoped(ws).await?;
        sqlx::query(
            "UPDATE agents SET enabled = $3, updated_at = now() WHERE workspace_id = $1 AND id = $2",
        )
        .bind(ws.0)
        .bind(id.as_str())
        .bind(enabled)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        let row = sqlx::query(&format!(
            "{} WHERE a.workspace_id = $1 AND a.id = $2",
            super::select_agents()
        ))
        .bind(ws.0)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        if row.is_some() {
            crate::store::changes::pg_append(
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
