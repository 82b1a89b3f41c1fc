//! The dashboard's runs pages.

use super::*;

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
    /// While `awaiting_approval`: the paused stage and its deadline.
    approval: Option<ApprovalView>,
    notice: Option<String>,
}

struct ApprovalView {
    stage: String,
    iso: String,
    deadline: String,
}

/// Query of a run page.
#[derive(Debug, Deserialize)]
pub struct RunQuery {
    #[serde(default)]
    done: Option<String>,
}

/// `GET /learning/runs/{run_id}`: 404 unless the run is the session's
/// workspace's. The stages come from the stored run report; verdicts from
/// the run's tracked recommendations.
pub async fn run(
    s: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<RunQuery>,
) -> Page {
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
    // A finished run's report, else (running, paused) its stored progress.
    let report = run
        .result
        .clone()
        .or_else(|| run.progress.clone())
        .unwrap_or(serde_json::Value::Null);
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
        approval: (run.status == swarmwise_actors::workflow::RunStatus::AwaitingApproval).then(
            || ApprovalView {
                stage: report
                    .get("stages")
                    .and_then(|s| s.as_array())
                    .and_then(|s| s.last())
                    .and_then(|s| s.get("name"))
                    .map(text)
                    .unwrap_or_default(),
                iso: run
                    .approval_deadline
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default(),
                deadline: run.approval_deadline.map(when).unwrap_or_default(),
            },
        ),
        notice: match q.done.as_deref() {
            Some("approved") => Some("Approved: the run continues with its next stage.".into()),
            Some("rejected") => Some("Rejected: the run ended.".into()),
            _ => None,
        },
        stages,
    })
}

/// The approve/reject form of a paused run.
#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: Option<String>,
    decision: String,
    #[serde(default)]
    comment: Option<String>,
}

/// `POST /learning/runs/{run_id}/decision`: approves or rejects a run of the
/// session's workspace paused for approval (404 for any other workspace's,
/// 409 when it is not awaiting approval), then back to the run's page.
pub async fn decide_run(
    s: Signed,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<DecisionForm>,
) -> Page {
    s.check_csrf(form.csrf.as_deref())?;
    let id = parse_run_id(&path.into_inner(), "run_id")?;
    let action = match form.decision.as_str() {
        "approve" => swarmwise_actors::workflow::ApprovalAction::Approve,
        "reject" => swarmwise_actors::workflow::ApprovalAction::Reject,
        other => {
            return Err(DashError::BadRequest(format!(
                "decision: must be approve or reject, not {other:?}"
            )))
        }
    };
    let comment = crate::routes::runs::check_comment(&state, form.comment.clone())?;
    crate::routes::runs::decide(&state, s.ws(), id, action, comment, "dashboard").await?;
    let done = match action {
        swarmwise_actors::workflow::ApprovalAction::Approve => "approved",
        swarmwise_actors::workflow::ApprovalAction::Reject => "rejected",
    };
    Ok(see_other(&format!("/learning/runs/{id}?done={done}")))
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
