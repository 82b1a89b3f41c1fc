//! The dashboard's agent page.

use super::*;

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
    quarantine: Option<QuarantineBadge>,
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
    state.engine.flush_workspace(ws).await?;
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
        quarantine: QuarantineBadge::of(registered.as_ref().and_then(|a| a.quarantine.as_ref())),
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
    state.engine.flush_workspace(ws).await?;
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
                    not_before: None,
                    window: None,
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
    state.engine.flush_workspace(ws).await?;
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
