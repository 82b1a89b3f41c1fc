//! Recommendations: track (one, batch), list, read, feedback, and the
//! workflow outcome that evaluates them.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use swarmwise_actors::domain::{
    storable_json, storable_text, to_micros, AgentId, Confidence, ParseError, QualityScore,
    Recommendation, RecommendationFilter, RecommendationStatus, Verdict, WorkspaceId,
};
use swarmwise_actors::tracker::{Evaluate, ExplicitVerdict, Feedback};
use uuid::Uuid;

use crate::auth::Workspace;
use crate::error::{ApiError, ErrorCode};
use crate::extract::Body;
use crate::state::AppState;

/// One recommendation to track (DESIGN §4).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackRequest {
    /// A registered agent.
    pub agent_id: String,
    /// Defaults to the registered name.
    #[serde(default)]
    pub agent_name: Option<String>,
    /// Ties recommendations of one request together.
    pub correlation_id: String,
    /// The workflow whose outcome will judge it.
    pub workflow_id: String,
    /// strategy, content, risk, ...
    pub recommendation_type: String,
    /// The recommendation, any JSON.
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
    /// In [0, 1].
    pub confidence: f64,
    /// Why.
    #[serde(default)]
    pub reasoning: Option<String>,
    /// How long the agent took.
    #[serde(default)]
    pub latency_ms: Option<i64>,
    /// The deadline it was due by; timeliness uses `trust.deadline_ms` when absent.
    #[serde(default)]
    pub deadline_ms: Option<i64>,
    /// The model that produced it (1-128 characters of letters, digits and
    /// `._:/@+-`); it only selects the price row of `[costs.models]`.
    #[serde(default)]
    pub model: Option<String>,
    /// Prompt (input) tokens of the call, 0 to 10^9.
    #[serde(default)]
    pub prompt_tokens: Option<i64>,
    /// Completion (output) tokens of the call, 0 to 10^9. The cost is
    /// computed by the service from the price table; a `cost_usd` field is
    /// refused.
    #[serde(default)]
    pub completion_tokens: Option<i64>,
}

/// `POST /recommendations/batch` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The recommendations; all or none are tracked.
    pub items: Vec<TrackRequest>,
}

/// The id of a tracked recommendation.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Tracked {
    /// UUIDv7.
    pub id: Uuid,
}

/// The ids of a tracked batch, in request order.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TrackedBatch {
    /// UUIDv7s.
    pub ids: Vec<Uuid>,
}

/// A page of recommendations.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RecommendationPage {
    /// Newest first.
    pub items: Vec<Recommendation>,
    /// Pass as `cursor` for the next page; null on the last. A page that
    /// combines two or more of agent, status and type examines at most
    /// `limits.list_scan_rows` rows, so it may hold fewer than `limit` items
    /// (even none) and still carry a cursor: follow it until it is null.
    pub next_cursor: Option<String>,
}

fn short_text(field: &str, value: &str, max: usize) -> Result<String, ParseError> {
    storable_text(field, value)?;
    let v = value.trim();
    if v.is_empty() || v.len() > max {
        return Err(ParseError::new(
            field,
            format!("must be 1-{max} characters"),
        ));
    }
    Ok(v.to_owned())
}

/// A text filter of a query string: a value no row can hold (NUL) is a
/// malformed query (400 naming the parameter), not a database error.
fn filter_text(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    if let Some(v) = &value {
        storable_text(field, v).map_err(|e| {
            ApiError::field(
                ErrorCode::InvalidQuery,
                field,
                format!("query parameter {}: {}", e.field, e.message),
            )
        })?;
    }
    Ok(value)
}

/// Validates a request into a `Recommendation` (pending, id assigned).
async fn validate(
    state: &AppState,
    ws: WorkspaceId,
    r: TrackRequest,
    now: chrono::DateTime<Utc>,
) -> Result<Recommendation, ApiError> {
    let limits = &state.settings.limits;
    let agent_id = AgentId::parse("agent_id", &r.agent_id)?;
    let correlation_id = short_text("correlation_id", &r.correlation_id, 256)?;
    let workflow_id = short_text("workflow_id", &r.workflow_id, 256)?;
    let recommendation_type = short_text("recommendation_type", &r.recommendation_type, 128)?;
    let confidence = Confidence::parse("confidence", r.confidence)?;
    storable_json("content", &r.content)?;
    let content_len = r.content.to_string().len();
    if content_len > limits.max_content_bytes {
        return Err(ApiError::field(
            ErrorCode::ContentTooLarge,
            "content",
            format!(
                "content: {content_len} bytes of JSON exceeds limits.max_content_bytes = {}; store large artefacts elsewhere and send a reference",
                limits.max_content_bytes
            ),
        ));
    }
    if let Some(reasoning) = &r.reasoning {
        storable_text("reasoning", reasoning)?;
        if reasoning.len() > limits.max_text_bytes {
            return Err(ParseError::new(
                "reasoning",
                format!(
                    "longer than limits.max_text_bytes = {}",
                    limits.max_text_bytes
                ),
            )
            .into());
        }
    }
    if r.latency_ms.is_some_and(|lat| lat < 0) {
        return Err(ParseError::new("latency_ms", "must be >= 0").into());
    }
    if r.deadline_ms.is_some_and(|d| d <= 0) {
        return Err(ParseError::new("deadline_ms", "must be > 0").into());
    }
    let usage = usage_of(
        state,
        r.model.as_deref(),
        r.prompt_tokens,
        r.completion_tokens,
    )?;
    let registered = state.agent_name(ws, &agent_id).await?.ok_or_else(|| {
        ApiError::field(
            ErrorCode::UnknownAgent,
            "agent_id",
            format!("agent_id: {:?} is not registered in this workspace; register it first with POST /api/v1/agents", agent_id.as_str()),
        )
    })?;
    let agent_name = match r.agent_name {
        Some(n) => short_text("agent_name", &n, 200)?,
        None => registered,
    };
    Ok(Recommendation {
        id: Uuid::now_v7(),
        workspace_id: ws,
        agent_id,
        agent_name,
        correlation_id,
        workflow_id,
        recommendation_type,
        content: r.content,
        confidence: confidence.get(),
        reasoning: r.reasoning,
        latency_ms: r.latency_ms,
        deadline_ms: r.deadline_ms,
        status: RecommendationStatus::Pending,
        outcome_quality: None,
        feedback: None,
        created_at: now,
        evaluated_at: None,
        usage,
    })
}

/// The usage a client reports, bounded and priced (`crate::costs`): a count
/// outside 0..=10^9 or a malformed model name is refused, naming the field.
fn usage_of(
    state: &AppState,
    model: Option<&str>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
) -> Result<swarmwise_actors::domain::TokenUsage, ParseError> {
    let tokens = |field: &str, n: Option<i64>| -> Result<Option<u64>, ParseError> {
        n.map(|n| {
            u64::try_from(n)
                .ok()
                .filter(|n| *n <= swarmwise_actors::domain::MAX_TOKENS)
                .ok_or_else(|| {
                    ParseError::new(
                        field,
                        format!("must be a whole number of tokens from 0 to 1000000000, got {n}"),
                    )
                })
        })
        .transpose()
    };
    let prompt = tokens("prompt_tokens", prompt_tokens)?;
    let completion = tokens("completion_tokens", completion_tokens)?;
    if let Some(m) = model {
        if !swarmwise_actors::domain::valid_model_name(m) {
            return Err(ParseError::new(
                "model",
                "must be 1-128 characters of letters, digits and . _ : / @ + - (the provider's model name, e.g. gpt-4o-mini)",
            ));
        }
    }
    Ok(state.settings.costs.usage(model, None, prompt, completion))
}

/// Tracks one → 201 `{id}`.
#[utoipa::path(post, path = "/api/v1/recommendations", tag = "recommendations", request_body = TrackRequest,
    responses((status = 201, body = Tracked), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 413, description = "body, content or batch too large", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody), (status = 503, description = "learning disabled, overloaded, database unavailable or shutting down", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn track(
    ws: Workspace,
    state: web::Data<AppState>,
    body: Body<TrackRequest>,
) -> Result<HttpResponse, ApiError> {
    state.engine_enabled()?;
    let rec = validate(&state, ws.0, body.0, to_micros(Utc::now())).await?;
    let ids = state
        .engine
        .track_waiting(vec![rec], ingest_wait(&state))
        .await?;
    let id = ids.first().copied().unwrap_or_default();
    Ok(HttpResponse::Created().json(Tracked { id }))
}

/// Tracks many atomically → 201 `{ids}` in request order.
#[utoipa::path(post, path = "/api/v1/recommendations/batch", tag = "recommendations", request_body = BatchRequest,
    responses((status = 201, body = TrackedBatch), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 413, description = "body, content or batch too large", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody), (status = 503, description = "learning disabled, overloaded, database unavailable or shutting down", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn track_batch(
    ws: Workspace,
    state: web::Data<AppState>,
    body: Body<BatchRequest>,
) -> Result<HttpResponse, ApiError> {
    state.engine_enabled()?;
    let items = body.0.items;
    let max = state.settings.limits.max_batch_items;
    if items.is_empty() {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
            "items",
            "items: send at least one recommendation",
        ));
    }
    if items.len() > max {
        return Err(ApiError::field(
            ErrorCode::BatchTooLarge,
            "items",
            format!(
                "items: {} recommendations exceed limits.max_batch_items = {max}; split the batch",
                items.len()
            ),
        ));
    }
    let now = to_micros(Utc::now());
    let mut recs = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let rec = validate(&state, ws.0, item, now).await.map_err(|mut e| {
            let field = e
                .details
                .get("field")
                .and_then(|f| f.as_str())
                .unwrap_or("")
                .to_owned();
            let prefixed = format!("items[{i}].{field}");
            e.message = format!("items[{i}]: {}", e.message);
            e.details = json!({ "field": prefixed, "index": i });
            e
        })?;
        recs.push(rec);
    }
    let ids = state
        .engine
        .track_waiting(recs, ingest_wait(&state))
        .await?;
    Ok(HttpResponse::Created().json(TrackedBatch { ids }))
}

/// How long an ingest request waits for room in the tracker's buffer
/// before it sheds (`tracking.max_pending_wait_ms`).
fn ingest_wait(state: &AppState) -> std::time::Duration {
    std::time::Duration::from_millis(state.settings.tracking.max_pending_wait_ms)
}

/// Query of `GET /recommendations`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    agent_id: Option<String>,
    workflow_id: Option<String>,
    status: Option<String>,
    recommendation_type: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Newest first → `{items, next_cursor}`.
#[utoipa::path(get, path = "/api/v1/recommendations", tag = "recommendations", params(ListQuery),
    responses((status = 200, body = RecommendationPage), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody), (status = 503, description = "acknowledged writes not stored within tracking.read_flush_timeout_ms (`writes_pending`, with Retry-After)", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn list(
    ws: Workspace,
    state: web::Data<AppState>,
    query: crate::extract::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limits = &state.settings.limits;
    let limit = q.limit.unwrap_or(limits.default_page_size);
    if limit == 0 || limit > limits.max_page_size {
        return Err(ParseError::new(
            "limit",
            format!("must be between 1 and {}", limits.max_page_size),
        )
        .into());
    }
    let before = q
        .cursor
        .map(|c| {
            cursor_id(ws.0, &c)
                .ok_or_else(|| ParseError::new("cursor", "not a cursor returned by this endpoint"))
        })
        .transpose()?;
    let mut filter = RecommendationFilter {
        agent_id: filter_text("agent_id", q.agent_id)?
            .map(|a| AgentId::parse("agent_id", &a))
            .transpose()?,
        workflow_id: filter_text("workflow_id", q.workflow_id)?,
        status: filter_text("status", q.status)?
            .map(|s| RecommendationStatus::parse("status", &s))
            .transpose()?,
        recommendation_type: filter_text("recommendation_type", q.recommendation_type)?,
        before,
        not_before: None,
        window: None,
        limit: limit + 1,
    };
    // Read-your-writes: what was acknowledged before this request is listed.
    state.engine.flush_workspace(ws.0).await?;
    // Combined filters: the page examines at most `limits.list_scan_rows`
    // rows (its window), however few of them match.
    if filter.combines_filters() {
        filter.window = Some(limits.list_scan_rows);
    }
    let mut items = state.store.list_recommendations(ws.0, &filter).await?;
    // A windowed page is one statement; it is used when it is full and in
    // order (newest first). Otherwise (a short page, whose cursor is the
    // window's floor) the floor is found first and the page read at or
    // above it, as two statements that cannot disagree: every row the next
    // cursor skips was examined by the second one.
    let windowed_page_holds = filter.window.is_none()
        || (items.len() > limit as usize && items.is_sorted_by(|a, b| a.id > b.id));
    if !windowed_page_holds {
        filter.window = None;
        filter.not_before = state
            .store
            .recommendation_scan_floor(ws.0, &filter, limits.list_scan_rows)
            .await?;
        items = state.store.list_recommendations(ws.0, &filter).await?;
    }
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|r| cursor_of(ws.0, r.id))
    } else {
        // A short page of a window continues below the window.
        filter.not_before.map(|floor| cursor_of(ws.0, floor))
    };
    Ok(HttpResponse::Ok().json(RecommendationPage { items, next_cursor }))
}

/// The opaque `next_cursor` of a page ending at `id`: the id and a tag that
/// binds it to the workspace (the first 8 bytes of SHA-256 over both), in
/// hex. The list is keyset-paginated (`id < cursor`, newest first), so a
/// page costs the same however deep it is.
fn cursor_of(ws: WorkspaceId, id: Uuid) -> String {
    let mut out = hex::encode(id.as_bytes());
    out.push_str(&hex::encode(cursor_tag(ws, id)));
    out
}

fn cursor_tag(ws: WorkspaceId, id: Uuid) -> [u8; 8] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"swarmwise recommendations cursor v1")
        .chain_update(ws.0.as_bytes())
        .chain_update(id.as_bytes())
        .finalize();
    let mut tag = [0u8; 8];
    for (t, d) in tag.iter_mut().zip(digest.iter()) {
        *t = *d;
    }
    tag
}

/// The id a cursor of `ws` stands for; `None` for anything else: a
/// tampered cursor, or one another workspace was given (its tag does not
/// match), is refused rather than paged from.
fn cursor_id(ws: WorkspaceId, raw: &str) -> Option<Uuid> {
    let bytes = hex::decode(raw).ok()?;
    if bytes.len() != 24 {
        return None;
    }
    let (id, tag) = bytes.split_at(16);
    let id = Uuid::from_slice(id).ok()?;
    (cursor_tag(ws, id) == tag).then_some(id)
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::field(
            ErrorCode::InvalidField,
            "id",
            format!("id: {raw:?} is not a UUID"),
        )
        .with_status(StatusCode::BAD_REQUEST)
    })
}

/// One recommendation.
#[utoipa::path(get, path = "/api/v1/recommendations/{id}", tag = "recommendations", params(("id" = String, Path)),
    responses((status = 200, body = Recommendation), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 404, description = "not found in this workspace", body = crate::error::ErrorBody), (status = 503, description = "acknowledged writes not stored within tracking.read_flush_timeout_ms (`writes_pending`, with Retry-After)", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn get(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path.into_inner())?;
    state.engine.flush_workspace(ws.0).await?;
    let rec = state.store.recommendation(ws.0, id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::RecommendationNotFound,
            format!("recommendation {id} was not found in this workspace"),
        )
    })?;
    Ok(HttpResponse::Ok().json(rec))
}

/// `POST /recommendations/{id}/feedback` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// approved, partial or rejected.
    pub status: String,
    /// 0–100.
    #[serde(default)]
    pub quality: Option<f64>,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

/// Human feedback; overrides the derived verdict → the updated recommendation.
#[utoipa::path(post, path = "/api/v1/recommendations/{id}/feedback", tag = "recommendations", params(("id" = String, Path)),
    request_body = FeedbackRequest,
    responses((status = 200, body = Recommendation), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 404, description = "not found in this workspace", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody), (status = 503, description = "learning disabled, overloaded, database unavailable or shutting down", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn feedback(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<FeedbackRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path.into_inner())?;
    let b = body.0;
    let verdict = Verdict::parse("status", &b.status)?;
    let quality = b
        .quality
        .map(|q| QualityScore::parse("quality", q))
        .transpose()?;
    if let Some(c) = &b.comment {
        storable_text("comment", c)?;
    }
    if b.comment
        .as_ref()
        .is_some_and(|c| c.len() > state.settings.limits.max_text_bytes)
    {
        return Err(ParseError::new("comment", "longer than limits.max_text_bytes").into());
    }
    let rec = state
        .engine
        .feedback(Feedback {
            workspace: ws.0,
            id,
            verdict,
            quality,
            comment: b.comment,
        })
        .await?;
    // A human verdict is an outcome too (a new one, or a changed one).
    state.cycles.outcomes_evaluated(ws.0, 1);
    Ok(HttpResponse::Ok().json(rec))
}

/// An explicit verdict in an outcome.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerdictRequest {
    /// Which recommendation of the workflow.
    pub recommendation_id: Uuid,
    /// approved, partial or rejected.
    pub status: String,
    /// 0–100; the workflow's score if absent.
    #[serde(default)]
    pub quality: Option<f64>,
}

/// `POST /workflows/{id}/outcome` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRequest {
    /// 0–100.
    pub overall_quality_score: f64,
    /// Overrides of the derived verdicts.
    #[serde(default)]
    pub verdicts: Option<Vec<VerdictRequest>>,
    /// Stored on every evaluated recommendation.
    #[serde(default)]
    pub feedback: Option<String>,
}

/// Evaluates a workflow's pending recommendations → counts per status.
#[utoipa::path(post, path = "/api/v1/workflows/{workflow_id}/outcome", tag = "recommendations", params(("workflow_id" = String, Path)),
    request_body = OutcomeRequest,
    responses((status = 200, body = swarmwise_actors::tracker::EvaluationSummary), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 404, description = "not found in this workspace", body = crate::error::ErrorBody), (status = 409, description = "conflicts with the current state", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody), (status = 503, description = "learning disabled, overloaded, database unavailable or shutting down", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn outcome(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<OutcomeRequest>,
) -> Result<HttpResponse, ApiError> {
    let workflow_id = path.into_inner();
    storable_text("workflow_id", &workflow_id).map_err(|e| {
        ApiError::field(
            ErrorCode::InvalidPath,
            "workflow_id",
            format!("path parameter {}: {}", e.field, e.message),
        )
    })?;
    let b = body.0;
    let overall = QualityScore::parse("overall_quality_score", b.overall_quality_score)?;
    let mut verdicts = Vec::new();
    for (i, v) in b.verdicts.unwrap_or_default().into_iter().enumerate() {
        let verdict = Verdict::parse("status", &v.status)
            .map_err(|e| e.prefixed(&format!("verdicts[{i}].")))?;
        let quality = v
            .quality
            .map(|q| QualityScore::parse("quality", q))
            .transpose()
            .map_err(|e| e.prefixed(&format!("verdicts[{i}].")))?;
        verdicts.push(ExplicitVerdict {
            recommendation_id: v.recommendation_id,
            verdict,
            quality,
        });
    }
    if let Some(f) = &b.feedback {
        storable_text("feedback", f)?;
    }
    if b.feedback
        .as_ref()
        .is_some_and(|c| c.len() > state.settings.limits.max_text_bytes)
    {
        return Err(ParseError::new("feedback", "longer than limits.max_text_bytes").into());
    }
    let span = swarmwise_actors::trace::evaluation_span(ws.0, &workflow_id);
    let summary = tracing::Instrument::instrument(
        state.engine.evaluate(Evaluate {
            workspace: ws.0,
            workflow_id,
            overall_quality: overall,
            verdicts,
            feedback: b.feedback,
            fresh: Vec::new(),
        }),
        span.clone(),
    )
    .await?;
    span.record("evaluated", summary.evaluated);
    // Outcomes reported here count towards learning.cycle_every_outcomes
    // exactly like the ones a workflow run evaluates.
    state.cycles.outcomes_evaluated(ws.0, summary.evaluated);
    Ok(HttpResponse::Ok().json(summary))
}
