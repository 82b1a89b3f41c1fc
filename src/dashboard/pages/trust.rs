//! The dashboard's trust page.

use super::*;

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
    quarantine: Option<QuarantineBadge>,
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
    let mut registered: BTreeMap<String, (bool, Option<QuarantineBadge>)> = state
        .store
        .agents(ws)
        .await?
        .into_iter()
        .map(|a| {
            let badge = QuarantineBadge::of(a.quarantine.as_ref());
            (a.id.to_string(), (a.enabled, badge))
        })
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
                enabled: registered.get(&a.agent_id).is_some_and(|r| r.0),
                registered: registered.contains_key(&a.agent_id),
                quarantine: registered.get_mut(&a.agent_id).and_then(|r| r.1.take()),
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
