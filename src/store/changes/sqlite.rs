//! [`ChangeFeed`] on SQLite: writers are serialised, so rows commit in
//! `seq` order and the position is `seq` alone (`txid` stays 0).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, Transaction};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::StoreError;

use super::{parse_agents, Change, ChangeFeed, ChangeKind, FeedPosition};
use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

/// Appends a feed row inside `tx`, so it commits with the change it
/// announces; returns its seq.
pub(crate) async fn append(
    tx: &mut Transaction<'static, Sqlite>,
    origin: &str,
    ws: WorkspaceId,
    kind: ChangeKind,
    agents: &[String],
) -> Result<i64, StoreError> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO change_feed (workspace_id, origin, kind, agents, at) VALUES (?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(ws.0)
    .bind(origin)
    .bind(kind.as_str())
    .bind(serde_json::to_string(agents).unwrap_or_else(|_| "[]".into()))
    .bind(micros(Utc::now()))
    .fetch_one(&mut **tx)
    .await
    .map_err(unexpected)?;
    Ok(seq)
}

#[async_trait]
impl ChangeFeed for SqliteStore {
    fn origin(&self) -> &str {
        &self.origin
    }

    async fn feed_head(&self) -> Result<FeedPosition, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM change_feed")
            .fetch_one(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(FeedPosition {
            txid: 0,
            seq: seq.unwrap_or(0),
        })
    }

    async fn feed_since(&self, after: FeedPosition, limit: u32) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, workspace_id, origin, kind, agents, at FROM change_feed WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after.seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                let get = || -> Result<Change, anyhow::Error> {
                    let kind: String = r.try_get("kind")?;
                    let agents: String = r.try_get("agents")?;
                    Ok(Change {
                        position: FeedPosition {
                            txid: 0,
                            seq: r.try_get("seq")?,
                        },
                        workspace: WorkspaceId(r.try_get("workspace_id")?),
                        origin: r.try_get("origin")?,
                        kind: ChangeKind::parse(&kind),
                        agents: parse_agents(serde_json::from_str(&agents).unwrap_or_default()),
                        at: from_micros(r.try_get("at")?)?,
                    })
                };
                get().map_err(StoreError::Unexpected)
            })
            .collect()
    }

    async fn prune_feed(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM change_feed WHERE at < ?")
            .bind(micros(before))
            .execute(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(done.rows_affected())
    }
}
