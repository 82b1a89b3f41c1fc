//! The dashboard's patterns page.

use super::*;

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
