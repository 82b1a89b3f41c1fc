//! OpenTelemetry traces: the spans of [`swarmwise_actors::trace`] and the
//! HTTP request span, exported over OTLP/HTTP (protobuf) to a collector
//! when `[telemetry.otlp] endpoint` is set (docs/tracing.md).
//!
//! How it fits together: `tracing` stays the one instrumentation API. A
//! `tracing-opentelemetry` layer, filtered to the spans named in
//! [`export::EXPORTED_SPANS`] (no log events, so no log message and no
//! tenant content becomes a span event), hands finished spans to an
//! `opentelemetry_sdk` tracer provider whose span processor
//! ([`export::Shaping`]) renames them to the OpenTelemetry conventions,
//! keeps only the attributes it knows (capped in length), and queues them
//! for the SDK's batch processor; the batch thread posts them to the
//! collector. Export never blocks or fails a request: the queue is bounded
//! (`max_queue_size`), a span past it is dropped and counted, an export the
//! collector refuses or does not answer within `timeout_ms` is counted.
//!
//! Trace context ([`propagation`]): a request's valid W3C `traceparent`
//! (and `tracestate`) becomes the parent of its request span; http and
//! openai agent calls carry the agent task span's `traceparent`.
//!
//! Invariants: nothing here holds tenant content (prompts, answers,
//! feedback); the exported attributes are ids, names, counts and the model.

pub mod export;
pub mod propagation;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SamplingDecision, SamplingResult, TraceContextExt as _, TraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, ShouldSample};

use crate::config::OtlpSettings;

/// Checks `[telemetry.otlp]`; the error names the key and says what to do.
pub fn validate(s: &OtlpSettings) -> Result<(), (&'static str, String)> {
    if !s.endpoint.is_empty() {
        let url = url::Url::parse(&s.endpoint).map_err(|e| {
            (
                "telemetry.otlp.endpoint",
                format!(
                    "{:?} is not a URL ({e}); give the collector's OTLP/HTTP base, e.g. http://127.0.0.1:4318, or leave it empty to export nothing",
                    s.endpoint
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err((
                "telemetry.otlp.endpoint",
                "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:4318 (OTLP over HTTP; gRPC on 4317 is not supported)".into(),
            ));
        }
    }
    let name = &s.service_name;
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err((
            "telemetry.otlp.service_name",
            "must be 1-128 characters without control characters, e.g. swarmwise".into(),
        ));
    }
    if !(0.0..=1.0).contains(&s.sample_ratio) {
        return Err((
            "telemetry.otlp.sample_ratio",
            "must be between 0.0 (no trace exported) and 1.0 (every trace)".into(),
        ));
    }
    if !(100..=60_000).contains(&s.timeout_ms) {
        return Err((
            "telemetry.otlp.timeout_ms",
            "must be between 100 and 60000 milliseconds".into(),
        ));
    }
    for (k, v) in &s.headers {
        let ok_name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_ok();
        let ok_value = reqwest::header::HeaderValue::from_str(v).is_ok();
        if !ok_name || !ok_value {
            // The value may be a secret: the message names only the header.
            return Err((
                "telemetry.otlp.headers",
                format!(
                    "header {k:?} is not a valid HTTP header name and value; fix it or remove it"
                ),
            ));
        }
    }
    if !(1..=1_000_000).contains(&s.max_queue_size) {
        return Err((
            "telemetry.otlp.max_queue_size",
            "must be between 1 and 1000000 spans".into(),
        ));
    }
    if s.max_export_batch_size == 0 || s.max_export_batch_size > s.max_queue_size {
        return Err((
            "telemetry.otlp.max_export_batch_size",
            "must be between 1 and telemetry.otlp.max_queue_size".into(),
        ));
    }
    if !(10..=60_000).contains(&s.scheduled_delay_ms) {
        return Err((
            "telemetry.otlp.scheduled_delay_ms",
            "must be between 10 and 60000 milliseconds".into(),
        ));
    }
    Ok(())
}

/// Records GenAI token counts on the current span (an agent task's) where
/// an agent reported them; exported as `gen_ai.usage.input_tokens` and
/// `gen_ai.usage.output_tokens`. A no-op outside an agent task.
pub fn record_tokens(input: Option<u64>, output: Option<u64>) {
    let span = tracing::Span::current();
    for (field, n) in [
        ("gen_ai.usage.input_tokens", input),
        ("gen_ai.usage.output_tokens", output),
    ] {
        if let Some(n) = n {
            span.record(field, n);
        }
    }
}

/// The collector URL of trace exports: `endpoint` with `/v1/traces`
/// appended unless it already ends so (the OTLP/HTTP default path).
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// A running export: the tracer provider behind the `tracing` layer.
/// [`Exporting::shutdown`] (at the end of `serve`) exports what is queued,
/// waiting at most `timeout_ms` per request.
pub struct Exporting {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Exporting {
    /// Builds the exporter, the span processors and the provider.
    ///
    /// # Errors
    /// The OTLP exporter could not be built (its HTTP client).
    pub fn start(s: &OtlpSettings) -> anyhow::Result<Self> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(traces_url(&s.endpoint))
            .with_timeout(Duration::from_millis(s.timeout_ms))
            .with_headers(s.headers.clone().into_iter().collect::<HashMap<_, _>>())
            .build()?;
        Ok(Self::with_exporter(s, exporter))
    }

    /// [`Exporting::start`] with any exporter (the runtime bench uses an
    /// in-process sink).
    pub fn with_exporter(
        s: &OtlpSettings,
        exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
    ) -> Self {
        let queued = Arc::new(AtomicUsize::new(0));
        let batch = BatchSpanProcessor::builder(export::Counting::new(exporter, queued.clone()))
            .with_batch_config(
                BatchConfigBuilder::default()
                    // Shaping admits at most max_queue_size spans that are
                    // not exported yet, so the SDK's queue never overflows.
                    .with_max_queue_size(s.max_queue_size)
                    .with_max_export_batch_size(s.max_export_batch_size)
                    .with_scheduled_delay(Duration::from_millis(s.scheduled_delay_ms))
                    .build(),
            )
            .build();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(s.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(export::Shaping::new(batch, queued, s.max_queue_size))
            .with_sampler(RatioForNewTraces(s.sample_ratio))
            .with_max_events_per_span(0)
            .with_max_links_per_span(0)
            .with_max_attributes_per_span(64)
            .with_resource(resource)
            .build();
        Self { provider }
    }

    /// The tracer the `tracing` layer writes to.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::Tracer {
        use opentelemetry::trace::TracerProvider as _;
        self.provider.tracer("swarmwise")
    }

    /// Exports what is queued and stops the batch thread.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OTLP export did not shut down cleanly; queued spans may be lost");
        }
    }
}

/// Sampling: a span inside this process follows its parent's decision; a
/// new trace, or one continued from a request's `traceparent`, is sampled
/// by `sample_ratio` on its trace id. The caller's sampled flag is not
/// obeyed, so a client cannot make every request of its own exported.
#[derive(Debug, Clone)]
pub struct RatioForNewTraces(pub f64);

impl ShouldSample for RatioForNewTraces {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &opentelemetry::trace::SpanKind,
        attributes: &[KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        if let Some(cx) = parent_context.filter(|cx| cx.has_active_span()) {
            let span = cx.span();
            let parent = span.span_context();
            if parent.is_valid() && !parent.is_remote() {
                return SamplingResult {
                    decision: if parent.is_sampled() {
                        SamplingDecision::RecordAndSample
                    } else {
                        SamplingDecision::Drop
                    },
                    attributes: Vec::new(),
                    trace_state: parent.trace_state().clone(),
                };
            }
        }
        Sampler::TraceIdRatioBased(self.0).should_sample(
            parent_context,
            trace_id,
            name,
            span_kind,
            attributes,
            links,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn traces_url_appends_the_default_path_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("https://c/otlp/v1/traces"),
            "https://c/otlp/v1/traces"
        );
    }

    #[test]
    fn validation_names_the_key() {
        let ok = OtlpSettings {
            endpoint: "http://127.0.0.1:4318".into(),
            ..OtlpSettings::default()
        };
        assert!(validate(&ok).is_ok());
        assert!(validate(&OtlpSettings::default()).is_ok());
        type Change = Box<dyn Fn(&mut OtlpSettings)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "telemetry.otlp.endpoint",
                Box::new(|s| s.endpoint = "collector:4318".into()),
            ),
            (
                "telemetry.otlp.endpoint",
                Box::new(|s| s.endpoint = "grpc://c:4317".into()),
            ),
            (
                "telemetry.otlp.sample_ratio",
                Box::new(|s| s.sample_ratio = 1.5),
            ),
            (
                "telemetry.otlp.sample_ratio",
                Box::new(|s| s.sample_ratio = f64::NAN),
            ),
            ("telemetry.otlp.timeout_ms", Box::new(|s| s.timeout_ms = 0)),
            (
                "telemetry.otlp.service_name",
                Box::new(|s| s.service_name = String::new()),
            ),
            (
                "telemetry.otlp.max_queue_size",
                Box::new(|s| s.max_queue_size = 0),
            ),
            (
                "telemetry.otlp.max_export_batch_size",
                Box::new(|s| s.max_export_batch_size = 1_000_000),
            ),
            (
                "telemetry.otlp.scheduled_delay_ms",
                Box::new(|s| s.scheduled_delay_ms = 1),
            ),
        ];
        for (key, change) in cases {
            let mut s = ok.clone();
            change(&mut s);
            assert_eq!(validate(&s).unwrap_err().0, key);
        }
        let mut s = ok.clone();
        s.headers
            .insert("authorization".into(), "Bearer secret\nvalue".into());
        let (key, message) = validate(&s).unwrap_err();
        assert_eq!(key, "telemetry.otlp.headers");
        assert!(!message.contains("secret"), "{message}");
    }
}
