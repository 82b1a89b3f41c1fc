//! Logging, metrics registration and the panic hook.
//!
//! Metrics follow `swarmwise_<name>_<unit>[_total]`; every one is described
//! here, and every `_seconds` histogram gets explicit buckets.
//!
//! The recorder is installed with `install_recorder`, which (unlike the
//! exporter's `install`) starts no upkeep task: a histogram keeps each
//! recorded sample in memory until it is folded into its buckets. Rendering
//! `/metrics` folds them, and so does [`metrics_upkeep`], which
//! `Application::build` runs every `telemetry.metrics_upkeep_secs`, so memory
//! stays flat with or without a scraper.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Buckets for latency histograms, in seconds (50 µs … 10 s).
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Buckets of `swarmwise_learning_cycle_duration_seconds` (10 ms … 1 h): a
/// cycle of 1k outcomes takes milliseconds, one of millions seconds, and
/// the `learning_cycle_slow` alert needs a bucket edge at 600 s (10 min).
pub const CYCLE_SECONDS_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Full name, `swarmwise_` prefixed, base units.
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Label names (every value comes from a closed set, or is bounded:
    /// `workspace` by the operator's workspaces, `agent` by
    /// `telemetry.max_agent_series`).
    pub labels: &'static [&'static str],
    /// What it measures (the `# HELP` line).
    pub help: &'static str,
}

const fn m(
    name: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

/// Every metric the service emits. `docs/monitoring.md` is generated from
/// it ([`metrics_markdown_table`]) and a test keeps the two equal; another
/// test checks every name `/metrics` exposes is here.
#[rustfmt::skip]
pub const METRICS: &[Metric] = &[
    // HTTP and tracking.
    m("swarmwise_http_request_duration_seconds", "histogram", &["method", "route", "status"],
      "HTTP request latency by method, route and status"),
    m("swarmwise_recommendations_tracked_total", "counter", &[],
      "Recommendations accepted for tracking"),
    m("swarmwise_recommendations_persisted_total", "counter", &[],
      "Recommendations committed to the store"),
    m("swarmwise_recommendations_evaluated_total", "counter", &[],
      "Recommendations that received a verdict"),
    m("swarmwise_feedback_total", "counter", &[], "Human feedback received"),
    m("swarmwise_audit_write_failures_total", "counter", &[],
      "Audit log entries that could not be stored (the action itself stood)"),
    m("swarmwise_idempotency_requests_total", "counter", &["outcome"],
      "Requests sent with an Idempotency-Key, by outcome: stored (ran, answer kept), released (ran, answer not kept: 5xx, 408, 409, 429), replayed, in_progress (409), key_reused (422), invalid_key (400), lost_claim (ran, answer could not be kept)"),
    m("swarmwise_idempotency_keys_purged_total", "counter", &[],
      "Expired Idempotency-Key records deleted (idempotency.ttl_secs)"),
    m("swarmwise_tracker_rejected_total", "counter", &[],
      "Recommendations refused because too many writes were pending"),
    m("swarmwise_tracker_backpressure_waits_total", "counter", &[],
      "Tracking requests that waited for room in the write buffer (tracking.max_pending_wait_ms) before being taken or shed"),
    m("swarmwise_tracker_flush_seconds", "histogram", &[],
      "Time to commit one batch of recommendations"),
    m("swarmwise_group_commit_batches_total", "counter", &["queue"],
      "Group-committed transactions (queue: evaluations, run_writes)"),
    m("swarmwise_group_commit_items_total", "counter", &["queue"],
      "Items committed in group-committed transactions; divided by batches, the mean batch size"),
    m("swarmwise_sqlite_write_gate_wait_seconds", "histogram", &["operation"],
      "SQLite: time a write transaction waited for this process's write gate (one writer at a time), by store operation"),
    m("swarmwise_sqlite_write_gate_held_seconds", "histogram", &["operation"],
      "SQLite: time a write transaction held the write gate, by store operation; the rate of the sums over all operations is the share of time the gate is taken (near 1: the single writer sets the pace)"),
    m("swarmwise_sqlite_checkpoint_seconds", "histogram", &[],
      "SQLite: time one tick of the background checkpointer took (database.sqlite_checkpoint_interval_ms): its pass without the write gate, the wait for the gate and its pass under it (that part also in the gate histograms, operation checkpoint)"),
    m("swarmwise_tracker_flush_failures_total", "counter", &[],
      "Batch commits that failed transiently (database unavailable) and were retried"),
    m("swarmwise_tracker_dead_letters_total", "counter", &[],
      "Recommendations the store refused for a permanent reason, moved to the dead-letter table"),
    m("swarmwise_tracker_read_timeouts_total", "counter", &[],
      "Reads that gave up waiting for pending writes (tracking.read_flush_timeout_ms) and answered 503"),
    m("swarmwise_tracker_pending_writes", "gauge", &[],
      "Recommendations acknowledged but not yet committed"),
    // Agents and workflows.
    m("swarmwise_agent_failures_total", "counter", &["kind"],
      "Failed executions of agents recorded against their reliability, by kind (error, timeout, invalid)"),
    m("swarmwise_agent_panics_total", "counter", &[],
      "Agent backend calls that panicked (answered as an error; the agent restarts)"),
    m("swarmwise_agent_admission_changes_total", "counter", &["state"],
      "Agent admission changes by the state entered: quarantined, probation, readmitted, held (docs/admission.md)"),
    m("swarmwise_workflow_runs_total", "counter", &["status"],
      "Finished workflow runs by status"),
    m("swarmwise_workflow_runs_taken_over_total", "counter", &[],
      "Runs of a stopped node (lease expired or released) claimed by this node and resumed after their last stored stage (docs/runtime.md, Durable runs)"),
    m("swarmwise_workflow_runs_resumed_total", "counter", &[],
      "Runs that continued from stored progress (taken over, or approved after a pause)"),
    m("swarmwise_workflow_leases_lost_total", "counter", &[],
      "Runs this node stopped executing because another node claimed them after its lease expired (its writes were refused by the fencing token)"),
    m("swarmwise_workflow_stage_retries_total", "counter", &[],
      "Failed agent calls asked again by a stage's retries"),
    m("swarmwise_workflow_approvals_total", "counter", &["decision", "by"],
      "Approval steps: decision requested (a run paused), approved or rejected; by runner, api, deadline"),
    m("swarmwise_late_replies_total", "counter", &[],
      "Agent answers that arrived after their stage's deadline (within agents.late_grace_factor) and were tracked late"),
    m("swarmwise_rate_limited_total", "counter", &["limit"],
      "Requests and tasks refused by a fairness limit, by limit (api_key, workflow_runs, agent_queue)"),
    // Learning system health.
    m("swarmwise_learning_cycles_total", "counter", &["status"],
      "Finished learning cycles by status (succeeded, failed); success rate = succeeded / all"),
    m("swarmwise_learning_cycle_duration_seconds", "histogram", &[],
      "Duration of successful learning cycles (buckets 10 ms to 1 h)"),
    m("swarmwise_learning_cycles_requested_total", "counter", &[],
      "Learning cycles requested because learning.cycle_every_outcomes outcomes were evaluated"),
    m("swarmwise_scheduled_jobs_total", "counter", &["job"],
      "Scheduled job occurrences this node ran, by job (learning_cycle, trust_recompute, retention); cluster-wide jobs count on the node that claimed the occurrence"),
    m("swarmwise_scheduler_leader", "gauge", &[],
      "1 while this node holds the scheduler's leadership lease (runs learning cycles and retention), else 0; exactly one node of a cluster should show 1"),
    m("swarmwise_retention_removed_rows_total", "counter", &["kind"],
      "Rows retention removed (or archived), by kind (recommendations, dead_letters, trust_history)"),
    m("swarmwise_patterns", "gauge", &["workspace", "status"],
      "Stored patterns by status (candidate, confirmed, retired)"),
    m("swarmwise_patterns_confidence_low", "gauge", &["workspace"],
      "Confirmed patterns that missed significance in their latest cycle (q-value above learner.mining.max_q); retired after learner.lifecycle.retire_after_misses misses in a row"),
    m("swarmwise_learning_model_accuracy_ratio", "gauge", &["workspace"],
      "Held-out accuracy of the learned model in the latest successful cycle that had a hold-out"),
    m("swarmwise_learning_model_coverage_ratio", "gauge", &["workspace"],
      "Share of held-out outcomes a learned rule applies to, in the latest successful cycle that had a hold-out"),
    m("swarmwise_learning_last_success_timestamp_seconds", "gauge", &["workspace"],
      "Unix time the latest successful learning cycle finished"),
    // Trust score health.
    m("swarmwise_trust_updates_total", "counter", &[], "Outcomes folded into trust"),
    m("swarmwise_trust_reload_seconds", "histogram", &[], "Time to reload trust from the store"),
    m("swarmwise_trust_persist_failures_total", "counter", &[], "Failed writes of trust cards"),
    m("swarmwise_trust_recompute_failures_total", "counter", &[],
      "Trust recomputes that failed (the last good state stays in force)"),
    m("swarmwise_trust_average_ratio", "gauge", &["workspace"],
      "Mean overall trust over the workspace's agents with at least one outcome"),
    m("swarmwise_trust_variance", "gauge", &["workspace"],
      "Population variance of overall trust over the workspace's agents with at least one outcome"),
    m("swarmwise_agents_improving", "gauge", &["workspace"],
      "Agents whose trust trend is improving"),
    m("swarmwise_agents_declining", "gauge", &["workspace"],
      "Agents whose trust trend is declining"),
    m("swarmwise_agent_trust_ratio", "gauge", &["workspace", "agent"],
      "Overall trust of an agent (agent=\"_other\": mean over the agents past telemetry.max_agent_series)"),
    // Recommendation quality.
    m("swarmwise_agent_approval_ratio", "gauge", &["workspace", "agent"],
      "Approved / evaluated recommendations of an agent, raw (agent=\"_other\": pooled over the agents past the cap)"),
    m("swarmwise_agent_outcomes", "gauge", &["workspace", "agent"],
      "Evaluated outcomes of an agent (agent=\"_other\": summed over the agents past the cap)"),
    // Tokens and cost (src/costs.rs).
    m("swarmwise_agent_tokens_total", "counter", &["workspace", "agent", "kind"],
      "Tokens recorded with an agent's recommendations, by kind (prompt, completion); sums over stored rows (agent=\"_other\": past the cap)"),
    m("swarmwise_agent_cost_usd_total", "counter", &["workspace", "agent"],
      "Cost in US dollars of an agent's priced recommendations, from the [costs.models] price table; sums over stored rows (agent=\"_other\": past the cap)"),
    m("swarmwise_model_tokens_total", "counter", &["model", "kind"],
      "Tokens reported by openai and http agent calls this node made, by kind (prompt, completion); model is a [costs.models] key or _other"),
    m("swarmwise_agent_series_folded", "gauge", &[],
      "Agents reported under agent=\"_other\" because telemetry.max_agent_series was reached"),
    m("swarmwise_outcome_quality_average", "gauge", &["workspace"],
      "Mean outcome quality score (0-100) over the workspace's evaluated recommendations"),
    m("swarmwise_recommendations_evaluated_ratio", "gauge", &["workspace"],
      "Share of the workspace's recommendations that are evaluated (approved, partial or rejected)"),
    // Database health.
    m("swarmwise_store_rows", "gauge", &["workspace", "table"],
      "Rows per workspace of agent_recommendations (table=recommendations) and recommendation_patterns (table=patterns)"),
    m("swarmwise_store_query_duration_seconds", "histogram", &["operation"],
      "Duration of store calls by operation (the store method's name)"),
    m("swarmwise_store_errors_total", "counter", &["operation", "kind"],
      "Failed store calls by operation and kind (conflict, unavailable, rejected, unexpected)"),
    m("swarmwise_store_rls_enforced", "gauge", &[],
      "1 when the row-level security self-check passes, else 0 (PostgreSQL only; absent on SQLite)"),
    m("swarmwise_stats_refresh_failures_total", "counter", &[],
      "Refreshes of the database-derived gauges that failed (the previous values stay)"),
    // The change feed (src/sync.rs): what other processes changed.
    m("swarmwise_sync_changes_applied_total", "counter", &["kind"],
      "Change-feed rows of other processes applied, by kind (outcomes, verdicts, failures, agents, admission, patterns, keys)"),
    m("swarmwise_sync_delay_seconds", "histogram", &[],
      "From a feed row's commit (database clock) to this node having applied it"),
    m("swarmwise_sync_poll_failures_total", "counter", &[],
      "Reads of the change feed that failed (retried at the next poll)"),
    m("swarmwise_sync_full_refreshes_total", "counter", &[],
      "Rebuilds of all derived state from the tables (at start, or after falling behind the retained feed)"),
    m("swarmwise_sync_pruned_rows_total", "counter", &[],
      "Change-feed rows older than cluster.sync_retention_secs deleted by this node"),
    // Alerts and the process.
    m("swarmwise_alerts_firing", "gauge", &["severity", "rule"],
      "Alerts currently firing by severity and rule"),
    m("swarmwise_alert_transitions_total", "counter", &["rule", "status"],
      "Alerts raised and resolved by this node, by rule and status (firing, resolved)"),
    m("swarmwise_alert_notifications_silenced_total", "counter", &[],
      "Alert notifications a silence suppressed"),
    // Notifiers (src/notify): labels are operator-declared names only.
    m("swarmwise_notifications_sent_total", "counter", &["notifier", "kind"],
      "Alert notifications delivered, by notifier and kind"),
    m("swarmwise_notifications_failed_total", "counter", &["notifier", "kind"],
      "Alert notifications given up (refused by the receiver, or out of attempts), by notifier and kind"),
    m("swarmwise_notifications_dropped_total", "counter", &["notifier", "kind"],
      "Alert notifications dropped because the notifier's queue was full, by notifier and kind"),
    m("swarmwise_notifier_up", "gauge", &["notifier"],
      "1 if the notifier's last delivery attempt succeeded (or none was made yet), 0 if it failed"),
    // Redis and the event streams.
    m("swarmwise_redis_up", "gauge", &[],
      "1 while Redis answers, 0 during an outage (absent without redis.url)"),
    m("swarmwise_redis_fallbacks_total", "counter", &["op"],
      "Redis calls skipped, failed or past redis.op_timeout_ms, answered by the fallback, by op (patterns_get, patterns_set, patterns_delete, event_numbering, event_publish)"),
    m("swarmwise_events_relayed_total", "counter", &["direction"],
      "Events relayed over Redis pub/sub: batches published by this node (direction=published), events received from other nodes (received)"),
    m("swarmwise_event_streams_open", "gauge", &[],
      "Server-sent event streams open on this node (all workspaces)"),
    m("swarmwise_event_resets_total", "counter", &["reason"],
      "Reset events sent to streams, by reason (unknown_last_event_id, expired, lagged, numbering_changed, relay_interrupted)"),
    m("swarmwise_actor_restarts_total", "counter", &["actor"], "Supervisor restarts by actor"),
    // OpenTelemetry trace export (docs/tracing.md).
    m("swarmwise_otlp_spans_exported_total", "counter", &[],
      "Spans the OTLP collector accepted"),
    m("swarmwise_otlp_spans_failed_total", "counter", &[],
      "Spans in OTLP export requests that failed or timed out (lost)"),
    m("swarmwise_otlp_spans_dropped_total", "counter", &[],
      "Spans dropped because telemetry.otlp.max_queue_size spans were waiting for export"),
    m("swarmwise_panics_total", "counter", &[], "Panics caught by the panic hook"),
];

/// The metric table of `docs/monitoring.md` (Markdown, one row per metric).
pub fn metrics_markdown_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for metric in METRICS {
        let labels = if metric.labels.is_empty() {
            "—".to_owned()
        } else {
            metric
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            metric.name,
            metric.kind,
            labels,
            metric.help.replace('|', "\\|")
        ));
    }
    out
}

/// The `method` label of an HTTP request: one of the standard methods, or
/// `other`. Label values come from closed sets only, so a client inventing
/// methods (`FCX1` … `FCX500`) cannot grow the series count.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The header that carries a request's id: taken from the request when it
/// is a well-formed id, else generated; always echoed in the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of a request: the client's `x-request-id` if it is 1–64 characters
/// of `[A-Za-z0-9._:-]` (anything else could forge or flood log lines, so it
/// is ignored), else a new UUID v7.
pub fn request_id(headers: &actix_web::http::header::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// The span of one HTTP request: its id, method and path (cut at 200
/// bytes), and the workspace once authentication knows it. Everything the
/// request causes (a run, its agent tasks, store calls) is logged inside it.
pub fn request_span(request_id: &str, method: &str, path: &str) -> tracing::Span {
    let mut cut = path.len().min(200);
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %path.get(..cut).unwrap_or_default(),
        workspace = tracing::field::Empty,
        route = tracing::field::Empty,
        status = tracing::field::Empty,
    )
}

/// Starts logging (idempotent; tests log only when `TEST_LOG` is set).
/// Colours only on a terminal, so a log file or pipe can be filtered on
/// `run_id=...` as printed.
pub fn init_logging(default_level: &str) {
    let _ = init_with(default_level, None);
}

/// Starts logging and, when `[telemetry.otlp] endpoint` is set, the
/// OpenTelemetry trace export ([`crate::otel`]); the returned export is
/// shut down (queued spans sent) when `serve` ends. A collector that is
/// down or an exporter that cannot be built never stops the service: it
/// is logged and the service runs without export.
pub fn init(settings: &crate::config::TelemetrySettings) -> Option<crate::otel::Exporting> {
    let otlp = &settings.otlp;
    let exporting = if otlp.endpoint.is_empty() {
        None
    } else {
        match crate::otel::Exporting::start(otlp) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("warning: OTLP trace export is off: {e:#}; check telemetry.otlp");
                None
            }
        }
    };
    let installed = init_with(&settings.log_level, exporting.as_ref());
    if installed && exporting.is_some() {
        tracing::info!(
            endpoint = %crate::otel::traces_url(&otlp.endpoint),
            sample_ratio = otlp.sample_ratio,
            "exporting traces over OTLP/HTTP"
        );
    }
    exporting.filter(|_| installed)
}

/// Installs the subscriber once per process: the fmt logger filtered by
/// `default_level` (or `RUST_LOG`), and the OpenTelemetry layer of
/// `exporting` filtered to the exported spans (their own filter, so a
/// quiet log level does not stop the traces). False when already done.
fn init_with(default_level: &str, exporting: Option<&crate::otel::Exporting>) -> bool {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    static ONCE: OnceLock<()> = OnceLock::new();
    let mut installed = false;
    ONCE.get_or_init(|| {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
        let fmt = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_filter(filter);
        let otel = exporting.map(|e| {
            tracing_opentelemetry::layer()
                .with_tracer(e.tracer())
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_level(false)
                .with_tracked_inactivity(false)
                .with_filter(tracing_subscriber::filter::filter_fn(
                    crate::otel::export::exported,
                ))
        });
        installed = tracing_subscriber::registry()
            .with(fmt)
            .with(otel)
            .try_init()
            .is_ok();
        install_panic_hook();
    });
    installed
}

fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        metrics::counter!("swarmwise_panics_total").increment(1);
        tracing::error!(panic = %info, "panic");
        previous(info);
    }));
}

/// Folds the histogram samples recorded since the last call into their
/// buckets, every `every`, until `shutdown` turns true (or its sender is
/// gone). Without it a histogram grows by 16 bytes per sample for as long as
/// nobody scrapes `/metrics`.
pub async fn metrics_upkeep(
    handle: PrometheusHandle,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        }
    }
    handle.run_upkeep();
}

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn prometheus() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    // Full matchers are tried before suffix ones.
                    b.set_buckets_for_metric(
                        Matcher::Full("swarmwise_learning_cycle_duration_seconds".into()),
                        CYCLE_SECONDS_BUCKETS,
                    )
                })
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| e.to_string())?;
            for metric in METRICS {
                let (name, help) = (metric.name, metric.help);
                match metric.kind {
                    "histogram" => describe_histogram!(name, Unit::Seconds, help),
                    "gauge" => describe_gauge!(name, help),
                    _ => describe_counter!(name, help),
                }
            }
            Ok(handle)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("could not install the Prometheus recorder: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/monitoring.md");
    const BEGIN: &str = "<!-- BEGIN GENERATED: telemetry::metrics_markdown_table -->\n";
    const END: &str = "<!-- END GENERATED -->";

    #[test]
    fn metric_names_follow_the_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} listed twice", m.name);
            assert!(m.name.starts_with("swarmwise_"), "{}", m.name);
            assert!(
                m.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                m.name
            );
            match m.kind {
                "counter" => assert!(m.name.ends_with("_total"), "{}", m.name),
                "histogram" => assert!(m.name.ends_with("_seconds"), "{}", m.name),
                "gauge" => assert!(!m.name.ends_with("_total"), "{}", m.name),
                other => panic!("{}: unknown kind {other}", m.name),
            }
            assert!(!m.help.is_empty() && !m.help.contains('\n'));
        }
    }

    #[test]
    fn docs_monitoring_md_lists_every_metric() {
        let doc = std::fs::read_to_string(DOC).unwrap();
        let table = metrics_markdown_table();
        let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
        let end = doc.find(END).expect("end marker");
        if doc.get(start..end) != Some(table.as_str()) {
            if std::env::var_os("UPDATE_METRIC_DOCS").is_some() {
                let fresh = format!(
                    "{}{}{}",
                    doc.get(..start).unwrap(),
                    table,
                    doc.get(end..).unwrap()
                );
                std::fs::write(DOC, fresh).unwrap();
            } else {
                panic!(
                    "docs/monitoring.md is out of date with telemetry::METRICS; run \
                     `UPDATE_METRIC_DOCS=1 cargo test --lib telemetry::` and commit it"
                );
            }
        }
    }

    #[tokio::test]
    async fn upkeep_stops_at_shutdown() {
        let handle = prometheus().unwrap();
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(metrics_upkeep(
            handle.clone(),
            Duration::from_millis(10),
            stopping,
        ));
        metrics::histogram!("swarmwise_tracker_flush_seconds").record(0.001);
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(handle
            .render()
            .contains("swarmwise_tracker_flush_seconds_count"));
    }
}
