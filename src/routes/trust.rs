//! Trust scores, boosts, per-agent metrics and the CSV export. Reads come
//! from the trust scorer's published snapshot and never wait on its mailbox.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use swarmwise_actors::domain::{to_micros, AgentId, RecommendationStatus};
use swarmwise_actors::ports::TrustRow;
use swarmwise_actors::trust::{TrustCard, WorkspaceSnapshot};

use crate::auth::Workspace;
use crate::error::ApiError;
use crate::startup::AppState;

/// A trust card as the API shows it (DESIGN §4 names plus extras).
#[derive(Debug, Serialize)]
pub struct CardView<'a> {
    agent_id: &'a str,
    agent_name: &'a str,
    #[serde(flatten)]
    card: &'a TrustCard,
}

fn card_of<'a>(snap: &'a WorkspaceSnapshot, id: &AgentId) -> &'a TrustCard {
    snap.agents
        .get(id)
        .map_or(&snap.default_card, |c| &c.overall)
}

/// Every registered agent's card → `{workspace_average, workspace_accuracy, agents}`.
pub async fn list(ws: Workspace, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let snap = state.engine.trust(ws.0);
    let agents = state.store.agents(ws.0).await?;
    let mut names: BTreeMap<AgentId, String> = agents.into_iter().map(|a| (a.id, a.name)).collect();
    for (id, c) in &snap.agents {
        names
            .entry(id.clone())
            .or_insert_with(|| c.agent_name.clone());
    }
    let mut cards: Vec<CardView<'_>> = names
        .iter()
        .map(|(id, name)| CardView {
            agent_id: id.as_str(),
            agent_name: name,
            card: card_of(&snap, id),
        })
        .collect();
    cards.sort_by(|a, b| {
        b.card
            .overall_trust
            .total_cmp(&a.card.overall_trust)
            .then(a.agent_id.cmp(b.agent_id))
    });
    Ok(HttpResponse::Ok().json(json!({
        "workspace_average": snap.workspace_average,
        "workspace_accuracy": snap.workspace_accuracy,
        "agents": cards,
    })))
}

/// One agent's card, its per-type cards and recent history.
pub async fn get(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    let snap = state.engine.trust(ws.0);
    let name = match snap.agents.get(&id) {
        Some(c) => c.agent_name.clone(),
        None => state
            .agent_name(ws.0, &id)
            .await?
            .ok_or_else(|| not_found(&id))?,
    };
    let per_type: Vec<serde_json::Value> = snap
        .agents
        .get(&id)
        .map(|c| {
            c.per_type
                .iter()
                .map(|(t, card)| {
                    let mut v = serde_json::to_value(card).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("recommendation_type".into(), json!(t));
                    }
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    let history = state.store.trust_history(ws.0, &id, 50).await?;
    let mut body = serde_json::to_value(CardView {
        agent_id: id.as_str(),
        agent_name: &name,
        card: card_of(&snap, &id),
    })
    .unwrap_or_default();
    if let Some(o) = body.as_object_mut() {
        o.insert("workspace_average".into(), json!(snap.workspace_average));
        o.insert("per_type".into(), json!(per_type));
        o.insert("history".into(), json!(history));
    }
    Ok(HttpResponse::Ok().json(body))
}

fn not_found(id: &AgentId) -> ApiError {
    ApiError::not_found(
        "agent_not_found",
        format!(
            "agent {:?} is not registered in this workspace and has no outcomes",
            id.as_str()
        ),
    )
}

/// Query of the boost endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoostQuery {
    recommendation_type: Option<String>,
}

/// `{agent_id, recommendation_type, boost, priority}`.
pub async fn boost(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<BoostQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    if state.agent_name(ws.0, &id).await?.is_none() {
        return Err(not_found(&id));
    }
    let t = q.into_inner().recommendation_type;
    let (boost, priority) = state.engine.boost(ws.0, &id, t.as_deref());
    Ok(HttpResponse::Ok().json(json!({
        "agent_id": id,
        "recommendation_type": t,
        "boost": boost,
        "priority": priority,
    })))
}

/// Per-agent counts (all statuses) from the store, by agent.
async fn counts(
    state: &AppState,
    ws: swarmwise_actors::domain::WorkspaceId,
) -> Result<BTreeMap<AgentId, [u64; 5]>, ApiError> {
    let mut out: BTreeMap<AgentId, [u64; 5]> = BTreeMap::new();
    for (agent, status, n) in state.store.status_counts(ws).await? {
        let slot = match status {
            RecommendationStatus::Pending => 0,
            RecommendationStatus::Approved => 1,
            RecommendationStatus::Partial => 2,
            RecommendationStatus::Rejected => 3,
            RecommendationStatus::Expired => 4,
        };
        if let Some(c) = out.entry(agent).or_default().get_mut(slot) {
            *c += n;
        }
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
struct AgentMetrics {
    agent_id: String,
    agent_name: String,
    total_recommendations: u64,
    pending_count: u64,
    approved_count: u64,
    partial_count: u64,
    rejected_count: u64,
    expired_count: u64,
    approval_rate: f64,
    avg_confidence: f64,
    avg_quality: f64,
    strength: serde_json::Value,
    overall_trust: f64,
}

fn metrics_of(id: &AgentId, name: &str, c: [u64; 5], card: &TrustCard) -> AgentMetrics {
    let [pending, approved, partial, rejected, expired] = c;
    AgentMetrics {
        agent_id: id.to_string(),
        agent_name: name.to_owned(),
        total_recommendations: pending + approved + partial + rejected + expired,
        pending_count: pending,
        approved_count: approved,
        partial_count: partial,
        rejected_count: rejected,
        expired_count: expired,
        approval_rate: card.approval_rate,
        avg_confidence: card.avg_confidence,
        avg_quality: card.avg_quality,
        strength: serde_json::to_value(card.strength).unwrap_or_default(),
        overall_trust: card.overall_trust,
    }
}

/// One agent's metrics.
pub async fn agent_metrics(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    let name = state
        .agent_name(ws.0, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    state.engine.flush().await?;
    let all = counts(&state, ws.0).await?;
    let snap = state.engine.trust(ws.0);
    let c = all.get(&id).copied().unwrap_or_default();
    Ok(HttpResponse::Ok().json(metrics_of(&id, &name, c, card_of(&snap, &id))))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// CSV export of every agent's metrics.
pub async fn metrics_csv(
    ws: Workspace,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.engine.flush().await?;
    let all = counts(&state, ws.0).await?;
    let snap = state.engine.trust(ws.0);
    let agents = state.store.agents(ws.0).await?;
    let mut out = String::from(
        "agent_id,agent_name,total_recommendations,pending_count,approved_count,partial_count,rejected_count,expired_count,approval_rate,avg_confidence,avg_quality,strength,overall_trust\n",
    );
    for a in &agents {
        let m = metrics_of(
            &a.id,
            &a.name,
            all.get(&a.id).copied().unwrap_or_default(),
            card_of(&snap, &a.id),
        );
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{:.4},{:.4},{:.2},{},{:.4}",
            csv_field(&m.agent_id),
            csv_field(&m.agent_name),
            m.total_recommendations,
            m.pending_count,
            m.approved_count,
            m.partial_count,
            m.rejected_count,
            m.expired_count,
            m.approval_rate,
            m.avg_confidence,
            m.avg_quality,
            m.strength.as_str().unwrap_or_default(),
            m.overall_trust
        );
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"agent-metrics.csv\"",
        ))
        .body(out))
}

/// Initial trust rows for every registered agent without one (idempotent)
/// → `{initialized, existing}`.
pub async fn initialize(
    ws: Workspace,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let agents = state.store.agents(ws.0).await?;
    let snap = state.engine.trust(ws.0);
    let rows: Vec<TrustRow> = agents
        .iter()
        .map(|a| TrustRow {
            agent_id: a.id.clone(),
            recommendation_type: None,
            card: card_of(&snap, &a.id).clone(),
        })
        .collect();
    let initialized = state
        .store
        .initialize_trust(ws.0, &rows, to_micros(Utc::now()))
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "initialized": initialized,
        "existing": rows.len() as u64 - initialized.min(rows.len() as u64),
    })))
}

/// Recomputes the workspace's trust from stored outcomes → the new average.
pub async fn recompute(
    ws: Workspace,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.engine_enabled()?;
    state.engine.flush().await?;
    state.engine.recompute_trust(Some(ws.0)).await?;
    let snap = state.engine.trust(ws.0);
    Ok(HttpResponse::Ok()
        .json(json!({ "recomputed": true, "workspace_average": snap.workspace_average })))
}
