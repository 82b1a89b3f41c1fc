//! Gauges derived from the database and the trust snapshots (learning,
//! trust, quality and database health of the seed's Task 8), refreshed by a
//! background task every `telemetry.stats_refresh_secs`, never per scrape:
//! a scrape costs no query, however often Prometheus asks.
//!
//! One refresh reads, per workspace, the recommendation counts by agent and
//! status, the stored patterns, the latest cycle reports and the engine's
//! trust snapshot, plus the row-level security self-check once, and renders
//! the result as Prometheus text that `/metrics` appends to the recorder's
//! output. Rendering it here (rather than through the `metrics` recorder,
//! which keeps a series forever once set) is what lets a series disappear
//! when its agent leaves the top `telemetry.max_agent_series`.
//!
//! ## Bounded agent labels
//!
//! Tenants choose agent ids, so per-agent series are capped across all
//! workspaces of the node: agents with outcomes are ranked by evaluated
//! outcomes (most first; ties by workspace and id), the first ones get a
//! series of their own, and the rest of each workspace are folded into one
//! `agent="_other"` series of that workspace; named plus `_other` series
//! never exceed the cap (if even one `_other` per workspace would, all are
//! folded into `{workspace="_other", agent="_other"}`). Label values are at
//! most 64 characters of `[A-Za-z0-9_.:-]`: a longer id (or one spelled
//! `_other`) becomes its first 47 characters, `~` and 16 hex digits of its
//! SHA-256, which no agent id can spell since ids cannot contain `~`.
//! Workspace labels are workspace ids, which only the operator creates.
//!
//! Agents with recorded tokens but no outcomes yet take part in the same
//! ranking (after every agent with outcomes) and report only
//! `swarmwise_agent_tokens_total` and `swarmwise_agent_cost_usd_total`:
//! sums over the stored recommendations, so they are counters that only
//! fall when rows are deleted (retention), which Prometheus reads as a reset.
//!
//! Each node of a cluster reports the same database-derived values; take
//! `max by (workspace)` across instances.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use swarmwise_actors::domain::{AgentId, RecommendationStatus, WorkspaceId};
use swarmwise_actors::learner::cycle::PatternStatus;
use swarmwise_actors::ports::StoreError;
use swarmwise_actors::trust::Trend;
use swarmwise_actors::Engine;

use crate::store::AdminStore;
use crate::telemetry::METRICS;

/// The label value of the series that aggregates agents past the cap.
pub const OTHER: &str = "_other";

/// Longest agent label value.
pub const MAX_LABEL_LEN: usize = 64;

/// The latest rendered gauges, shared by the refresh task and `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Prometheus text of the gauges (empty until the first refresh).
    text: RwLock<Arc<str>>,
    /// The previous RLS verdict, so a failing check is logged when it
    /// changes rather than at every refresh.
    rls_was_enforced: RwLock<Option<bool>>,
}

impl Stats {
    /// The gauges as Prometheus text.
    pub fn render(&self) -> Arc<str> {
        self.text
            .read()
            .map_or_else(|e| e.into_inner().clone(), |t| t.clone())
    }

    fn set(&self, text: String) {
        match self.text.write() {
            Ok(mut t) => *t = text.into(),
            Err(e) => *e.into_inner() = text.into(),
        }
    }

    /// Recomputes every gauge; on a store error keeps the previous values.
    pub async fn refresh(
        &self,
        store: &dyn AdminStore,
        engine: &Engine,
        max_agent_series: usize,
    ) -> Result<(), StoreError> {
        let mut gauges = Gauges::default();
        let mut agents = Vec::new();
        for ws in store.workspace_ids().await? {
            collect_workspace(store, engine, ws, &mut gauges, &mut agents).await?;
        }
        gauges.agent_series(agents, max_agent_series);
        if let Some(check) = store.rls_check().await? {
            let enforced = check.enforced();
            gauges.push(
                "swarmwise_store_rls_enforced",
                &[],
                f64::from(u8::from(enforced)),
            );
            let previous = self
                .rls_was_enforced
                .write()
                .map(|mut p| p.replace(enforced))
                .unwrap_or_default();
            if !enforced && previous != Some(false) {
                tracing::error!(
                    unprotected_tables = ?check.unprotected_tables,
                    role_bypasses = check.role_bypasses,
                    rows_visible_unscoped = check.rows_visible_unscoped,
                    "row-level security is not in force; re-run `swarmwise migrate` and check that the service role swarmwise_app is NOSUPERUSER NOBYPASSRLS (docs/monitoring.md)"
                );
            }
        }
        self.set(gauges.render());
        Ok(())
    }
}

/// Refreshes `stats` every `every` (the first at once) until `shutdown`.
pub async fn refresh_loop(
    stats: Arc<Stats>,
    store: Arc<dyn AdminStore>,
    engine: Engine,
    every: Duration,
    max_agent_series: usize,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = stats.refresh(store.as_ref(), &engine, max_agent_series).await {
                    metrics::counter!("swarmwise_stats_refresh_failures_total").increment(1);
                    tracing::warn!(error = %e, "could not refresh the database gauges; the previous values stay (check the database, /readyz)");
                }
            }
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        }
    }
}

/// One agent with outcomes or recorded tokens, before the cap is applied.
struct AgentRow {
    workspace: WorkspaceId,
    agent: AgentId,
    /// Whether it has a trust card (outcomes): only then does it report
    /// trust, approval and outcomes.
    has_card: bool,
    trust: f64,
    approval: f64,
    outcomes: u64,
    /// Recorded tokens and cost (all time): `(prompt, completion, cost_usd)`.
    usage: Option<(u64, u64, f64)>,
}

/// One sample: its labels (name, value) and its value.
type Sample = (Vec<(&'static str, String)>, f64);

/// Samples by metric name, rendered in catalogue order.
#[derive(Default)]
struct Gauges {
    samples: HashMap<&'static str, Vec<Sample>>,
}

impl Gauges {
    fn push(&mut self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        if !value.is_finite() {
            return;
        }
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.samples.entry(name).or_default().push((labels, value));
    }

    fn ws(&mut self, name: &'static str, ws: &str, value: f64) {
        self.push(name, &[("workspace", ws)], value);
    }

    /// The per-agent series under the cap (module docs).
    fn agent_series(&mut self, mut rows: Vec<AgentRow>, cap: usize) {
        rows.sort_by(|a, b| {
            b.outcomes
                .cmp(&a.outcomes)
                .then_with(|| a.workspace.0.cmp(&b.workspace.0))
                .then_with(|| a.agent.as_str().cmp(b.agent.as_str()))
        });
        let (named, folded) = split_at_cap(&rows, cap);
        for r in rows.get(..named).unwrap_or_default() {
            let ws = r.workspace.to_string();
            let agent = agent_label(r.agent.as_str());
            let labels = [("workspace", ws.as_str()), ("agent", agent.as_str())];
            if r.has_card {
                self.push("swarmwise_agent_trust_ratio", &labels, r.trust);
                self.push("swarmwise_agent_approval_ratio", &labels, r.approval);
                self.push("swarmwise_agent_outcomes", &labels, r.outcomes as f64);
            }
            if let Some(u) = r.usage {
                self.usage(&labels, u);
            }
        }
        let rest = rows.get(named..).unwrap_or_default();
        self.push("swarmwise_agent_series_folded", &[], rest.len() as f64);
        let mut groups: BTreeMap<String, Folded> = BTreeMap::new();
        for r in rest {
            let key = match folded {
                Folding::PerWorkspace => r.workspace.to_string(),
                Folding::All => OTHER.to_owned(),
            };
            let g = groups.entry(key).or_default();
            if r.has_card {
                g.trust += r.trust;
                g.approved += r.approval * r.outcomes as f64;
                g.outcomes += r.outcomes;
                g.carded += 1;
            }
            if let Some((p, c, cost)) = r.usage {
                let u = g.usage.get_or_insert((0, 0, 0.0));
                u.0 += p;
                u.1 += c;
                u.2 += cost;
            }
        }
        for (ws, g) in groups {
            let labels = [("workspace", ws.as_str()), ("agent", OTHER)];
            if g.carded > 0 {
                self.push(
                    "swarmwise_agent_trust_ratio",
                    &labels,
                    g.trust / g.carded as f64,
                );
                if g.outcomes > 0 {
                    self.push(
                        "swarmwise_agent_approval_ratio",
                        &labels,
                        g.approved / g.outcomes as f64,
                    );
                }
                self.push("swarmwise_agent_outcomes", &labels, g.outcomes as f64);
            }
            if let Some(u) = g.usage {
                self.usage(&labels, u);
            }
        }
    }

    /// The token and cost series of one agent (or one `_other` group).
    fn usage(&mut self, labels: &[(&'static str, &str); 2], (p, c, cost): (u64, u64, f64)) {
        let [ws, agent] = *labels;
        self.push(
            "swarmwise_agent_tokens_total",
            &[ws, agent, ("kind", "prompt")],
            p as f64,
        );
        self.push(
            "swarmwise_agent_tokens_total",
            &[ws, agent, ("kind", "completion")],
            c as f64,
        );
        self.push("swarmwise_agent_cost_usd_total", labels, cost);
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for metric in METRICS {
            let Some(samples) = self.samples.get(metric.name) else {
                continue;
            };
            let _ = writeln!(out, "# HELP {} {}", metric.name, escape_help(metric.help));
            let _ = writeln!(out, "# TYPE {} {}", metric.name, metric.kind);
            for (labels, value) in samples {
                out.push_str(metric.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {value}");
            }
        }
        out
    }
}

/// What the agents folded into one `_other` series add up to.
#[derive(Default)]
struct Folded {
    /// Sum of overall trust of the agents with a card.
    trust: f64,
    /// Approved outcomes (approval × outcomes, summed).
    approved: f64,
    /// Outcomes.
    outcomes: u64,
    /// Agents with a card.
    carded: u64,
    /// Tokens and cost, when any folded agent recorded some.
    usage: Option<(u64, u64, f64)>,
}

/// How agents past the cap are folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Folding {
    /// One `agent="_other"` series per workspace.
    PerWorkspace,
    /// One `{workspace="_other", agent="_other"}` series for all.
    All,
}

/// How many of `rows` (ranked) get a series of their own so that those plus
/// one `_other` series per workspace with folded agents stay within `cap`.
fn split_at_cap(rows: &[AgentRow], cap: usize) -> (usize, Folding) {
    let mut named = cap.min(rows.len());
    let mut folded_per_ws: HashMap<WorkspaceId, usize> = HashMap::new();
    for r in rows.get(named..).unwrap_or_default() {
        *folded_per_ws.entry(r.workspace).or_default() += 1;
    }
    loop {
        if named + folded_per_ws.len() <= cap {
            return (named, Folding::PerWorkspace);
        }
        if named == 0 {
            // Even one `_other` per workspace would pass the cap.
            return (0, Folding::All);
        }
        named -= 1;
        if let Some(r) = rows.get(named) {
            *folded_per_ws.entry(r.workspace).or_default() += 1;
        }
    }
}

/// An agent id as a bounded label value (module docs).
pub fn agent_label(id: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if !id.is_empty() && id.len() <= MAX_LABEL_LEN && id.chars().all(safe) && id != OTHER {
        return id.to_owned();
    }
    let digest = Sha256::digest(id.as_bytes());
    let mut out: String = id
        .chars()
        .take(47)
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    out.push('~');
    for b in digest.iter().take(8) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Reads one workspace's figures into `g` and its agents into `agents`.
async fn collect_workspace(
    store: &dyn AdminStore,
    engine: &Engine,
    ws: WorkspaceId,
    g: &mut Gauges,
    agents: &mut Vec<AgentRow>,
) -> Result<(), StoreError> {
    let label = ws.to_string();
    // Recommendations: rows and the share evaluated.
    let (mut total, mut evaluated) = (0u64, 0u64);
    for (_, status, n) in store.status_counts(ws).await? {
        total += n;
        if matches!(
            status,
            RecommendationStatus::Approved
                | RecommendationStatus::Partial
                | RecommendationStatus::Rejected
        ) {
            evaluated += n;
        }
    }
    g.push(
        "swarmwise_store_rows",
        &[("workspace", &label), ("table", "recommendations")],
        total as f64,
    );
    if total > 0 {
        g.ws(
            "swarmwise_recommendations_evaluated_ratio",
            &label,
            evaluated as f64 / total as f64,
        );
    }
    // Patterns by status.
    let patterns = store.patterns(ws).await?;
    g.push(
        "swarmwise_store_rows",
        &[("workspace", &label), ("table", "patterns")],
        patterns.len() as f64,
    );
    for status in [
        PatternStatus::Candidate,
        PatternStatus::Confirmed,
        PatternStatus::Retired,
    ] {
        let n = patterns.iter().filter(|p| p.status == status).count();
        g.push(
            "swarmwise_patterns",
            &[("workspace", &label), ("status", status.as_str())],
            n as f64,
        );
    }
    let weakening = patterns
        .iter()
        .filter(|p| p.status == PatternStatus::Confirmed && p.misses > 0)
        .count();
    g.ws(
        "swarmwise_patterns_confidence_low",
        &label,
        weakening as f64,
    );
    // The latest successful cycle, and the latest one that had a hold-out.
    let cycles = store.cycles(ws, 20).await?;
    let succeeded = || cycles.iter().filter(|c| c.status == "succeeded");
    if let Some(at) = succeeded().find_map(|c| c.finished_at) {
        g.ws(
            "swarmwise_learning_last_success_timestamp_seconds",
            &label,
            at.timestamp_micros() as f64 / 1e6,
        );
    }
    if let Some(c) = succeeded().find(|c| c.model_accuracy.is_some()) {
        if let Some(a) = c.model_accuracy {
            g.ws("swarmwise_learning_model_accuracy_ratio", &label, a);
        }
        if let Some(v) = c.coverage {
            g.ws("swarmwise_learning_model_coverage_ratio", &label, v);
        }
    }
    // Trust and quality from the engine's snapshot (agents with outcomes).
    let snapshot = engine.trust(ws);
    let cards: Vec<_> = snapshot.agents.iter().collect();
    let (mut improving, mut declining) = (0u32, 0u32);
    let (mut quality_sum, mut samples) = (0.0, 0u64);
    for (id, c) in &cards {
        match c.overall.trend {
            Trend::Improving => improving += 1,
            Trend::Declining => declining += 1,
            Trend::Stable => {}
        }
        quality_sum += c.overall.avg_quality * c.overall.sample_count as f64;
        samples += c.overall.sample_count;
        agents.push(AgentRow {
            workspace: ws,
            agent: (*id).clone(),
            has_card: true,
            trust: c.overall.overall_trust,
            approval: c.overall.approval_rate,
            outcomes: c.overall.sample_count,
            usage: None,
        });
    }
    // Tokens and cost per agent (all time), onto the rows above or as rows
    // of their own for agents without outcomes yet.
    let first = agents.len().saturating_sub(cards.len());
    let at: HashMap<AgentId, usize> = agents
        .iter()
        .enumerate()
        .skip(first)
        .map(|(i, r)| (r.agent.clone(), i))
        .collect();
    for u in store.usage_totals(ws, None, None).await? {
        let totals = Some((u.prompt_tokens, u.completion_tokens, u.cost_usd));
        match at.get(&u.agent_id).and_then(|i| agents.get_mut(*i)) {
            Some(row) => row.usage = totals,
            None => agents.push(AgentRow {
                workspace: ws,
                agent: u.agent_id,
                has_card: false,
                trust: 0.0,
                approval: 0.0,
                outcomes: 0,
                usage: totals,
            }),
        }
    }
    g.ws("swarmwise_agents_improving", &label, f64::from(improving));
    g.ws("swarmwise_agents_declining", &label, f64::from(declining));
    if !cards.is_empty() {
        let n = cards.len() as f64;
        let mean = cards
            .iter()
            .map(|(_, c)| c.overall.overall_trust)
            .sum::<f64>()
            / n;
        let variance = cards
            .iter()
            .map(|(_, c)| (c.overall.overall_trust - mean).powi(2))
            .sum::<f64>()
            / n;
        g.ws("swarmwise_trust_average_ratio", &label, mean);
        g.ws("swarmwise_trust_variance", &label, variance);
    }
    if samples > 0 {
        g.ws(
            "swarmwise_outcome_quality_average",
            &label,
            quality_sum / samples as f64,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn row(ws: u128, agent: &str, outcomes: u64) -> AgentRow {
        AgentRow {
            workspace: WorkspaceId(uuid::Uuid::from_u128(ws)),
            agent: AgentId::parse("agent", agent).unwrap(),
            has_card: true,
            trust: 0.5,
            approval: 0.5,
            outcomes,
            usage: None,
        }
    }

    #[test]
    fn labels_are_bounded_distinct_and_never_other() {
        let long_a = "a".repeat(128);
        let long_b = format!("{}b", "a".repeat(127));
        let (la, lb) = (agent_label(&long_a), agent_label(&long_b));
        assert!(la.len() <= MAX_LABEL_LEN && lb.len() <= MAX_LABEL_LEN);
        assert_ne!(la, lb);
        assert_eq!(agent_label("architect-1"), "architect-1");
        assert_ne!(agent_label(OTHER), OTHER);
        let odd = agent_label("a\"b\\c\nd{}");
        assert!(odd
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-~".contains(c)));
    }

    #[test]
    fn the_cap_counts_other_series_too() {
        // Two workspaces of 30 agents each, cap 10: 9 named + ... ≤ 10.
        let mut rows = Vec::new();
        for ws in 1..=2 {
            for i in 0..30 {
                rows.push(row(ws, &format!("a{i}"), 100 - i));
            }
        }
        let mut g = Gauges::default();
        g.agent_series(rows, 10);
        let trust = &g.samples["swarmwise_agent_trust_ratio"];
        assert!(trust.len() <= 10, "{} series", trust.len());
        assert_eq!(
            trust.iter().filter(|(l, _)| l[1].1 == OTHER).count(),
            2,
            "one _other per workspace"
        );
        let folded = g.samples["swarmwise_agent_series_folded"][0].1;
        assert_eq!(folded as usize + trust.len() - 2, 60);
    }

    #[test]
    fn usage_series_are_capped_and_folded_with_the_agents() {
        let mut rows: Vec<AgentRow> = (0..4).map(|i| row(1, &format!("a{i}"), 10 - i)).collect();
        rows[3].usage = Some((100, 10, 0.5));
        // A usage-only agent ranks last and is folded into _other.
        let mut extra = row(1, "spender", 0);
        extra.has_card = false;
        extra.usage = Some((1_000, 100, 2.0));
        rows.push(extra);
        let mut g = Gauges::default();
        g.agent_series(rows, 3);
        let tokens = &g.samples["swarmwise_agent_tokens_total"];
        let cost = &g.samples["swarmwise_agent_cost_usd_total"];
        assert_eq!(cost.len(), 1, "only the _other group spent: {cost:?}");
        assert_eq!(cost[0].0[1].1, OTHER);
        assert!((cost[0].1 - 2.5).abs() < 1e-12);
        let prompt: f64 = tokens
            .iter()
            .filter(|(l, _)| l[2].1 == "prompt")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(prompt, 1_100.0);
        // The usage-only agent does not drag the folded trust mean to 0.
        let trust = &g.samples["swarmwise_agent_trust_ratio"];
        assert!(trust.iter().all(|(_, v)| (*v - 0.5).abs() < 1e-12));
    }

    #[test]
    fn more_workspaces_than_the_cap_fold_into_one_series() {
        let rows = (1..=5).map(|ws| row(ws, "a", 1)).collect();
        let mut g = Gauges::default();
        g.agent_series(rows, 3);
        let trust = &g.samples["swarmwise_agent_trust_ratio"];
        assert_eq!(trust.len(), 1);
        assert_eq!(trust[0].0[0].1, OTHER);
    }

    #[test]
    fn under_the_cap_every_agent_is_named() {
        let rows = (0..5).map(|i| row(1, &format!("a{i}"), 1)).collect();
        let mut g = Gauges::default();
        g.agent_series(rows, 5);
        let trust = &g.samples["swarmwise_agent_trust_ratio"];
        assert_eq!(trust.len(), 5);
        assert!(trust.iter().all(|(l, _)| l[1].1 != OTHER));
        assert_eq!(g.samples["swarmwise_agent_series_folded"][0].1, 0.0);
    }
}
