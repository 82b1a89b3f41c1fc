//! The dashboard's overview page.

use super::*;

/// A firing alert of the workspace, as the overview lists it.
struct FiringAlert {
    id: String,
    severity: &'static str,
    rule: String,
    subject: String,
    summary: String,
    fired_iso: String,
    ago: String,
    acked: bool,
}

/// Firing alerts shown on the overview (the rest: `GET /api/v1/alerts`).
const FIRING_SHOWN: u32 = 10;

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
    firing: Vec<FiringAlert>,
    more_firing: bool,
}

/// Query of pages that show a notice after an action.
#[derive(Debug, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    done: Option<String>,
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
    let mut firing = state
        .store
        .list_alerts(
            swarmwise_actors::ports::AlertScope::Workspace(ws),
            &swarmwise_actors::ports::AlertFilter {
                status: Some(swarmwise_actors::alerts::AlertStatus::Firing),
                limit: FIRING_SHOWN + 1,
                ..Default::default()
            },
        )
        .await?;
    let more_firing = firing.len() > FIRING_SHOWN as usize;
    firing.truncate(FIRING_SHOWN as usize);
    let firing = firing
        .into_iter()
        .map(|a| FiringAlert {
            id: a.id.to_string(),
            severity: a.severity.as_str(),
            rule: a.rule,
            subject: a.subject,
            summary: a.summary,
            fired_iso: a.fired_at.to_rfc3339(),
            ago: ago(a.fired_at),
            acked: a.acked_at.is_some(),
        })
        .collect();
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
        firing,
        more_firing,
    })
}

/// `GET /learning/partials/insights`: the widget alone (the script swaps
/// it in when an event arrives).
pub async fn insights_partial(s: Signed, state: web::Data<AppState>) -> Page {
    html(&insights_partial_of(&state, &s).await?)
}

/// `GET /learning/events`: the session's workspace's events (the API's
/// stream, scoped by the session instead of a bearer key).
pub async fn events(s: Signed, req: actix_web::HttpRequest, state: web::Data<AppState>) -> Page {
    let last = crate::routes::events::last_event_id(&req);
    Ok(crate::routes::events::stream_for(&state, s.ws(), last)?)
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
