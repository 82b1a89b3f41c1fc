//! [`AlertStore`] on PostgreSQL. A workspace scope sets `app.workspace_id`;
//! the admin scope sets `app.alerts_admin = 'on'` (both transaction-local),
//! which the tables' policies read.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use swarmwise_actors::alerts::{Alert, Silence};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::{AlertFilter, AlertInsert, AlertScope, AlertStore, StoreError};
use uuid::Uuid;

use super::{severity_of, status_name, status_of, ALERT_COLUMNS, SILENCE_COLUMNS};
use crate::store::postgres::{set_workspace, PgStore};
use crate::store::unexpected;

impl PgStore {
    async fn alert_tx(
        &self,
        scope: AlertScope,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        match scope {
            AlertScope::Workspace(ws) => set_workspace(&mut tx, ws).await?,
            AlertScope::Admin => {
                sqlx::query("SELECT set_config('app.alerts_admin', 'on', true)")
                    .execute(&mut *tx)
                    .await
                    .map_err(unexpected)?;
            }
        }
        Ok(tx)
    }
}

fn alert_row(r: &PgRow) -> Result<Alert, StoreError> {
    let get = || -> anyhow::Result<Alert> {
        let ws: Option<Uuid> = r.try_get("workspace_id")?;
        let severity: String = r.try_get("severity")?;
        let status: String = r.try_get("status")?;
        Ok(Alert {
            id: r.try_get("id")?,
            workspace_id: ws.map(WorkspaceId),
            rule: r.try_get("rule")?,
            severity: severity_of(&severity)?,
            subject: r.try_get("subject")?,
            fingerprint: r.try_get("fingerprint")?,
            status: status_of(&status)?,
            value: r.try_get("value")?,
            threshold: r.try_get("threshold")?,
            summary: r.try_get("summary")?,
            action: r.try_get("action")?,
            started_at: r.try_get("started_at")?,
            fired_at: r.try_get("fired_at")?,
            resolved_at: r.try_get("resolved_at")?,
            acked_at: r.try_get("acked_at")?,
            acked_by: r.try_get("acked_by")?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn silence_row(r: &PgRow) -> Result<Silence, StoreError> {
    let get = || -> anyhow::Result<Silence> {
        let ws: Option<Uuid> = r.try_get("workspace_id")?;
        let severity: Option<String> = r.try_get("severity")?;
        Ok(Silence {
            id: r.try_get("id")?,
            workspace_id: ws.map(WorkspaceId),
            rule: r.try_get("rule")?,
            subject: r.try_get("subject")?,
            severity: severity.as_deref().map(severity_of).transpose()?,
            starts_at: r.try_get("starts_at")?,
            ends_at: r.try_get("ends_at")?,
            created_by: r.try_get("created_by")?,
            comment: r.try_get("comment")?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

#[async_trait]
impl AlertStore for PgStore {
    async fn insert_alert(&self, a: &Alert) -> Result<AlertInsert, StoreError> {
        let mut tx = self.alert_tx(AlertScope::of(a.workspace_id)).await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (fingerprint) WHERE status = 'firing' DO NOTHING"
        ))
        .bind(a.id)
        .bind(a.workspace_id.map(|w| w.0))
        .bind(&a.rule)
        .bind(a.severity.as_str())
        .bind(&a.subject)
        .bind(&a.fingerprint)
        .bind(status_name(a.status))
        .bind(a.value)
        .bind(a.threshold)
        .bind(&a.summary)
        .bind(&a.action)
        .bind(a.started_at)
        .bind(a.fired_at)
        .bind(a.resolved_at)
        .bind(a.acked_at)
        .bind(&a.acked_by)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?
        .rows_affected();
        let result = if inserted == 1 {
            AlertInsert::Inserted
        } else {
            let row = sqlx::query(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE fingerprint = $1 AND status = 'firing'"
            ))
            .bind(&a.fingerprint)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unexpected)?;
            match row {
                Some(r) => AlertInsert::AlreadyFiring(Box::new(alert_row(&r)?)),
                None => {
                    return Err(StoreError::Conflict(format!(
                        "alert {} exists already",
                        a.id
                    )))
                }
            }
        };
        tx.commit().await.map_err(unexpected)?;
        Ok(result)
    }

    async fn resolve_alert(&self, a: &Alert) -> Result<bool, StoreError> {
        let mut tx = self.alert_tx(AlertScope::of(a.workspace_id)).await?;
        let n = sqlx::query("UPDATE alerts SET status = 'resolved', resolved_at = $2, value = $3 WHERE id = $1 AND status = 'firing'")
            .bind(a.id)
            .bind(a.resolved_at.unwrap_or_else(Utc::now))
            .bind(a.value)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n == 1)
    }

    async fn firing_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let mut tx = self.alert_tx(AlertScope::Admin).await?;
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE status = 'firing' ORDER BY id"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(alert_row).collect()
    }

    async fn alert(&self, scope: AlertScope, id: Uuid) -> Result<Option<Alert>, StoreError> {
        let mut tx = self.alert_tx(scope).await?;
        let row = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 AND ($2::uuid IS NULL OR workspace_id = $2)"
        ))
        .bind(id)
        .bind(scope_ws(scope))
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        row.as_ref().map(alert_row).transpose()
    }

    async fn list_alerts(
        &self,
        scope: AlertScope,
        f: &AlertFilter,
    ) -> Result<Vec<Alert>, StoreError> {
        let mut tx = self.alert_tx(scope).await?;
        let ws = scope_ws(scope).or(f.workspace.map(|w| w.0));
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE ($1::uuid IS NULL OR workspace_id = $1) \
             AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR severity = $3) \
             AND ($4::text IS NULL OR rule = $4) AND ($5::text IS NULL OR subject = $5) \
             AND ($6::uuid IS NULL OR id < $6) ORDER BY id DESC LIMIT $7"
        ))
        .bind(ws)
        .bind(f.status.map(status_name))
        .bind(f.severity.map(|s| s.as_str()))
        .bind(&f.rule)
        .bind(&f.subject)
        .bind(f.before)
        .bind(i64::from(f.limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(alert_row).collect()
    }

    async fn ack_alert(
        &self,
        scope: AlertScope,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Alert>, StoreError> {
        let mut tx = self.alert_tx(scope).await?;
        let row = sqlx::query(&format!(
            "UPDATE alerts SET acked_at = COALESCE(acked_at, $3), acked_by = COALESCE(acked_by, $4) \
             WHERE id = $1 AND ($2::uuid IS NULL OR workspace_id = $2) RETURNING {ALERT_COLUMNS}"
        ))
        .bind(id)
        .bind(scope_ws(scope))
        .bind(at)
        .bind(by)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        row.as_ref().map(alert_row).transpose()
    }

    async fn purge_alerts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.alert_tx(AlertScope::Admin).await?;
        let n = sqlx::query("DELETE FROM alerts WHERE status = 'resolved' AND resolved_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }

    async fn insert_silence(&self, s: &Silence) -> Result<(), StoreError> {
        let mut tx = self.alert_tx(AlertScope::of(s.workspace_id)).await?;
        sqlx::query(&format!(
            "INSERT INTO alert_silences ({SILENCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(s.id)
        .bind(s.workspace_id.map(|w| w.0))
        .bind(&s.rule)
        .bind(&s.subject)
        .bind(s.severity.map(|v| v.as_str()))
        .bind(s.starts_at)
        .bind(s.ends_at)
        .bind(&s.created_by)
        .bind(&s.comment)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)
    }

    async fn silences(
        &self,
        scope: AlertScope,
        now: Option<DateTime<Utc>>,
    ) -> Result<Vec<Silence>, StoreError> {
        let mut tx = self.alert_tx(scope).await?;
        let rows = sqlx::query(&format!(
            "SELECT {SILENCE_COLUMNS} FROM alert_silences WHERE ($1::uuid IS NULL OR workspace_id = $1) \
             AND ($2::timestamptz IS NULL OR ends_at > $2) ORDER BY id DESC"
        ))
        .bind(scope_ws(scope))
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(silence_row).collect()
    }

    async fn delete_silence(&self, scope: AlertScope, id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.alert_tx(scope).await?;
        let n = sqlx::query(
            "DELETE FROM alert_silences WHERE id = $1 AND ($2::uuid IS NULL OR workspace_id = $2)",
        )
        .bind(id)
        .bind(scope_ws(scope))
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?
        .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n == 1)
    }
}

/// The workspace a scope is limited to (the SQL filter beside the policy).
fn scope_ws(scope: AlertScope) -> Option<Uuid> {
    match scope {
        AlertScope::Workspace(ws) => Some(ws.0),
        AlertScope::Admin => None,
    }
}
