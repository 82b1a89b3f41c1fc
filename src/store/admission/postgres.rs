//! [`AdmissionStore`] on PostgreSQL: every query in a transaction scoped to
//! its workspace (row-level security); a change locks the agent's row
//! (`FOR UPDATE`), so concurrent changes of one agent serialise and the
//! later one sees the new version (`Stale`).

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;
use swarmwise_actors::admission::{AdmissionChange, AdmissionRow, ChangeOutcome};
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::ports::{AdmissionStore, StoreError};

use super::{columns, RawAdmission, ADMISSION_COLUMNS};
use crate::store::postgres::PgStore;
use crate::store::unexpected;

/// The `q_` columns of a row (after a LEFT JOIN: `None` when no row).
pub(in crate::store) fn raw_from_row(row: &PgRow) -> Result<Option<RawAdmission>, anyhow::Error> {
    let Some(state) = row.try_get::<Option<String>, _>("q_state")? else {
        return Ok(None);
    };
    Ok(Some(RawAdmission {
        state,
        reason: row.try_get("q_reason")?,
        since: row.try_get("q_since")?,
        alert_id: row.try_get("q_alert_id")?,
        until: row.try_get("q_until")?,
        probations: i64::from(row.try_get::<i32, _>("q_probations")?),
        outcomes_at_start: row.try_get("q_outcomes_at_start")?,
        hold: row.try_get("q_hold")?,
        grace_until: row.try_get("q_grace_until")?,
        actor: row.try_get("q_actor")?,
        version: row.try_get("q_version")?,
    }))
}

fn admission_row(row: &PgRow) -> Result<Option<AdmissionRow>, StoreError> {
    let get = || -> Result<Option<AdmissionRow>, anyhow::Error> {
        let id: String = row.try_get("agent_id")?;
        let Some(raw) = raw_from_row(row)? else {
            return Ok(None);
        };
        let (version, admission) = raw.into_admission()?;
        Ok(Some(AdmissionRow {
            agent_id: AgentId::parse("agent_id", &id)?,
            version,
            admission,
        }))
    };
    get().map_err(StoreError::Unexpected)
}

#[async_trait]
impl AdmissionStore for PgStore {
    async fn admission_workspaces(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT swarmwise_admission_workspaces()")
            .fetch_all(self.pool())
            .await
            .map_err(unexpected)?;
        Ok(ids.into_iter().map(WorkspaceId).collect())
    }

    async fn admissions(&self, ws: WorkspaceId) -> Result<Vec<AdmissionRow>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(&format!(
            "SELECT q.agent_id, {ADMISSION_COLUMNS} FROM agent_quarantine q WHERE q.workspace_id = $1 ORDER BY q.agent_id"
        ))
        .bind(ws.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter()
            .filter_map(|r| admission_row(r).transpose())
            .collect()
    }

    async fn admission(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
    ) -> Result<Option<AdmissionRow>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let row = sqlx::query(&format!(
            "SELECT q.agent_id, {ADMISSION_COLUMNS} FROM agent_quarantine q WHERE q.workspace_id = $1 AND q.agent_id = $2"
        ))
        .bind(ws.0)
        .bind(agent.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        match row {
            Some(r) => admission_row(&r),
            None => Ok(None),
        }
    }

    async fn change_admission(
        &self,
        ws: WorkspaceId,
        change: &AdmissionChange,
    ) -> Result<ChangeOutcome, StoreError> {
        let agent = change.agent_id.as_str();
        let mut tx = self.scoped(ws).await?;
        let enabled: Option<bool> = sqlx::query_scalar(
            "SELECT enabled FROM agents WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(ws.0)
        .bind(agent)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        let Some(enabled) = enabled else {
            return Ok(ChangeOutcome::NotFound);
        };
        if change.require_enabled && !enabled {
            return Ok(ChangeOutcome::Disabled);
        }
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM agent_quarantine WHERE workspace_id = $1 AND agent_id = $2",
        )
        .bind(ws.0)
        .bind(agent)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        if version != change.expected_version {
            return Ok(ChangeOutcome::Stale);
        }
        match &change.next {
            None => {
                sqlx::query(
                    "DELETE FROM agent_quarantine WHERE workspace_id = $1 AND agent_id = $2",
                )
                .bind(ws.0)
                .bind(agent)
                .execute(&mut *tx)
                .await
                .map_err(unexpected)?;
            }
            Some(next) => {
                let c = columns(next, change);
                sqlx::query(
                    "INSERT INTO agent_quarantine (workspace_id, agent_id, state, reason, since, alert_id, \
                     until_at, probations, outcomes_at_start, hold, grace_until_outcomes, actor, version, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now()) \
                     ON CONFLICT (workspace_id, agent_id) DO UPDATE SET state = EXCLUDED.state, \
                     reason = EXCLUDED.reason, since = EXCLUDED.since, alert_id = EXCLUDED.alert_id, \
                     until_at = EXCLUDED.until_at, probations = EXCLUDED.probations, \
                     outcomes_at_start = EXCLUDED.outcomes_at_start, hold = EXCLUDED.hold, \
                     grace_until_outcomes = EXCLUDED.grace_until_outcomes, actor = EXCLUDED.actor, \
                     version = EXCLUDED.version, updated_at = now()",
                )
                .bind(ws.0)
                .bind(agent)
                .bind(c.state)
                .bind(c.reason)
                .bind(c.since)
                .bind(c.alert_id)
                .bind(c.until)
                .bind(i32::try_from(c.probations).unwrap_or(i32::MAX))
                .bind(c.outcomes_at_start)
                .bind(c.hold)
                .bind(c.grace_until)
                .bind(c.actor)
                .bind(version.unwrap_or(0) + 1)
                .execute(&mut *tx)
                .await
                .map_err(unexpected)?;
            }
        }
        if let Some(on) = change.set_enabled {
            sqlx::query(
                "UPDATE agents SET enabled = $3, updated_at = now() WHERE workspace_id = $1 AND id = $2",
            )
            .bind(ws.0)
            .bind(agent)
            .bind(on)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        if let Some(a) = &change.audit {
            sqlx::query(
                "INSERT INTO audit_log (id, at, actor, action, workspace_id, target, details) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(uuid::Uuid::now_v7())
            .bind(a.at)
            .bind(&a.actor)
            .bind(a.action)
            .bind(ws.0)
            .bind(agent)
            .bind(&a.details)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        crate::store::changes::pg_append(
            &mut tx,
            &self.origin,
            ws,
            crate::store::ChangeKind::Admission,
            &[agent.to_owned()],
        )
        .await?;
        tx.commit().await.map_err(unexpected)?;
        Ok(ChangeOutcome::Applied)
    }
}
