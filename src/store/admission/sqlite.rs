//! [`AdmissionStore`] on SQLite: every query carries `workspace_id = ?`;
//! times are integer microseconds. A change starts with a write to the
//! agent's row, so its transaction holds the write lock before it reads the
//! version (no lost update, no busy snapshot upgrade).

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use swarmwise_actors::admission::{AdmissionChange, AdmissionRow, ChangeOutcome};
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::ports::{AdmissionStore, StoreError};

use super::{columns, RawAdmission, ADMISSION_COLUMNS};
use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

/// The `q_` columns of a row (after a LEFT JOIN: `None` when no row).
pub(in crate::store) fn raw_from_row(
    row: &SqliteRow,
) -> Result<Option<RawAdmission>, anyhow::Error> {
    let Some(state) = row.try_get::<Option<String>, _>("q_state")? else {
        return Ok(None);
    };
    Ok(Some(RawAdmission {
        state,
        reason: row.try_get("q_reason")?,
        since: from_micros(row.try_get("q_since")?)?,
        alert_id: row.try_get("q_alert_id")?,
        until: row
            .try_get::<Option<i64>, _>("q_until")?
            .map(from_micros)
            .transpose()?,
        probations: row.try_get("q_probations")?,
        outcomes_at_start: row.try_get("q_outcomes_at_start")?,
        hold: row.try_get("q_hold")?,
        grace_until: row.try_get("q_grace_until")?,
        actor: row.try_get("q_actor")?,
        version: row.try_get("q_version")?,
    }))
}

fn admission_row(row: &SqliteRow) -> Result<Option<AdmissionRow>, StoreError> {
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
impl AdmissionStore for SqliteStore {
    async fn admission_workspaces(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT workspace_id FROM agent_quarantine ORDER BY workspace_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(unexpected)?;
        Ok(ids.into_iter().map(WorkspaceId).collect())
    }

    async fn admissions(&self, ws: WorkspaceId) -> Result<Vec<AdmissionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT q.agent_id, {ADMISSION_COLUMNS} FROM agent_quarantine q WHERE q.workspace_id = ? ORDER BY q.agent_id"
        ))
        .bind(ws.0)
        .fetch_all(self.pool())
        .await
        .map_err(unexpected)?;
        rows.iter()
            .filter_map(|r| admission_row(r).transpose())
            .collect()
    }

    async fn admission(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
    ) -> Result<Option<AdmissionRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT q.agent_id, {ADMISSION_COLUMNS} FROM agent_quarantine q WHERE q.workspace_id = ? AND q.agent_id = ?"
        ))
        .bind(ws.0)
        .bind(agent.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(unexpected)?;
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
        let mut tx = self.pool().begin().await.map_err(unexpected)?;
        // A write first: the transaction takes the write lock before it reads.
        let touched = sqlx::query(
            "UPDATE agents SET updated_at = updated_at WHERE workspace_id = ? AND id = ?",
        )
        .bind(ws.0)
        .bind(agent)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        if touched.rows_affected() == 0 {
            return Ok(ChangeOutcome::NotFound);
        }
        let enabled: bool =
            sqlx::query_scalar("SELECT enabled FROM agents WHERE workspace_id = ? AND id = ?")
                .bind(ws.0)
                .bind(agent)
                .fetch_one(&mut *tx)
                .await
                .map_err(unexpected)?;
        if change.require_enabled && !enabled {
            return Ok(ChangeOutcome::Disabled);
        }
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM agent_quarantine WHERE workspace_id = ? AND agent_id = ?",
        )
        .bind(ws.0)
        .bind(agent)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        if version != change.expected_version {
            return Ok(ChangeOutcome::Stale);
        }
        let now = micros(chrono::Utc::now());
        match &change.next {
            None => {
                sqlx::query("DELETE FROM agent_quarantine WHERE workspace_id = ? AND agent_id = ?")
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
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (workspace_id, agent_id) DO UPDATE SET state = excluded.state, \
                     reason = excluded.reason, since = excluded.since, alert_id = excluded.alert_id, \
                     until_at = excluded.until_at, probations = excluded.probations, \
                     outcomes_at_start = excluded.outcomes_at_start, hold = excluded.hold, \
                     grace_until_outcomes = excluded.grace_until_outcomes, actor = excluded.actor, \
                     version = excluded.version, updated_at = excluded.updated_at",
                )
                .bind(ws.0)
                .bind(agent)
                .bind(c.state)
                .bind(c.reason)
                .bind(micros(c.since))
                .bind(c.alert_id)
                .bind(c.until.map(micros))
                .bind(c.probations)
                .bind(c.outcomes_at_start)
                .bind(c.hold)
                .bind(c.grace_until)
                .bind(c.actor)
                .bind(version.unwrap_or(0) + 1)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(unexpected)?;
            }
        }
        if let Some(on) = change.set_enabled {
            sqlx::query(
                "UPDATE agents SET enabled = ?, updated_at = ? WHERE workspace_id = ? AND id = ?",
            )
            .bind(on)
            .bind(now)
            .bind(ws.0)
            .bind(agent)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        if let Some(a) = &change.audit {
            sqlx::query(
                "INSERT INTO audit_log (id, at, actor, action, workspace_id, target, details) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(uuid::Uuid::now_v7())
            .bind(micros(a.at))
            .bind(&a.actor)
            .bind(a.action)
            .bind(ws.0)
            .bind(agent)
            .bind(a.details.to_string())
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        crate::store::changes::sqlite_append(
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
