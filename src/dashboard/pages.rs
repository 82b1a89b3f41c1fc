//! The dashboard's handlers: each reads through the same functions as the
//! JSON API, in the session's workspace only, and renders one template.
//! Numbers are formatted here (three decimals for trust, as `data-trust`
//! promises) so the templates stay plain.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use swarmwise_actors::domain::{AgentId, RecommendationFilter, RecommendationStatus};
use swarmwise_actors::learner::cycle::{PatternStatus, StoredPattern};
use swarmwise_actors::learner::patterns::Category;
use swarmwise_actors::trust::TrustCard;
use uuid::Uuid;

use super::session::{Sessions, COOKIE};
use super::svg::{self, Series};
use super::{assets, session_id, DashError, Signed};
use crate::auth::{caller_of_digest, hash_key, Caller};
use crate::error::ApiError;
use crate::routes::trust::csv_field;
use crate::state::AppState;
use crate::store::{Bucket, RunSummary};

type Page = Result<HttpResponse, DashError>;

/// What every page's frame needs.
pub struct Chrome {
    /// The session's CSRF token, for the sign-out form and every action.
    pub csrf: String,
    /// Which nav entry is current.
    pub active: &'static str,
    /// Versioned stylesheet URL.
    pub css_url: &'static str,
    /// Versioned script URL.
    pub js_url: &'static str,
}

fn chrome(s: &Signed, active: &'static str) -> Chrome {
    Chrome {
        csrf: s.session.csrf.clone(),
        active,
        css_url: assets::css_url(),
        js_url: assets::js_url(),
    }
}

fn html(t: &impl Template) -> Page {
    let body = t.render().map_err(|e| {
        DashError::Api(ApiError::new(
            crate::error::ErrorCode::Internal,
            format!("the page could not be rendered: {e}"),
        ))
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body))
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

/// A serde enum's snake_case word.
fn word<T: Serialize>(t: &T) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn t3(v: f64) -> String {
    format!("{v:.3}")
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn signed_diff(v: f64) -> String {
    format!("{v:+.3}")
}

fn ago(t: DateTime<Utc>) -> String {
    let s = (Utc::now() - t).num_seconds().max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn duration(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> String {
    match to {
        Some(to) => format!("{} ms", (to - from).num_milliseconds().max(0)),
        None => "running".into(),
    }
}

// ---------------------------------------------------------------- sign-in

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginPage {
    css_url: &'static str,
    error: Option<String>,
    ttl_hours: String,
}

fn login_page(sessions: &Sessions, error: Option<String>, status: StatusCode) -> Page {
    let hours = sessions.ttl().as_secs_f64() / 3600.0;
    let page = LoginPage {
        css_url: assets::css_url(),
        error,
        ttl_hours: if hours.fract() == 0.0 {
            format!("{hours:.0}")
        } else {
            format!("{hours:.1}")
        },
    };
    let mut res = html(&page)?;
    *res.status_mut() = status;
    Ok(res)
}

/// `GET /learning/login`.
pub async fn login_form(sessions: web::Data<Sessions>) -> Page {
    login_page(&sessions, None, StatusCode::OK)
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    api_key: String,
}

/// `POST /learning/login`: a valid workspace key starts a session (303 to
/// the overview with the cookie); anything else shows the form again with
/// the reason (401), and starts nothing.
pub async fn login(
    state: web::Data<AppState>,
    sessions: web::Data<Sessions>,
    form: web::Form<LoginForm>,
) -> Page {
    let key = form.api_key.trim();
    if key.is_empty() {
        return login_page(
            &sessions,
            Some("Enter your workspace API key.".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    if key.len() > 512 {
        return login_page(
            &sessions,
            Some("That is not an API key (too long).".into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let hash = hash_key(key);
    match caller_of_digest(&state, hash.clone()).await? {
        Some(Caller::Workspace(ws)) => {
            let (id, _) = sessions.start(hash, ws);
            let mut cookie = format!(
                "{COOKIE}={id}; Path=/learning; HttpOnly; SameSite=Strict; Max-Age={}",
                sessions.ttl().as_secs()
            );
            if state.settings.dashboard.secure_cookie {
                cookie.push_str("; Secure");
            }
            Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/learning"))
                .insert_header((header::SET_COOKIE, cookie))
                .finish())
        }
        Some(Caller::Admin) => login_page(
            &sessions,
            Some("The admin key manages workspaces and cannot sign in here; use a workspace API key.".into()),
            StatusCode::FORBIDDEN,
        ),
        None => login_page(
            &sessions,
            Some("Unknown or revoked API key. Check the key, or ask the operator for a new one.".into()),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

/// A form that only carries the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /learning/logout`: ends the session, clears the cookie.
pub async fn logout(
    req: HttpRequest,
    sessions: web::Data<Sessions>,
    form: web::Form<CsrfForm>,
) -> Page {
    if let Some(id) = session_id(&req) {
        if let Some(s) = sessions.get(&id) {
            let signed = Signed {
                id: id.clone(),
                session: s,
            };
            signed.check_csrf(form.csrf.as_deref())?;
            sessions.end(&id);
        }
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/learning/login"))
        .insert_header((
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/learning; HttpOnly; SameSite=Strict; Max-Age=0"),
        ))
        .finish())
}

// ---------------------------------------------------------------- overview

struct CycleView {
    status: String,
    finished_iso: String,
    ago: String,
    reason: String,
    processed: u64,
    discovered: u32,
    confirmed: u32,
    rules: u32,
    accuracy: String,
    coverage: String,
}

struct Alert {
    agent_id: String,
    name: String,
    text: String,
}

#[derive(Template)]
#[template(path = "dashboard/insights.html")]
struct InsightsPartial {
    cycle_id: String,
    cycle: Option<CycleView>,
    candidates: u64,
    confirmed: u64,
    key_insights: Vec<String>,
    actions: Vec<String>,
    alerts: Vec<Alert>,
}

async fn insights_partial_of(state: &AppState, s: &Signed) -> Result<InsightsPartial, DashError> {
    let ins = crate::routes::learning::insights_of(state, s.ws()).await?;
    let scores = crate::routes::trust::scores(state, s.ws()).await?;
    let threshold = state.settings.agents.disable_below_trust;
    let alerts = scores
        .agents
        .iter()
        .filter_map(|a| {
            let declining = word(&a.card.trend) == "declining";
            let low = a.card.sample_count > 0 && a.card.overall_trust < threshold;
            let text = match (declining, low) {
                (true, true) => format!(
                    "declining, and trust {} is below the disable threshold {threshold}",
                    t3(a.card.overall_trust)
                ),
                (true, false) => format!("trust is declining (now {})", t3(a.card.overall_trust)),
                (false, true) => format!(
                    "trust {} is below the disable threshold {threshold}",
                    t3(a.card.overall_trust)
                ),
                (false, false) => return None,
            };
            Some(Alert {
                agent_id: a.agent_id.clone(),
                name: a.agent_name.clone(),
                text,
            })
        })
        .collect();
    let opt_pct = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), pct);
    Ok(InsightsPartial {
        cycle_id: ins
            .latest_cycle
            .as_ref()
            .map(|c| c.id.to_string())
            .unwrap_or_default(),
        cycle: ins.latest_cycle.as_ref().map(|c| {
            let at = c.finished_at.unwrap_or(c.started_at);
            CycleView {
                status: c.status.clone(),
                finished_iso: at.to_rfc3339(),
                ago: ago(at),
                reason: c.reason.clone(),
                processed: c.recommendations_processed,
                discovered: c.patterns_discovered,
                confirmed: c.patterns_confirmed,
                rules: c.rules_updated,
                accuracy: opt_pct(c.model_accuracy),
                coverage: opt_pct(c.coverage),
            }
        }),
        candidates: ins.candidate_patterns,
        confirmed: ins.confirmed_patterns,
        key_insights: ins.key_insights,
        actions: ins.recommended_actions,
        alerts,
    })
}

#[derive(Template)]
#[template(path = "dashboard/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    agents: usize,
    enabled: usize,
    recommendations: u64,
    evaluated: u64,
    approval: String,
    average: String,
    runs: usize,
    notice: Option<String>,
    insights_html: String,
}

/// Query of pages that show a notice after an action.
#[derive(Debug, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<String> {
    match done? {
        "cycle" => Some("Learning cycle finished.".into()),
        "enabled" => Some("Agent enabled.".into()),
        "disabled" => Some("Agent disabled.".into()),
        "busy" => Some("A learning cycle is already running; try again in a moment.".into()),
        _ => None,
    }
}

/// `GET /learning`.
pub async fn overview(s: Signed, state: web::Data<AppState>, q: web::Query<NoticeQuery>) -> Page {
    let ws = s.ws();
    let agents = state.store.agents(ws).await?;
    let mut total = 0u64;
    let (mut approved, mut evaluated) = (0u64, 0u64);
    for (_, status, n) in state.store.status_counts(ws).await? {
        total += n;
        match status {
            RecommendationStatus::Approved => {
                approved += n;
                evaluated += n;
            }
            RecommendationStatus::Partial | RecommendationStatus::Rejected => evaluated += n,
            _ => {}
        }
    }
    let runs = state.store.recent_runs(ws, None, 50).await?;
    let snap = state.engine.trust(ws);
    let partial = insights_partial_of(&state, &s).await?;
    let insights_html = partial.render().map_err(|e| {
        DashError::Api(ApiError::new(
            crate::error::ErrorCode::Internal,
            e.to_string(),
        ))
    })?;
    html(&OverviewPage {
        chrome: chrome(&s, "overview"),
        enabled: agents.iter().filter(|a| a.enabled).count(),
        agents: agents.len(),
        recommendations: total,
        evaluated,
        approval: if evaluated > 0 {
            pct(approved as f64 / evaluated as f64)
        } else {
            "n/a".into()
        },
        average: t3(snap.workspace_average),
        runs: runs.len(),
        notice: notice(q.done.as_deref()),
        insights_html,
    })
}

/// `GET /learning/partials/insights`: the widget alone (the script swaps
/// it in when an event arrives).
pub async fn insights_partial(s: Signed, state: web::Data<AppState>) -> Page {
    html(&insights_partial_of(&state, &s).await?)
}

/// `GET /learning/events`: the session's workspace's events (the API's
/// stream, scoped by the session instead of a bearer key).
pub async fn events(s: Signed, state: web::Data<AppState>) -> HttpResponse {
    crate::routes::events::stream_for(&state, s.ws())
}

/// `POST /learning/cycles`: runs a learning cycle now, then back to the
/// overview (409 while one runs: back with a notice).
pub async fn run_cycle(s: Signed, state: web::Data<AppState>, form: web::Form<CsrfForm>) -> Page {
    s.check_csrf(form.csrf.as_deref())?;
    state.engine_enabled()?;
    match state.learner.run(s.ws(), "dashboard").await {
        Ok(_) => {
            state.patterns.invalidate(s.ws()).await;
            Ok(see_other("/learning?done=cycle"))
        }
        Err(e) => {
            let e = ApiError::from(e);
            if e.status == StatusCode::CONFLICT {
                Ok(see_other("/learning?done=busy"))
            } else {
                Err(e.into())
            }
        }
    }
}

// ---------------------------------------------------------------- trust

struct Header {
    label: &'static str,
    href: Option<String>,
    aria_sort: Option<&'static str>,
}

struct TrustRowView {
    agent_id: String,
    name: String,
    overall: String,
    shown: String,
    bar: String,
    band: &'static str,
    trend: String,
    trend_icon: &'static str,
    approval: String,
    quality: String,
    calibration: String,
    samples: u64,
    vs_average: String,
    enabled: bool,
    registered: bool,
}

#[derive(Template)]
#[template(path = "dashboard/trust.html")]
struct TrustPage {
    chrome: Chrome,
    average: String,
    red: f64,
    green: f64,
    types: Vec<String>,
    selected_type: Option<String>,
    sort: String,
    sort_label: &'static str,
    headers: Vec<Header>,
    rows: Vec<TrustRowView>,
    notice: Option<String>,
}

/// Query of the trust page.
#[derive(Debug, Deserialize)]
pub struct TrustQuery {
    /// trust (default), name, approval, quality, calibration, samples; a
    /// leading `-` sorts ascending.
    #[serde(default)]
    sort: Option<String>,
    /// Per-type view.
    #[serde(default, rename = "type")]
    rtype: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

const SORTS: &[(&str, &str)] = &[
    ("name", "Agent"),
    ("trust", "Trust"),
    ("trend", "Trend"),
    ("approval", "Approval rate"),
    ("quality", "Avg quality"),
    ("calibration", "Calibration"),
    ("samples", "Samples"),
    ("vs", "vs workspace avg"),
];

/// `GET /learning/trust-scores`.
pub async fn trust(s: Signed, state: web::Data<AppState>, q: web::Query<TrustQuery>) -> Page {
    let ws = s.ws();
    let q = q.into_inner();
    let raw_sort = q.sort.unwrap_or_else(|| "trust".into());
    let (ascending, key) = match raw_sort.strip_prefix('-') {
        Some(k) => (true, k.to_owned()),
        None => (false, raw_sort.clone()),
    };
    let Some(&(_, sort_label)) = SORTS.iter().find(|(k, _)| *k == key && *k != "trend") else {
        return Err(DashError::BadRequest(format!(
            "sort: unknown {key:?}; use name, trust, approval, quality, calibration, samples or vs"
        )));
    };
    let scores = crate::routes::trust::scores(&state, ws).await?;
    let snap = state.engine.trust(ws);
    let mut types: Vec<String> = snap
        .agents
        .values()
        .flat_map(|c| c.per_type.keys().cloned())
        .collect();
    types.sort();
    types.dedup();
    let rtype = q.rtype.filter(|t| !t.is_empty());
    if let Some(t) = &rtype {
        if !types.contains(t) {
            return Err(DashError::BadRequest(format!(
                "type: no agent has trust on recommendation type {t:?} yet"
            )));
        }
    }
    let registered: BTreeMap<String, bool> = state
        .store
        .agents(ws)
        .await?
        .into_iter()
        .map(|a| (a.id.to_string(), a.enabled))
        .collect();
    let (red, green) = (
        state.settings.dashboard.trust_red_below,
        state.settings.dashboard.trust_green_from,
    );
    let mut rows: Vec<(TrustRowView, TrustCard)> = scores
        .agents
        .iter()
        .map(|a| {
            let card: TrustCard = match &rtype {
                Some(t) => snap
                    .agents
                    .iter()
                    .find(|(k, _)| k.as_str() == a.agent_id)
                    .and_then(|(_, c)| c.per_type.get(t).cloned())
                    .unwrap_or_else(|| snap.default_card.clone()),
                None => a.card.clone(),
            };
            let shown_value = card.overall_trust;
            let (colour, band) = svg::band(shown_value, red, green);
            let trend = word(&card.trend);
            let view = TrustRowView {
                agent_id: a.agent_id.clone(),
                name: a.agent_name.clone(),
                overall: t3(a.card.overall_trust),
                shown: t3(shown_value),
                bar: svg::bar(
                    shown_value,
                    colour,
                    &format!("trust {} of 1 ({band})", t3(shown_value)),
                ),
                band,
                trend_icon: match trend.as_str() {
                    "improving" => "▲",
                    "declining" => "▼",
                    _ => "●",
                },
                trend,
                approval: pct(card.approval_rate),
                quality: format!("{:.1}", card.avg_quality),
                calibration: t3(card.calibration),
                samples: card.sample_count,
                vs_average: signed_diff(shown_value - scores.workspace_average),
                enabled: registered.get(&a.agent_id).copied().unwrap_or(false),
                registered: registered.contains_key(&a.agent_id),
            };
            (view, card)
        })
        .collect();
    // Names read best A to Z, numbers best first; a leading `-` flips.
    let descending = (key != "name") ^ ascending;
    rows.sort_by(|(va, a), (vb, b)| {
        let o = match key.as_str() {
            "name" => va.name.to_lowercase().cmp(&vb.name.to_lowercase()),
            "approval" => a.approval_rate.total_cmp(&b.approval_rate),
            "quality" => a.avg_quality.total_cmp(&b.avg_quality),
            "calibration" => a.calibration.total_cmp(&b.calibration),
            "samples" => a.sample_count.cmp(&b.sample_count),
            _ => a.overall_trust.total_cmp(&b.overall_trust),
        };
        let o = if descending { o.reverse() } else { o };
        o.then_with(|| va.agent_id.cmp(&vb.agent_id))
    });
    let type_q = rtype
        .as_deref()
        .map(|t| {
            let enc: String = url::form_urlencoded::byte_serialize(t.as_bytes()).collect();
            format!("&type={enc}")
        })
        .unwrap_or_default();
    let headers = SORTS
        .iter()
        .map(|(k, label)| {
            let sortable = *k != "trend";
            let current = *k == key;
            let next = if current && !ascending {
                format!("-{k}")
            } else {
                (*k).to_owned()
            };
            Header {
                label,
                href: sortable.then(|| format!("/learning/trust-scores?sort={next}{type_q}")),
                aria_sort: current.then_some(if descending {
                    "descending"
                } else {
                    "ascending"
                }),
            }
        })
        .chain(std::iter::once(Header {
            label: "Status",
            href: None,
            aria_sort: None,
        }))
        .collect();
    html(&TrustPage {
        chrome: chrome(&s, "trust"),
        average: t3(scores.workspace_average),
        red,
        green,
        types,
        selected_type: rtype,
        sort: raw_sort,
        sort_label,
        headers,
        rows: rows.into_iter().map(|(v, _)| v).collect(),
        notice: notice(q.done.as_deref()),
    })
}

/// The enable/disable form.
#[derive(Debug, Deserialize)]
pub struct EnabledForm {
    #[serde(default)]
    csrf: Option<String>,
    enabled: String,
    #[serde(default)]
    back: Option<String>,
}

/// `POST /learning/agents/{agent_id}/enabled`: enables or disables an agent
/// of the session's workspace (404 for any other), then back to the page.
pub async fn set_enabled(
    s: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<EnabledForm>,
) -> Page {
    s.check_csrf(form.csrf.as_deref())?;
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    let enabled = match form.enabled.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(DashError::BadRequest(format!(
                "enabled: must be true or false, not {other:?}"
            )))
        }
    };
    let agent = crate::routes::agents::set_enabled(&state, s.ws(), &id, enabled).await?;
    let done = if agent.enabled { "enabled" } else { "disabled" };
    let to = match form.back.as_deref() {
        Some("agent") => format!("/learning/agents/{id}?done={done}"),
        _ => format!("/learning/trust-scores?done={done}"),
    };
    Ok(see_other(&to))
}

/// `GET /learning/export/agents.csv`: the API's metrics CSV.
pub async fn agents_csv(s: Signed, state: web::Data<AppState>) -> Page {
    let body = crate::routes::trust::metrics_csv_text(&state, s.ws()).await?;
    Ok(csv("agent-metrics.csv", body))
}

fn csv(name: &str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .body(body)
}

// ---------------------------------------------------------------- patterns

struct CardView {
    id: Uuid,
    name: String,
    category: String,
    status: String,
    rtype: String,
    description: String,
    interval: String,
    rate: String,
    low: String,
    high: String,
    support: u64,
    lift: String,
    q: String,
    agents: Vec<String>,
}

struct TimelineEntry {
    at: DateTime<Utc>,
    iso: String,
    when: String,
    what: &'static str,
    name: String,
}

#[derive(Template)]
#[template(path = "dashboard/patterns.html")]
struct PatternsPage {
    chrome: Chrome,
    categories: Vec<String>,
    statuses: Vec<String>,
    category: Option<String>,
    status: Option<String>,
    total: usize,
    cards: Vec<CardView>,
    timeline: Vec<TimelineEntry>,
}

/// Query of the pattern board.
#[derive(Debug, Deserialize)]
pub struct PatternsQuery {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// `GET /learning/patterns`.
pub async fn patterns(s: Signed, state: web::Data<AppState>, q: web::Query<PatternsQuery>) -> Page {
    let q = q.into_inner();
    let category: Option<Category> = match q.category.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(
            serde_json::from_value(serde_json::Value::String(c.to_owned())).map_err(|_| {
                DashError::BadRequest(format!(
                    "category: unknown {c:?}; use consensus, expert, high_confidence or combination"
                ))
            })?,
        ),
        None => None,
    };
    let status: Option<PatternStatus> = match q.status.as_deref().filter(|c| !c.is_empty()) {
        Some(st) => Some(PatternStatus::parse(st).ok_or_else(|| {
            DashError::BadRequest(format!(
                "status: unknown {st:?}; use candidate, confirmed or retired"
            ))
        })?),
        None => None,
    };
    let all = crate::routes::learning::cached_patterns(&state, s.ws()).await?;
    let mut timeline: Vec<TimelineEntry> = Vec::new();
    let mut push = |at: Option<DateTime<Utc>>, what: &'static str, p: &StoredPattern| {
        if let Some(at) = at {
            timeline.push(TimelineEntry {
                at,
                iso: at.to_rfc3339(),
                when: when(at),
                what,
                name: p.name.clone(),
            });
        }
    };
    for p in all.iter() {
        push(Some(p.first_seen), "discovered", p);
        if p.status != PatternStatus::Candidate {
            push(p.last_confirmed, "confirmed", p);
        }
        push(p.retired_at, "retired", p);
    }
    timeline.sort_by_key(|t| std::cmp::Reverse(t.at));
    timeline.truncate(50);
    let cards = all
        .iter()
        .filter(|p| category.is_none_or(|c| p.category == c))
        .filter(|p| status.is_none_or(|s| p.status == s))
        .map(|p| CardView {
            id: p.id,
            name: p.name.clone(),
            category: word(&p.category),
            status: word(&p.status),
            rtype: p.recommendation_type.clone(),
            description: p.description.clone(),
            interval: svg::interval(
                p.success_rate,
                p.ci_low,
                p.ci_high,
                &format!(
                    "success rate {} within {}–{}",
                    pct(p.success_rate),
                    pct(p.ci_low),
                    pct(p.ci_high)
                ),
            ),
            rate: pct(p.success_rate),
            low: pct(p.ci_low),
            high: pct(p.ci_high),
            support: p.support,
            lift: format!("{:.2}", p.lift),
            q: format!("{:.3}", p.q_value),
            agents: p.agent_ids.iter().map(ToString::to_string).collect(),
        })
        .collect();
    html(&PatternsPage {
        chrome: chrome(&s, "patterns"),
        categories: ["consensus", "expert", "high_confidence", "combination"]
            .map(String::from)
            .to_vec(),
        statuses: ["candidate", "confirmed", "retired"]
            .map(String::from)
            .to_vec(),
        category: category.map(|c| word(&c)),
        status: status.map(|s| word(&s)),
        total: all.len(),
        cards,
        timeline,
    })
}

// ---------------------------------------------------------------- agent

#[derive(Template)]
#[template(path = "dashboard/agent.html")]
struct AgentPage {
    chrome: Chrome,
    agent_id: String,
    name: String,
    overall: String,
    bar: String,
    band: &'static str,
    average: String,
    vs_average: String,
    trend: String,
    samples: u64,
    strength: String,
    registered: bool,
    enabled: bool,
    accuracy: String,
    consistency: String,
    timeliness: String,
    reliability: String,
    calibration: String,
    approval: String,
    quality: String,
    brier: String,
    bucket: &'static str,
    count_chart: String,
    approval_chart: String,
    quality_chart: String,
    history_chart: String,
    reliability_chart: String,
    compare_chart: String,
    per_type: Vec<(String, String, String, String, u64, String)>,
    notice: Option<String>,
}

/// Query of the agent page and its series CSV.
#[derive(Debug, Deserialize)]
pub struct BucketQuery {
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

fn bucket_of(raw: Option<&str>) -> Result<Bucket, DashError> {
    match raw {
        None | Some("") => Ok(Bucket::Hour),
        Some(b) => Bucket::parse(b)
            .ok_or_else(|| DashError::BadRequest(format!("bucket: use hour or day, not {b:?}"))),
    }
}

/// How many buckets the agent page draws.
const PAGE_BUCKETS: u32 = 48;

/// `GET /learning/agents/{agent_id}`: 404 unless the agent is registered
/// (or scored) in the session's workspace.
pub async fn agent(
    s: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<BucketQuery>,
) -> Page {
    let ws = s.ws();
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    let bucket = bucket_of(q.bucket.as_deref())?;
    let t = crate::routes::trust::agent_trust(&state, ws, &id).await?;
    let registered = state.store.agent(ws, &id).await?;
    state.engine.flush().await?;
    let mut series = state
        .store
        .agent_series(ws, &id, bucket, None, PAGE_BUCKETS)
        .await?;
    series.reverse();
    let label = |at: DateTime<Utc>| match bucket {
        Bucket::Hour => at.format("%m-%d %H:00").to_string(),
        Bucket::Day => at.format("%Y-%m-%d").to_string(),
    };
    let counts: Vec<(String, Option<f64>)> = series
        .iter()
        .map(|p| (label(p.bucket_start), Some(p.recommendations as f64)))
        .collect();
    let max_count = series
        .iter()
        .map(|p| p.recommendations)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let approval: Vec<(String, Option<f64>)> = series
        .iter()
        .map(|p| (label(p.bucket_start), p.approval_rate))
        .collect();
    let quality: Vec<(String, Option<f64>)> = series
        .iter()
        .map(|p| (label(p.bucket_start), p.avg_quality))
        .collect();
    let history: Vec<(String, Option<f64>)> = t
        .history
        .iter()
        .rev()
        .map(|h| {
            (
                h.recorded_at.format("%m-%d %H:%M").to_string(),
                Some(h.overall_trust),
            )
        })
        .collect();
    let bins = state.store.calibration_bins(ws, &id).await?;
    let scores = crate::routes::trust::scores(&state, ws).await?;
    let mut compare = String::from(r#"<svg class="chart" viewBox="0 0 640 "#);
    {
        let n = scores.agents.len().max(1);
        let h = 20 * n + 8;
        let _ = write!(
            compare,
            r#"{h}" role="img" aria-label="Overall trust of every agent of the workspace; this agent is highlighted" preserveAspectRatio="xMinYMin meet">"#
        );
        for (i, a) in scores.agents.iter().enumerate() {
            let y = 4 + 20 * i;
            let me = a.agent_id == id.as_str();
            let w = 400.0 * a.card.overall_trust.clamp(0.0, 1.0);
            let _ = write!(
                compare,
                r##"<text x="170" y="{}" font-size="11" text-anchor="end" fill="#1f2933"{}>{}</text><rect x="176" y="{y}" width="{w:.1}" height="14" fill="{}"/><text x="{:.1}" y="{}" font-size="11" fill="#1f2933">{}</text>"##,
                y + 11,
                if me { r#" font-weight="700""# } else { "" },
                svg::esc(&a.agent_name),
                if me { "#1d4ed8" } else { "#9aa5b1" },
                182.0 + w,
                y + 11,
                t3(a.card.overall_trust)
            );
        }
        compare.push_str("</svg>");
    }
    let c = &t.card.card;
    let (red, green) = (
        state.settings.dashboard.trust_red_below,
        state.settings.dashboard.trust_green_from,
    );
    let (colour, band) = svg::band(c.overall_trust, red, green);
    let per_type = t
        .per_type
        .iter()
        .map(|tc| {
            (
                tc.recommendation_type.clone(),
                t3(tc.card.overall_trust),
                pct(tc.card.approval_rate),
                format!("{:.1}", tc.card.avg_quality),
                tc.card.sample_count,
                signed_diff(tc.card.boost),
            )
        })
        .collect();
    html(&AgentPage {
        chrome: chrome(&s, "trust"),
        agent_id: id.to_string(),
        name: t.card.agent_name.clone(),
        overall: t3(c.overall_trust),
        bar: svg::bar(
            c.overall_trust,
            colour,
            &format!("trust {} of 1 ({band})", t3(c.overall_trust)),
        ),
        band,
        average: t3(t.workspace_average),
        vs_average: signed_diff(c.overall_trust - t.workspace_average),
        trend: word(&c.trend),
        samples: c.sample_count,
        strength: word(&c.strength),
        registered: registered.is_some(),
        enabled: registered.as_ref().is_some_and(|a| a.enabled),
        accuracy: t3(c.accuracy_score),
        consistency: t3(c.consistency_score),
        timeliness: t3(c.timeliness),
        reliability: t3(c.reliability),
        calibration: t3(c.calibration),
        approval: pct(c.approval_rate),
        quality: format!("{:.1}", c.avg_quality),
        brier: c.brier_score.map_or_else(|| "n/a".into(), t3),
        bucket: bucket.as_str(),
        count_chart: svg::line_chart(
            "Recommendations per bucket",
            max_count,
            &[Series {
                name: "recommendations",
                points: &counts,
            }],
            true,
        ),
        approval_chart: svg::line_chart(
            "Approval rate per bucket, 0 to 1",
            1.0,
            &[Series {
                name: "approval rate",
                points: &approval,
            }],
            false,
        ),
        quality_chart: svg::line_chart(
            "Average outcome quality per bucket, 0 to 100",
            100.0,
            &[Series {
                name: "quality",
                points: &quality,
            }],
            false,
        ),
        history_chart: svg::line_chart(
            "Overall trust over its recent history, 0 to 1",
            1.0,
            &[Series {
                name: "trust",
                points: &history,
            }],
            false,
        ),
        reliability_chart: svg::reliability(
            &bins
                .iter()
                .map(|b| (b.mean_confidence, b.observed_rate, b.count))
                .collect::<Vec<_>>(),
        ),
        compare_chart: compare,
        per_type,
        notice: notice(q.done.as_deref()),
    })
}

/// Most rows one recommendations CSV carries (newest first).
const CSV_MAX_ROWS: usize = 50_000;

/// `GET /learning/agents/{agent_id}/recommendations.csv`: the agent's
/// recommendations, newest first, at most 50,000 rows.
pub async fn recommendations_csv(
    s: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Page {
    let ws = s.ws();
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    if state.agent_name(ws, &id).await?.is_none() {
        return Err(crate::routes::agents::agent_not_found(&id).into());
    }
    state.engine.flush().await?;
    let mut out = String::from(
        "id,created_at,recommendation_type,workflow_id,correlation_id,confidence,latency_ms,status,outcome_quality,evaluated_at\n",
    );
    let mut before = None;
    let mut rows = 0usize;
    loop {
        let page = state
            .store
            .list_recommendations(
                ws,
                &RecommendationFilter {
                    agent_id: Some(id.clone()),
                    workflow_id: None,
                    status: None,
                    recommendation_type: None,
                    before,
                    limit: 500,
                },
            )
            .await?;
        let n = page.len();
        for r in &page {
            if rows >= CSV_MAX_ROWS {
                break;
            }
            rows += 1;
            let _ = writeln!(
                out,
                "{},{},{},{},{},{:.4},{},{},{},{}",
                r.id,
                r.created_at.to_rfc3339(),
                csv_field(&r.recommendation_type),
                csv_field(&r.workflow_id),
                csv_field(&r.correlation_id),
                r.confidence,
                r.latency_ms.map(|v| v.to_string()).unwrap_or_default(),
                word(&r.status),
                r.outcome_quality
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_default(),
                r.evaluated_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            );
        }
        before = page.last().map(|r| r.id);
        if n < 500 || rows >= CSV_MAX_ROWS {
            break;
        }
    }
    Ok(csv(&format!("{id}-recommendations.csv"), out))
}

/// `GET /learning/agents/{agent_id}/series.csv?bucket=hour|day`: every
/// bucket, newest first (at most 10,000).
pub async fn series_csv(
    s: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<BucketQuery>,
) -> Page {
    let ws = s.ws();
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    let bucket = bucket_of(q.bucket.as_deref())?;
    if state.agent_name(ws, &id).await?.is_none() {
        return Err(crate::routes::agents::agent_not_found(&id).into());
    }
    state.engine.flush().await?;
    let points = state
        .store
        .agent_series(ws, &id, bucket, None, 10_000)
        .await?;
    let mut out = String::from(
        "bucket_start,recommendations,approved,partial,rejected,approval_rate,avg_quality,avg_confidence\n",
    );
    for p in &points {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{:.4}",
            p.bucket_start.to_rfc3339(),
            p.recommendations,
            p.approved,
            p.partial,
            p.rejected,
            p.approval_rate
                .map(|v| format!("{v:.4}"))
                .unwrap_or_default(),
            p.avg_quality.map(|v| format!("{v:.2}")).unwrap_or_default(),
            p.avg_confidence
        );
    }
    Ok(csv(&format!("{id}-series-{}.csv", bucket.as_str()), out))
}

// ---------------------------------------------------------------- runs

struct RunRow {
    id: Uuid,
    short: String,
    workflow: String,
    status: String,
    priority: String,
    iso: String,
    started: String,
    duration: String,
}

fn run_row(r: &RunSummary) -> RunRow {
    RunRow {
        id: r.id,
        short: r.id.to_string().chars().take(8).collect(),
        workflow: r.workflow.clone(),
        status: r.status.as_str().to_owned(),
        priority: word(&r.priority),
        iso: r.created_at.to_rfc3339(),
        started: when(r.created_at),
        duration: duration(r.created_at, r.finished_at),
    }
}

#[derive(Template)]
#[template(path = "dashboard/runs.html")]
struct RunsPage {
    chrome: Chrome,
    runs: Vec<RunRow>,
    next: Option<Uuid>,
}

/// Query of the runs list.
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    #[serde(default)]
    before: Option<String>,
}

fn parse_run_id(raw: &str, field: &str) -> Result<Uuid, DashError> {
    Uuid::parse_str(raw)
        .map_err(|_| DashError::BadRequest(format!("{field}: {raw:?} is not a run id (a UUID)")))
}

/// How many runs one page lists.
const RUNS_PAGE: u32 = 50;

/// `GET /learning/runs`.
pub async fn runs(s: Signed, state: web::Data<AppState>, q: web::Query<RunsQuery>) -> Page {
    let before = q
        .before
        .as_deref()
        .map(|b| parse_run_id(b, "before"))
        .transpose()?;
    let runs = state.store.recent_runs(s.ws(), before, RUNS_PAGE).await?;
    let next = (runs.len() == RUNS_PAGE as usize)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    html(&RunsPage {
        chrome: chrome(&s, "runs"),
        runs: runs.iter().map(run_row).collect(),
        next,
    })
}

struct StageAgentView {
    agent_id: String,
    status: String,
    latency: String,
    priority: String,
    confidence: String,
    verdict: String,
}

struct StageView {
    name: String,
    chart: String,
    agents: Vec<StageAgentView>,
}

#[derive(Template)]
#[template(path = "dashboard/run.html")]
struct RunPage {
    chrome: Chrome,
    id: Uuid,
    short: String,
    workflow: String,
    status: String,
    priority: String,
    iso: String,
    started: String,
    duration: String,
    decision: String,
    quality: String,
    error: Option<String>,
    stages: Vec<StageView>,
}

/// `GET /learning/runs/{run_id}`: 404 unless the run is the session's
/// workspace's. The stages come from the stored run report; verdicts from
/// the run's tracked recommendations.
pub async fn run(s: Signed, state: web::Data<AppState>, path: web::Path<String>) -> Page {
    let ws = s.ws();
    let id = parse_run_id(&path.into_inner(), "run_id")?;
    let run = state.store.run(ws, id).await?.ok_or_else(|| {
        DashError::Api(ApiError::new(
            crate::error::ErrorCode::RunNotFound,
            format!("workflow run {id} was not found in this workspace"),
        ))
    })?;
    let recs = state
        .store
        .workflow_recommendations(ws, &id.to_string())
        .await?;
    let verdicts: BTreeMap<String, String> = recs
        .iter()
        .map(|r| (r.id.to_string(), word(&r.status)))
        .collect();
    let report = run.result.clone().unwrap_or(serde_json::Value::Null);
    let text = |v: &serde_json::Value| -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        }
    };
    let stages: Vec<StageView> = report
        .get("stages")
        .and_then(|s| s.as_array())
        .map(|stages| {
            stages
                .iter()
                .map(|st| {
                    let name = st.get("name").map(text).unwrap_or_default();
                    let agents: Vec<StageAgentView> = st
                        .get("agents")
                        .and_then(|a| a.as_array())
                        .map(|agents| {
                            agents
                                .iter()
                                .map(|a| {
                                    let verdict = a
                                        .get("recommendation_id")
                                        .map(text)
                                        .and_then(|r| verdicts.get(&r).cloned())
                                        .unwrap_or_else(|| "not tracked".into());
                                    StageAgentView {
                                        agent_id: a.get("agent_id").map(text).unwrap_or_default(),
                                        status: a.get("status").map(text).unwrap_or_default(),
                                        latency: a
                                            .get("latency_ms")
                                            .and_then(|l| l.as_i64())
                                            .map_or_else(|| "—".into(), |l| format!("{l} ms")),
                                        priority: a
                                            .get("priority")
                                            .map(text)
                                            .filter(|p| !p.is_empty())
                                            .unwrap_or_else(|| "—".into()),
                                        confidence: a
                                            .get("answer")
                                            .and_then(|x| x.get("confidence"))
                                            .and_then(|c| c.as_f64())
                                            .map_or_else(|| "—".into(), |c| format!("{c:.2}")),
                                        verdict,
                                    }
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let lanes: Vec<svg::Lane> = st
                        .get("agents")
                        .and_then(|a| a.as_array())
                        .map(|agents| {
                            agents
                                .iter()
                                .zip(&agents_status(agents))
                                .map(|(a, status)| svg::Lane {
                                    agent: a.get("agent_id").map(text).unwrap_or_default(),
                                    latency_ms: a.get("latency_ms").and_then(|l| l.as_i64()),
                                    verdict: status.clone(),
                                    colour: match status.as_str() {
                                        "ok" => svg::GREEN,
                                        "timeout" | "error" => svg::RED,
                                        _ => svg::YELLOW,
                                    },
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    StageView {
                        chart: svg::fan_out(&name, &lanes),
                        name,
                        agents,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let result = report.get("result").cloned().unwrap_or_default();
    html(&RunPage {
        chrome: chrome(&s, "runs"),
        id,
        short: id.to_string().chars().take(8).collect(),
        workflow: run.workflow.clone(),
        status: run.status.as_str().to_owned(),
        priority: word(&run.priority),
        iso: run.created_at.to_rfc3339(),
        started: when(run.created_at),
        duration: duration(run.created_at, run.finished_at),
        decision: result
            .get("decision")
            .map(text)
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "—".into()),
        quality: report
            .get("quality")
            .and_then(|q| q.as_f64())
            .map_or_else(|| "—".into(), |q| format!("{q:.1}")),
        error: run.error.clone(),
        stages,
    })
}

fn agents_status(agents: &[serde_json::Value]) -> Vec<String> {
    agents
        .iter()
        .map(|a| {
            a.get("status")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}
