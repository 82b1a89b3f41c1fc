//! Trust scores, boosts, per-agent metrics and the CSV export. Reads come
//! from the trust scorer's published snapshot and never wait on its mailbox.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use swarmwise_actors::domain::{to_micros, AgentId, Priority, RecommendationStatus, WorkspaceId};
use swarmwise_actors::ports::{AgentUsage, TrustHistoryPoint, TrustRow};
use swarmwise_actors::trust::{Strength, TrustCard, WorkspaceSnapshot};

use crate::auth::Workspace;
use crate::error::{ApiError, ErrorBody};
use crate::routes::agents::agent_not_found;
use crate::state::AppState;

/// A trust card as the API shows it (DESIGN §4 names plus extras).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CardView {
    /// The agent.
    pub agent_id: String,
    /// Its display name.
    pub agent_name: String,
    /// Every score.
    #[serde(flatten)]
    pub card: TrustCard,
}

/// `GET /learning/trust-scores` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrustScores {
    /// Mean overall trust of agents with outcomes (0 if none).
    pub workspace_average: f64,
    /// Pooled decayed approval rate: every agent's prior mean.
    pub workspace_accuracy: f64,
    /// Every registered agent (and any with outcomes), best first.
    pub agents: Vec<CardView>,
}

/// A card for one recommendation type.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TypeCard {
    /// The type.
    pub recommendation_type: String,
    /// Every score for that type.
    #[serde(flatten)]
    pub card: TrustCard,
}

/// `GET /learning/trust-scores/{agent_id}` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentTrust {
    /// The agent's overall card.
    #[serde(flatten)]
    pub card: CardView,
    /// The workspace's average overall trust.
    pub workspace_average: f64,
    /// Cards per recommendation type.
    pub per_type: Vec<TypeCard>,
    /// Recent history of overall trust, newest first.
    pub history: Vec<TrustHistoryPoint>,
}

/// Boost of an agent on a type.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BoostAnswer {
    /// The agent.
    pub agent_id: String,
    /// The type asked about (null: the agent overall).
    pub recommendation_type: Option<String>,
    /// In [-0.5, +0.5]; 0 for an agent without history.
    pub boost: f64,
    /// What a NORMAL task of this agent and type is scheduled as.
    pub priority: Priority,
}

/// Counts and rates of one agent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentMetrics {
    /// The agent.
    pub agent_id: String,
    /// Its name.
    pub agent_name: String,
    /// Every tracked recommendation.
    pub total_recommendations: u64,
    /// Not yet evaluated.
    pub pending_count: u64,
    /// Approved.
    pub approved_count: u64,
    /// Partial.
    pub partial_count: u64,
    /// Rejected.
    pub rejected_count: u64,
    /// Expired.
    pub expired_count: u64,
    /// Approved / evaluated.
    pub approval_rate: f64,
    /// Mean stated confidence of evaluated recommendations.
    pub avg_confidence: f64,
    /// Mean outcome quality.
    pub avg_quality: f64,
    /// Weak … very_strong.
    pub strength: Strength,
    /// Overall trust.
    pub overall_trust: f64,
    /// Failed executions recorded against it (errors + timeouts + invalid answers).
    pub failure_count: u64,
    /// Backend errors.
    pub error_count: u64,
    /// No answer before the stage deadline.
    pub timeout_count: u64,
    /// Answers that were not `{content, confidence, reasoning?}` or broke a rule.
    pub invalid_count: u64,
    /// 1 − failure rate (posterior, decayed).
    pub reliability: f64,
    /// Prompt (input) tokens of its recommendations, where known.
    pub prompt_tokens: u64,
    /// Completion (output) tokens of its recommendations, where known.
    pub completion_tokens: u64,
    /// Cost of its priced recommendations, USD (`GET /learning/costs`
    /// says how many were unpriced).
    pub cost_usd: f64,
}

/// `POST /learning/debug/initialize-trust-scores` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Initialized {
    /// Rows created now.
    pub initialized: u64,
    /// Agents that had a row already.
    pub existing: u64,
}

/// `POST /learning/trust/recompute` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Recomputed {
    /// Always true.
    pub recomputed: bool,
    /// The new workspace average.
    pub workspace_average: f64,
}

fn card_of<'a>(snap: &'a WorkspaceSnapshot, id: &AgentId) -> &'a TrustCard {
    snap.agents
        .get(id)
        .map_or(&snap.default_card, |c| &c.overall)
}

fn view(snap: &WorkspaceSnapshot, id: &AgentId, name: &str) -> CardView {
    CardView {
        agent_id: id.to_string(),
        agent_name: name.to_owned(),
        card: card_of(snap, id).clone(),
    }
}

/// Every registered agent's card → `{workspace_average, workspace_accuracy, agents}`.
#[utoipa::path(get, path = "/api/v1/learning/trust-scores", tag = "trust",
    responses((status = 200, body = TrustScores), (status = 401, description = "missing or unknown API key", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(ws: Workspace, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(scores(&state, ws.0).await?))
}

/// Every registered agent's card, best first (the list endpoint and the
/// dashboard's trust page show the same values).
pub(crate) async fn scores(state: &AppState, ws: WorkspaceId) -> Result<TrustScores, ApiError> {
    let snap = state.engine.trust(ws);
    let agents = state.store.agents(ws).await?;
    let mut names: BTreeMap<AgentId, String> = agents.into_iter().map(|a| (a.id, a.name)).collect();
    for (id, c) in &snap.agents {
        names
            .entry(id.clone())
            .or_insert_with(|| c.agent_name.clone());
    }
    let mut agents: Vec<CardView> = names
        .iter()
        .map(|(id, name)| view(&snap, id, name))
        .collect();
    agents.sort_by(|a, b| {
        b.card
            .overall_trust
            .total_cmp(&a.card.overall_trust)
            .then_with(|| a.agent_id.cmp(&b.agent_id))
    });
    Ok(TrustScores {
        workspace_average: snap.workspace_average,
        workspace_accuracy: snap.workspace_accuracy,
        agents,
    })
}

/// One agent's card, its per-type cards and recent history.
#[utoipa::path(get, path = "/api/v1/learning/trust-scores/{agent_id}", tag = "trust", params(("agent_id" = String, Path)),
    responses((status = 200, body = AgentTrust), (status = 404, description = "agent not registered in this workspace", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    Ok(HttpResponse::Ok().json(agent_trust(&state, ws.0, &id).await?))
}

/// One agent's card, per-type cards and history; 404 for an agent this
/// workspace has neither registered nor scored.
pub(crate) async fn agent_trust(
    state: &AppState,
    ws: WorkspaceId,
    id: &AgentId,
) -> Result<AgentTrust, ApiError> {
    let id = id.clone();
    let snap = state.engine.trust(ws);
    let name = match snap.agents.get(&id) {
        Some(c) => c.agent_name.clone(),
        None => state
            .agent_name(ws, &id)
            .await?
            .ok_or_else(|| agent_not_found(&id))?,
    };
    let per_type = snap
        .agents
        .get(&id)
        .map(|c| {
            c.per_type
                .iter()
                .map(|(t, card)| TypeCard {
                    recommendation_type: t.clone(),
                    card: card.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let history = state.store.trust_history(ws, &id, 50).await?;
    Ok(AgentTrust {
        card: view(&snap, &id, &name),
        workspace_average: snap.workspace_average,
        per_type,
        history,
    })
}

/// Query of the boost endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BoostQuery {
    /// The task's recommendation type; absent: the agent overall.
    recommendation_type: Option<String>,
}

/// `{agent_id, recommendation_type, boost, priority}`.
#[utoipa::path(get, path = "/api/v1/learning/agents/{agent_id}/boost", tag = "trust", params(("agent_id" = String, Path), BoostQuery),
    responses((status = 200, body = BoostAnswer), (status = 404, description = "agent not registered in this workspace", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn boost(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: crate::extract::Query<BoostQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    if state.agent_name(ws.0, &id).await?.is_none() {
        return Err(agent_not_found(&id));
    }
    let t = q.into_inner().recommendation_type;
    let (boost, priority) = state.engine.boost(ws.0, &id, t.as_deref());
    Ok(HttpResponse::Ok().json(BoostAnswer {
        agent_id: id.to_string(),
        recommendation_type: t,
        boost,
        priority,
    }))
}

/// Per-agent counts (all statuses) from the store:
/// [pending, approved, partial, rejected, expired].
async fn counts(
    state: &AppState,
    ws: WorkspaceId,
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

/// Token and cost totals per agent (all time), from the store.
async fn usage(
    state: &AppState,
    ws: WorkspaceId,
) -> Result<BTreeMap<AgentId, AgentUsage>, ApiError> {
    Ok(state
        .store
        .usage_totals(ws, None, None)
        .await?
        .into_iter()
        .map(|u| (u.agent_id.clone(), u))
        .collect())
}

fn metrics_of(
    id: &AgentId,
    name: &str,
    c: [u64; 5],
    card: &TrustCard,
    usage: Option<&AgentUsage>,
) -> AgentMetrics {
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
        strength: card.strength,
        overall_trust: card.overall_trust,
        failure_count: card.failure_count,
        error_count: card.error_count,
        timeout_count: card.timeout_count,
        invalid_count: card.invalid_count,
        reliability: card.reliability,
        prompt_tokens: usage.map_or(0, |u| u.prompt_tokens),
        completion_tokens: usage.map_or(0, |u| u.completion_tokens),
        cost_usd: usage.map_or(0.0, |u| u.cost_usd),
    }
}

/// One agent's metrics.
#[utoipa::path(get, path = "/api/v1/learning/agents/{agent_id}/metrics", tag = "trust", params(("agent_id" = String, Path)),
    responses((status = 200, body = AgentMetrics), (status = 404, description = "agent not registered in this workspace", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn agent_metrics(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    let name = state
        .agent_name(ws.0, &id)
        .await?
        .ok_or_else(|| agent_not_found(&id))?;
    state.engine.flush_workspace(ws.0).await?;
    let all = counts(&state, ws.0).await?;
    let snap = state.engine.trust(ws.0);
    let c = all.get(&id).copied().unwrap_or_default();
    let used = usage(&state, ws.0).await?;
    Ok(HttpResponse::Ok().json(metrics_of(
        &id,
        &name,
        c,
        card_of(&snap, &id),
        used.get(&id),
    )))
}

/// A CSV field (RFC 4180 quoting). A text that a spreadsheet would read as
/// a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading `'`, so a
/// tenant-chosen agent name cannot run in the operator's spreadsheet (OWASP
/// "CSV injection").
pub(crate) fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// CSV export of every agent's metrics.
#[utoipa::path(get, path = "/api/v1/learning/agents/metrics.csv", tag = "trust",
    responses((status = 200, description = "one row per registered agent, with a header", content_type = "text/csv")),
    security(("api_key" = [])))]
pub async fn metrics_csv(
    ws: Workspace,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"agent-metrics.csv\"",
        ))
        .body(metrics_csv_text(&state, ws.0).await?))
}

/// The CSV of every agent's metrics (the API's export and the dashboard's).
pub(crate) async fn metrics_csv_text(
    state: &AppState,
    ws: WorkspaceId,
) -> Result<String, ApiError> {
    state.engine.flush_workspace(ws).await?;
    let all = counts(state, ws).await?;
    let snap = state.engine.trust(ws);
    let agents = state.store.agents(ws).await?;
    let mut out = String::from(
        "agent_id,agent_name,total_recommendations,pending_count,approved_count,partial_count,rejected_count,\
         expired_count,approval_rate,avg_confidence,avg_quality,strength,overall_trust,\
         error_count,timeout_count,invalid_count,reliability,prompt_tokens,completion_tokens,cost_usd\n",
    );
    let used = usage(state, ws).await?;
    for a in &agents {
        let m = metrics_of(
            &a.id,
            &a.name,
            all.get(&a.id).copied().unwrap_or_default(),
            card_of(&snap, &a.id),
            used.get(&a.id),
        );
        let strength = serde_json::to_value(m.strength).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{:.4},{:.4},{:.2},{},{:.4},{},{},{},{:.4},{},{},{}",
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
            strength.as_str().unwrap_or_default(),
            m.overall_trust,
            m.error_count,
            m.timeout_count,
            m.invalid_count,
            m.reliability,
            m.prompt_tokens,
            m.completion_tokens,
            m.cost_usd
        );
    }
    Ok(out)
}

/// Initial trust rows for every registered agent without one (idempotent)
/// → `{initialized, existing}`.
#[utoipa::path(post, path = "/api/v1/learning/debug/initialize-trust-scores", tag = "trust",
    responses((status = 200, body = Initialized)), security(("api_key" = [])))]
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
    Ok(HttpResponse::Ok().json(Initialized {
        initialized,
        existing: (rows.len() as u64).saturating_sub(initialized),
    }))
}

/// Recomputes the workspace's trust from stored outcomes → the new average.
#[utoipa::path(post, path = "/api/v1/learning/trust/recompute", tag = "trust",
    responses((status = 200, body = Recomputed), (status = 503, description = "learning disabled", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn recompute(
    ws: Workspace,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.engine_enabled()?;
    state.engine.flush_workspace(ws.0).await?;
    state.engine.recompute_trust(Some(ws.0)).await?;
    let snap = state.engine.trust(ws.0);
    Ok(HttpResponse::Ok().json(Recomputed {
        recomputed: true,
        workspace_average: snap.workspace_average,
    }))
}
