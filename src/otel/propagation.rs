//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` and `tracestate` headers read from requests and written
//! on agent calls.
//!
//! Incoming values are untrusted: a `traceparent` is taken only when it is
//! exactly one header of version `00` in the spec's form (lowercase hex,
//! non-zero ids, 55 characters); anything else is ignored and the request
//! starts a new trace. A `tracestate` is kept only beside a valid
//! `traceparent`, when it is at most [`MAX_TRACESTATE_BYTES`] bytes, at most
//! 32 list members and parses; otherwise it is dropped. Nothing else from
//! the request reaches an outgoing header.

use actix_web::http::header::HeaderMap;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::Context;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// `tracestate`.
pub const TRACESTATE: &str = "tracestate";
/// Longest `tracestate` kept (the spec asks to propagate at least 512).
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// Parses a version-00 `traceparent`: `00-<32 hex trace id>-<16 hex parent
/// id>-<2 hex flags>`, lowercase, ids not all zero.
pub fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if value.len() != 55 {
        return None;
    }
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || version != "00"
        || trace.len() != 32
        || span.len() != 16
        || flags.len() != 2
        || ![trace, span, flags].iter().all(|p| lower_hex(p))
    {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace == TraceId::INVALID || span == SpanId::INVALID {
        return None;
    }
    // Only the sampled bit is defined in version 00.
    Some((trace, span, TraceFlags::new(flags & 1)))
}

fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name);
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// The remote parent named by a request's trace context headers, if valid.
pub fn incoming(headers: &HeaderMap) -> Option<SpanContext> {
    let (trace, span, flags) = parse_traceparent(single(headers, TRACEPARENT)?)?;
    let state = single(headers, TRACESTATE)
        .filter(|s| s.len() <= MAX_TRACESTATE_BYTES && s.split(',').count() <= 32)
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(trace, span, flags, true, state))
}

/// Makes the request's trace context (if any) the parent of `span` (the
/// request span, before it is entered). A no-op when export is off.
pub fn adopt(span: &tracing::Span, headers: &HeaderMap) {
    if let Some(parent) = incoming(headers) {
        // Err only when no OpenTelemetry layer is installed: nothing to do.
        let _ = span.set_parent(Context::new().with_remote_span_context(parent));
    }
}

/// The `traceparent` (and `tracestate`) of the current span, when it is
/// part of a trace (export on), for an outgoing call.
pub fn outgoing() -> Option<(String, Option<String>)> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    let parent = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8() & 1
    );
    let state = sc.trace_state().header();
    Some((parent, (!state.is_empty()).then_some(state)))
}

/// Sets `traceparent` (and `tracestate`) of the current span in the
/// headers of an outgoing call, replacing any configured value (a
/// configured or tenant-set trace header never passes beside ours).
pub fn inject(headers: &mut reqwest::header::HeaderMap) {
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    if let Some((parent, state)) = outgoing() {
        if let Ok(v) = reqwest::header::HeaderValue::from_str(&parent) {
            headers.insert(TRACEPARENT, v);
        }
        if let Some(v) = state.and_then(|s| reqwest::header::HeaderValue::from_str(&s).ok()) {
            headers.insert(TRACESTATE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_parsed() {
        let (t, s, f) = parse_traceparent(GOOD).unwrap();
        assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.to_string(), "00f067aa0ba902b7");
        assert!(f.is_sampled());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx-evil: 1",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
        let long = format!("{GOOD}{}", "0".repeat(10_000));
        assert!(parse_traceparent(&long).is_none());
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn tracestate_is_kept_only_when_small_and_valid() {
        let sc = incoming(&headers(&[(TRACEPARENT, GOOD), (TRACESTATE, "vendor=abc")])).unwrap();
        assert!(sc.is_remote());
        assert_eq!(sc.trace_state().header(), "vendor=abc");
        let huge = (0..40)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        let sc = incoming(&headers(&[(TRACEPARENT, GOOD), (TRACESTATE, &huge)])).unwrap();
        assert_eq!(sc.trace_state().header(), "");
        let long = format!("k={}", "v".repeat(600));
        let sc = incoming(&headers(&[(TRACEPARENT, GOOD), (TRACESTATE, &long)])).unwrap();
        assert_eq!(sc.trace_state().header(), "");
        let sc = incoming(&headers(&[
            (TRACEPARENT, GOOD),
            (TRACESTATE, "no equals sign"),
        ]))
        .unwrap();
        assert_eq!(sc.trace_state().header(), "");
    }

    #[test]
    fn two_traceparents_are_ignored() {
        let other = "00-11111111111111111111111111111111-2222222222222222-01";
        assert!(incoming(&headers(&[(TRACEPARENT, GOOD), (TRACEPARENT, other)])).is_none());
        assert!(incoming(&headers(&[(TRACESTATE, "a=b")])).is_none());
    }
}
