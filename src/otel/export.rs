//! What leaves the process: the span processor that shapes finished spans
//! to the OpenTelemetry conventions and bounds the export queue, and the
//! exporter wrapper that counts what was sent.
//!
//! Shaping keeps an allowlist: each exported span kind has a fixed name
//! pattern and a fixed set of attributes, mapped from the `tracing` fields
//! the service already logs (so the log format does not change); any other
//! attribute (code locations, thread ids, a field added later) is dropped,
//! and every string is cut at [`MAX_VALUE_CHARS`] characters, so a tenant
//! cannot make a span carry more than that.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Context, Key, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// The `tracing` spans that are exported (all from `swarmwise` crates):
/// `request` (HTTP server), `run` (a workflow run), `stage`, `agent_task`
/// (one agent call), `track` (a stage's recommendations handed to the
/// tracker) and `evaluation` (a run's outcome judged).
pub const EXPORTED_SPANS: &[&str] = &[
    "request",
    "run",
    "stage",
    "agent_task",
    "track",
    "evaluation",
];

/// Longest exported string attribute, in characters.
pub const MAX_VALUE_CHARS: usize = 256;

/// Whether the `tracing` span of `meta` is exported.
pub fn exported(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span()
        && meta.target().starts_with("swarmwise")
        && EXPORTED_SPANS.contains(&meta.name())
}

/// The span processor: shapes a finished span, then admits it to the batch
/// processor unless `max_queue` spans already wait for export (then it is
/// dropped and counted in `swarmwise_otlp_spans_dropped_total`).
#[derive(Debug)]
pub struct Shaping<P> {
    inner: P,
    /// Spans admitted and not yet exported (the exporter decrements).
    queued: Arc<AtomicUsize>,
    max_queue: usize,
}

impl<P> Shaping<P> {
    /// Wraps `inner`, sharing `queued` with [`Counting`].
    pub fn new(inner: P, queued: Arc<AtomicUsize>, max_queue: usize) -> Self {
        Self {
            inner,
            queued,
            max_queue,
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for Shaping<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let Some(span) = shape(span) else { return };
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("swarmwise_otlp_spans_dropped_total").increment(1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter wrapper: counts exported and failed spans and frees their
/// queue places.
#[derive(Debug)]
pub struct Counting<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
}

impl<E> Counting<E> {
    /// Wraps `inner`, sharing `queued` with [`Shaping`].
    pub fn new(inner: E, queued: Arc<AtomicUsize>) -> Self {
        Self { inner, queued }
    }
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let res = self.inner.export(batch).await;
        self.queued.fetch_sub(n, Ordering::AcqRel);
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        match &res {
            Ok(()) => metrics::counter!("swarmwise_otlp_spans_exported_total").increment(n),
            Err(e) => {
                metrics::counter!("swarmwise_otlp_spans_failed_total").increment(n);
                tracing::debug!(error = %e, spans = n, "OTLP export failed");
            }
        }
        res
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The fields of a `tracing` span, by name.
struct Fields(Vec<KeyValue>);

impl Fields {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| cut(v.as_str().into_owned()))
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::I64(i) => Some(*i),
            Value::F64(f) => Some(*f as i64),
            Value::String(s) => s.as_str().parse().ok(),
            _ => None,
        }
    }
}

fn put(out: &mut Vec<KeyValue>, key: &'static str, v: Option<String>) {
    if let Some(v) = v {
        out.push(KeyValue::new(Key::from_static_str(key), v));
    }
}

fn cut(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(MAX_VALUE_CHARS) {
        s.truncate(i);
    }
    s
}

/// Renames `span` and maps its fields to the OpenTelemetry HTTP and GenAI
/// conventions (`swarmwise.*` for our own ids); `None` for a span that is
/// not exported.
pub fn shape(mut span: SpanData) -> Option<SpanData> {
    let f = Fields(std::mem::take(&mut span.attributes));
    span.events = Default::default();
    span.links = Default::default();
    span.dropped_attributes_count = 0;
    let mut out = Vec::new();
    let name: String;
    let mut error: Option<String> = None;
    match span.name.as_ref() {
        "request" => {
            let method = f.string("method").unwrap_or_else(|| "_OTHER".into());
            let route = f.string("route");
            name = match &route {
                Some(r) => format!("{method} {r}"),
                None => method.clone(),
            };
            put(&mut out, "http.request.method", Some(method));
            put(&mut out, "http.route", route);
            put(&mut out, "url.path", f.string("path"));
            put(&mut out, "swarmwise.request_id", f.string("request_id"));
            put(&mut out, "swarmwise.workspace_id", f.string("workspace"));
            if let Some(status) = f.int("status") {
                out.push(KeyValue::new("http.response.status_code", status));
                if status >= 500 {
                    error = Some(status.to_string());
                }
            }
            span.span_kind = SpanKind::Server;
        }
        "run" => {
            let workflow = f.string("workflow").unwrap_or_default();
            name = format!("workflow {workflow}");
            put(&mut out, "swarmwise.workflow", Some(workflow));
            put(&mut out, "swarmwise.run_id", f.string("run_id"));
            put(&mut out, "swarmwise.workspace_id", f.string("workspace"));
        }
        "stage" => {
            let stage = f.string("stage").unwrap_or_default();
            name = format!("stage {stage}");
            put(&mut out, "swarmwise.stage", Some(stage));
            if let Some(n) = f.int("agents") {
                out.push(KeyValue::new("swarmwise.stage.agents", n));
            }
        }
        "agent_task" => {
            let agent = f.string("agent").unwrap_or_default();
            name = format!("invoke_agent {agent}");
            put(
                &mut out,
                "gen_ai.operation.name",
                Some("invoke_agent".into()),
            );
            put(&mut out, "gen_ai.agent.id", Some(agent.clone()));
            put(
                &mut out,
                "gen_ai.agent.name",
                f.string("agent_name").or(Some(agent)),
            );
            put(
                &mut out,
                "gen_ai.request.model",
                f.string("gen_ai.request.model"),
            );
            let system = f.string("gen_ai.system");
            put(&mut out, "gen_ai.provider.name", system.clone());
            put(&mut out, "gen_ai.system", system);
            for key in ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"] {
                if let Some(n) = f.int(key) {
                    out.push(KeyValue::new(Key::from_static_str(key), n));
                }
            }
            put(&mut out, "swarmwise.stage", f.string("stage"));
            put(&mut out, "swarmwise.run_id", f.string("run_id"));
            let outcome = f.string("outcome");
            if let Some(o) = outcome.as_deref().filter(|o| *o != "ok") {
                error = Some(o.to_owned());
            }
            put(&mut out, "swarmwise.outcome", outcome);
            span.span_kind = SpanKind::Client;
        }
        "track" => {
            name = "track recommendations".into();
            if let Some(n) = f.int("recommendations") {
                out.push(KeyValue::new("swarmwise.recommendations", n));
            }
        }
        "evaluation" => {
            name = "evaluate workflow".into();
            put(&mut out, "swarmwise.workflow_id", f.string("workflow_id"));
            put(&mut out, "swarmwise.workspace_id", f.string("workspace"));
            if let Some(n) = f.int("evaluated") {
                out.push(KeyValue::new("swarmwise.recommendations.evaluated", n));
            }
        }
        _ => return None,
    }
    if let Some(kind) = error {
        out.push(KeyValue::new("error.type", kind));
        span.status = Status::error("");
    } else if !matches!(span.status, Status::Error { .. }) {
        span.status = Status::Unset;
    } else {
        span.status = Status::error("");
    }
    span.name = Cow::Owned(cut(name));
    span.attributes = out;
    Some(span)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::time::SystemTime;

    fn span(name: &'static str, attrs: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1),
                SpanId::from(2),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a Value> {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn an_agent_task_follows_the_gen_ai_conventions_and_keeps_nothing_else() {
        let s = shape(span(
            "agent_task",
            vec![
                KeyValue::new("agent", "writer"),
                KeyValue::new("stage", "draft"),
                KeyValue::new("gen_ai.request.model", "gpt-4o-mini"),
                KeyValue::new("gen_ai.system", "openai"),
                KeyValue::new("gen_ai.usage.input_tokens", 12_i64),
                KeyValue::new("gen_ai.usage.output_tokens", 7_i64),
                KeyValue::new("outcome", "timeout"),
                KeyValue::new("code.filepath", "actors/src/agent/mod.rs"),
                KeyValue::new("thread.name", "actix-rt"),
            ],
        ))
        .unwrap();
        assert_eq!(s.name, "invoke_agent writer");
        assert_eq!(s.span_kind, SpanKind::Client);
        assert_eq!(
            attr(&s, "gen_ai.operation.name").unwrap().as_str(),
            "invoke_agent"
        );
        assert_eq!(attr(&s, "gen_ai.agent.name").unwrap().as_str(), "writer");
        assert_eq!(
            attr(&s, "gen_ai.request.model").unwrap().as_str(),
            "gpt-4o-mini"
        );
        assert_eq!(attr(&s, "gen_ai.usage.input_tokens"), Some(&Value::I64(12)));
        assert_eq!(attr(&s, "error.type").unwrap().as_str(), "timeout");
        assert!(matches!(s.status, Status::Error { .. }));
        assert!(attr(&s, "code.filepath").is_none());
        assert!(attr(&s, "thread.name").is_none());
    }

    #[test]
    fn long_values_are_cut_and_unknown_spans_are_not_exported() {
        let s = shape(span(
            "request",
            vec![
                KeyValue::new("method", "GET"),
                KeyValue::new("path", "é".repeat(1_000)),
                KeyValue::new("route", "/api/v1/agents"),
                KeyValue::new("status", 503_i64),
            ],
        ))
        .unwrap();
        assert_eq!(s.name, "GET /api/v1/agents");
        assert_eq!(s.span_kind, SpanKind::Server);
        assert_eq!(
            attr(&s, "url.path").unwrap().as_str().chars().count(),
            MAX_VALUE_CHARS
        );
        assert_eq!(
            attr(&s, "http.response.status_code"),
            Some(&Value::I64(503))
        );
        assert!(matches!(s.status, Status::Error { .. }));
        assert!(shape(span("store", vec![])).is_none());
    }
}
