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

/// Every metric the service emits: (name, unit, help).
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "swarmwise_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by method, route and status",
    ),
    (
        "swarmwise_recommendations_tracked_total",
        "counter",
        "Recommendations accepted for tracking",
    ),
    (
        "swarmwise_recommendations_persisted_total",
        "counter",
        "Recommendations committed to the store",
    ),
    (
        "swarmwise_recommendations_evaluated_total",
        "counter",
        "Recommendations that received a verdict",
    ),
    (
        "swarmwise_feedback_total",
        "counter",
        "Human feedback received",
    ),
    (
        "swarmwise_audit_write_failures_total",
        "counter",
        "Audit log entries that could not be stored (the action itself stood)",
    ),
    (
        "swarmwise_agent_admission_changes_total",
        "counter",
        "Agent admission changes by the state entered: quarantined, probation, readmitted, held (docs/admission.md)",
    ),
    (
        "swarmwise_tracker_rejected_total",
        "counter",
        "Recommendations refused because too many writes were pending",
    ),
    (
        "swarmwise_tracker_flush_seconds",
        "histogram",
        "Time to commit one batch of recommendations",
    ),
    (
        "swarmwise_tracker_flush_failures_total",
        "counter",
        "Batch commits that failed transiently (database unavailable) and were retried",
    ),
    (
        "swarmwise_tracker_dead_letters_total",
        "counter",
        "Recommendations the store refused for a permanent reason, moved to the dead-letter table",
    ),
    (
        "swarmwise_tracker_read_timeouts_total",
        "counter",
        "Reads that gave up waiting for pending writes (tracking.read_flush_timeout_ms) and answered 503",
    ),
    (
        "swarmwise_tracker_pending_writes",
        "gauge",
        "Recommendations acknowledged but not yet committed",
    ),
    (
        "swarmwise_trust_updates_total",
        "counter",
        "Outcomes folded into trust",
    ),
    (
        "swarmwise_agent_failures_total",
        "counter",
        "Failed executions of agents recorded against their reliability, by kind (error, timeout, invalid)",
    ),
    (
        "swarmwise_trust_reload_seconds",
        "histogram",
        "Time to reload trust from the store",
    ),
    (
        "swarmwise_trust_persist_failures_total",
        "counter",
        "Failed writes of trust cards",
    ),
    (
        "swarmwise_trust_recompute_failures_total",
        "counter",
        "Trust recomputes that failed (the last good state stays in force)",
    ),
    (
        "swarmwise_alert_transitions_total",
        "counter",
        "Alerts raised and resolved by this node, by rule and status (firing, resolved)",
    ),
    (
        "swarmwise_alert_notifications_silenced_total",
        "counter",
        "Alert notifications a silence suppressed",
    ),
    (
        "swarmwise_actor_restarts_total",
        "counter",
        "Supervisor restarts by actor",
    ),
    (
        "swarmwise_rate_limited_total",
        "counter",
        "Requests and tasks refused by a fairness limit, by limit (api_key, workflow_runs, agent_queue)",
    ),
    // Notifiers (src/notify): labels are operator-declared names only.
    (
        "swarmwise_notifications_sent_total",
        "counter",
        "Alert notifications delivered, by notifier and kind",
    ),
    (
        "swarmwise_notifications_failed_total",
        "counter",
        "Alert notifications given up (refused by the receiver, or out of attempts), by notifier and kind",
    ),
    (
        "swarmwise_notifications_dropped_total",
        "counter",
        "Alert notifications dropped because the notifier's queue was full, by notifier and kind",
    ),
    (
        "swarmwise_notifier_up",
        "gauge",
        "1 if the notifier's last delivery attempt succeeded (or none was made yet), 0 if it failed",
    ),
    (
        "swarmwise_panics_total",
        "counter",
        "Panics caught by the panic hook",
    ),
];

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
    )
}

/// Starts logging (idempotent; tests log only when `TEST_LOG` is set).
/// Colours only on a terminal, so a log file or pipe can be filtered on
/// `run_id=...` as printed.
pub fn init_logging(default_level: &str) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init();
        install_panic_hook();
    });
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
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| e.to_string())?;
            for (name, kind, help) in METRICS {
                match *kind {
                    "histogram" => describe_histogram!(*name, Unit::Seconds, *help),
                    "gauge" => describe_gauge!(*name, *help),
                    _ => describe_counter!(*name, *help),
                }
            }
            Ok(handle)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("could not install the Prometheus recorder: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
