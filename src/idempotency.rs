//! The `Idempotency-Key` request header: a repeated create answers with the
//! first result (same status, same ids) instead of running again, on any
//! node sharing the database. One middleware on `/api/v1` does it for every
//! covered route ([`covered`]); handlers know nothing of it, so a replay
//! never reaches the engine (nothing is tracked, evaluated, counted in trust
//! or run twice). The semantics follow the IETF draft "The Idempotency-Key
//! HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header-07, §2 the
//! field is a string, §2.4 fingerprint, §2.6 error scenarios: 409 while the
//! first request is outstanding, 422 for the same key with another request)
//! and Stripe's idempotent requests (store what a request decided, release
//! what a retry may change). Users' guide: `docs/idempotency.md`.
//!
//! ## Flow
//!
//! 1. A `POST` under `/api/v1` by a resolved caller with the header: the key
//!    is validated (1–255 printable ASCII, optionally a quoted string; else
//!    400 `invalid_idempotency_key`), the body read (bounded by
//!    `limits.max_body_bytes`) and fingerprinted with the method, path and
//!    query (SHA-256; JSON bodies canonicalised, so key order does not count).
//! 2. Claim in the store ([`IdempotencyStore::claim_idempotency_key`]),
//!    keyed by (caller scope, method + route pattern, key):
//!    - claimed: run the handler in a task of its own (a client that hangs
//!      up does not cancel it, so the record still gets its answer) while the
//!      claim's lease is renewed every third of `idempotency.lease_secs`;
//!      then store the answer (2xx, 3xx and 4xx other than 408, 409 and 429)
//!      or release the key (5xx, 408, 409, 429: a retry may succeed);
//!    - completed, same fingerprint: replay the stored status, `Content-Type`,
//!      `Location` and body, with `Idempotent-Replayed: true`;
//!    - in progress, same fingerprint: 409 `idempotency_in_progress`
//!      with `Retry-After`;
//!    - another fingerprint: 422 `idempotency_key_reused`.
//! 3. A claim whose node died lapses after `idempotency.lease_secs`; a record
//!    expires after `idempotency.ttl_secs` (both: the key may be used again),
//!    and [`purge_loop`] deletes expired records.
//!
//! ## What a record cannot promise
//!
//! The handler's effect and the record's completion are two commits. A node
//! that dies between them leaves an unfinished claim: after its lease lapses
//! a retry runs again (the draft's "at least once" for a crash). In the
//! tracker's `write_behind` mode the answer (the ids) is acknowledged before
//! the rows are on disk, exactly as without the header: the record replays
//! the ids the first answer gave, and the write-behind contract says when
//! those can be lost (a crash before the batch flushed).
//!
//! Not covered: routes whose answer carries a new API key (create a
//! workspace, add or rotate a key): the key is shown once and never stored,
//! so there is nothing to replay; the header is ignored there.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, LOCATION};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, HttpMessage as _, HttpResponse, ResponseError};
use chrono::Utc;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::Caller;
use crate::config::IdempotencySettings;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::store::{AdminStore, ClaimOutcome, IdempotencyClaim, IdempotencyScope, StoredResponse};

/// The request header (draft-ietf-httpapi-idempotency-key-header).
pub const HEADER: &str = "Idempotency-Key";

/// The answer header on a replay (Stripe's name): `true`.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Longest key, in characters.
pub const MAX_KEY_LEN: usize = 255;

/// Routes (patterns) whose answer carries a new API key, shown once and
/// never stored: the header is ignored there (see the module header).
const NEVER_STORED: &[&str] = &[
    "/api/v1/workspaces",
    "/api/v1/workspaces/{workspace_id}/api-keys",
    "/api/v1/workspaces/{workspace_id}/api-keys/{key_id}/rotate",
];

/// Answers stored headers are replayed with (the rest are per request, such
/// as `x-request-id`).
const KEPT_HEADERS: &[HeaderName] = &[CONTENT_TYPE, LOCATION];

/// Whether the header applies to `method` on route `pattern`: every `POST`
/// under `/api/v1` but [`NEVER_STORED`].
pub fn covered(method: &Method, pattern: &str) -> bool {
    method == Method::POST && pattern.starts_with("/api/v1/") && !NEVER_STORED.contains(&pattern)
}

/// The key of a header value: the value itself or a quoted string (the
/// draft's structured-field form, `"abc"`), 1–[`MAX_KEY_LEN`] printable ASCII
/// characters (space to `~`). Errors name the header and say what to send.
pub fn parse_key(raw: &[u8]) -> Result<String, ApiError> {
    let bad = |why: &str| {
        ApiError::field(
            ErrorCode::InvalidIdempotencyKey,
            HEADER,
            format!(
                "{HEADER}: {why}; send 1-{MAX_KEY_LEN} printable ASCII characters, e.g. a UUID generated once per operation and reused for its retries"
            ),
        )
    };
    if !raw.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(bad("contains a character outside printable ASCII"));
    }
    let text = std::str::from_utf8(raw).map_err(|_| bad("is not text"))?;
    let key = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner,
        None => text,
    };
    if key.is_empty() {
        return Err(bad("is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(bad(&format!("is {} characters long", key.len())));
    }
    Ok(key.to_owned())
}

/// SHA-256 (hex) of the request: method, path, query and body. A JSON body
/// is canonicalised first (object keys sorted, no whitespace), so a client
/// that re-serialises its retry in another key order still matches; other
/// bodies count byte for byte.
pub fn fingerprint(method: &Method, path: &str, query: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"?");
    h.update(query.as_bytes());
    h.update(b"\n");
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => h.update(canonical(v).to_string().as_bytes()),
        Err(_) => h.update(body),
    }
    hex::encode(h.finalize())
}

/// `v` with every object's keys in sorted order (whatever map the
/// `serde_json` build uses).
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Whether an answer is stored for replay: what the request decided (2xx,
/// 3xx, 4xx validation and not-found errors), not what a retry may change
/// (5xx, 408 timeout, 409 conflict with the current state, 429 throttling).
pub fn is_stored(status: StatusCode) -> bool {
    !(status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS)
}

fn count(outcome: &'static str) {
    metrics::counter!("swarmwise_idempotency_requests_total", "outcome" => outcome).increment(1);
}

/// Middleware on `/api/v1`, inside [`crate::auth::authenticate`] (it reads
/// the caller that resolved). Requests without the header, on routes not
/// [`covered`], or without a valid caller pass through untouched.
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let raw = {
        let mut values = req.headers().get_all(HEADER);
        match (values.next(), values.next()) {
            (None, _) => None,
            (Some(v), None) => Some(Ok(v.as_bytes().to_vec())),
            (Some(_), Some(_)) => Some(Err(())),
        }
    };
    let Some(raw) = raw else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let pattern = req.match_pattern();
    let caller = crate::auth::resolved_caller(req.request());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let (Some(pattern), Some(caller), Some(state)) = (pattern, caller, state) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if !covered(req.method(), &pattern) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    // The body, read here (bounded) to fingerprint it, then handed back;
    // read before any refusal, so the keep-alive connection survives it.
    let limit = state.settings.limits.max_body_bytes;
    let body = match read_body(&mut req, limit).await {
        Ok(b) => b,
        Err(e) => return Ok(refuse(req, e)),
    };
    let key = match raw {
        Ok(raw) => parse_key(&raw),
        Err(()) => Err(ApiError::field(
            ErrorCode::InvalidIdempotencyKey,
            HEADER,
            format!("{HEADER}: sent more than once; send it once per request"),
        )),
    };
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            count("invalid_key");
            return Ok(refuse(req, e));
        }
    };
    let fp = fingerprint(req.method(), req.path(), req.query_string(), &body);
    req.set_payload(actix_web::dev::Payload::from(body));
    let scope = match caller {
        Caller::Workspace(ws) => IdempotencyScope::Workspace(ws),
        Caller::Admin => IdempotencyScope::Admin,
    };
    let settings = state.settings.idempotency.clone();
    let now = Utc::now();
    let claim = IdempotencyClaim {
        scope,
        endpoint: format!("{} {pattern}", req.method()),
        key,
        fingerprint: fp,
        token: Uuid::now_v7(),
        node: state.node.to_string(),
        now,
        lease_until: now + secs(settings.lease_secs),
        expires_at: now + secs(settings.ttl_secs),
    };
    let outcome = match state.store.claim_idempotency_key(&claim).await {
        Ok(o) => o,
        Err(e) => return Ok(refuse(req, e.into())),
    };
    match outcome {
        ClaimOutcome::Claimed => {}
        ClaimOutcome::Completed {
            same_request: true,
            response,
        } => {
            count("replayed");
            return Ok(replay(req, &response));
        }
        ClaimOutcome::InProgress {
            same_request: true, ..
        } => {
            count("in_progress");
            // Most creates finish within a second; the lease is only the
            // bound for a node that died.
            return Ok(refuse(req, in_progress_error(1)));
        }
        ClaimOutcome::Completed { .. } | ClaimOutcome::InProgress { .. } => {
            count("key_reused");
            return Ok(refuse(req, key_reused_error()));
        }
    }
    // Run in a task of its own: if the client hangs up, this future is
    // dropped but the request still finishes and its answer is stored.
    let store = state.store.clone();
    let task = actix_web::rt::spawn(run_claimed(next, req, store, scope, claim.token, settings));
    match task.await {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "idempotent request task failed");
            Err(ApiError::new(
                ErrorCode::Internal,
                "the request failed unexpectedly; it was logged. Retry with the same Idempotency-Key",
            )
            .into())
        }
    }
}

/// 409 `idempotency_in_progress`: the first request with this key still
/// runs; `Retry-After: retry_after_secs`.
pub fn in_progress_error(retry_after_secs: i64) -> ApiError {
    ApiError::new(
        ErrorCode::IdempotencyInProgress,
        format!(
            "a request with this {HEADER} is still being processed; retry after the Retry-After delay with the same key and body to get its answer"
        ),
    )
    .with_details(json!({ "field": HEADER, "retry_after_secs": retry_after_secs }))
}

/// 422 `idempotency_key_reused`: the key belongs to another request.
pub fn key_reused_error() -> ApiError {
    ApiError::field(
        ErrorCode::IdempotencyKeyReused,
        HEADER,
        format!(
            "this {HEADER} was used with a different request (method, path, query or body) within idempotency.ttl_secs; use a new key for a new operation, and the same key only to retry the same request"
        ),
    )
}

fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1_000_000))
}

/// Runs the handler under the claim (renewing its lease), then stores the
/// answer or releases the key.
async fn run_claimed<B: MessageBody + 'static>(
    next: Next<B>,
    req: ServiceRequest,
    store: Arc<dyn AdminStore>,
    scope: IdempotencyScope,
    token: Uuid,
    settings: IdempotencySettings,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let call = next.call(req);
    tokio::pin!(call);
    let every = Duration::from_secs(settings.lease_secs.max(3) / 3);
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let res = loop {
        tokio::select! {
            res = &mut call => break res,
            _ = renew.tick() => {
                let until = Utc::now() + secs(settings.lease_secs);
                match store.renew_idempotency_key(scope, token, until).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(%token, "idempotency claim lost while its request runs (its lease lapsed and another request took the key)"),
                    Err(e) => tracing::warn!(%token, error = %e, "could not renew an idempotency claim"),
                }
            }
        }
    };
    let res = match res {
        Ok(res) => res.map_into_boxed_body(),
        Err(e) => {
            release(&store, scope, token).await;
            return Err(e);
        }
    };
    let status = res.status();
    if !is_stored(status) {
        release(&store, scope, token).await;
        count("released");
        return Ok(res);
    }
    let (http_req, http_res) = res.into_parts();
    let (http_res, body) = http_res.into_parts();
    let bytes = match actix_web::body::to_bytes(body).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "could not read an answer to store it");
            release(&store, scope, token).await;
            let err = ApiError::new(
                ErrorCode::Internal,
                "the answer could not be read; it was logged. Retry with the same Idempotency-Key",
            );
            return Ok(ServiceResponse::new(http_req, err.error_response()));
        }
    };
    let stored = StoredResponse {
        status: status.as_u16(),
        headers: KEPT_HEADERS
            .iter()
            .filter_map(|name| {
                let v = http_res.headers().get(name)?.to_str().ok()?;
                Some((name.as_str().to_owned(), v.to_owned()))
            })
            .collect(),
        body: bytes.to_vec(),
    };
    match store
        .complete_idempotency_key(scope, token, &stored, Utc::now())
        .await
    {
        Ok(true) => count("stored"),
        Ok(false) => {
            count("lost_claim");
            tracing::warn!(%token, "idempotency claim lost before its answer was stored (its lease lapsed); the answer is sent but not replayable");
        }
        Err(e) => {
            count("lost_claim");
            tracing::error!(%token, error = %e, "could not store an idempotent answer; a retry after idempotency.lease_secs runs the request again");
        }
    }
    Ok(ServiceResponse::new(
        http_req,
        http_res.set_body(BoxBody::new(bytes)),
    ))
}

async fn release(store: &Arc<dyn AdminStore>, scope: IdempotencyScope, token: Uuid) {
    if let Err(e) = store.release_idempotency_key(scope, token).await {
        tracing::warn!(%token, error = %e, "could not release an idempotency claim; the key is free again after idempotency.lease_secs");
    }
}

/// Reads the whole body, at most `limit` bytes (413 past it, as the JSON
/// extractor would).
async fn read_body(req: &mut ServiceRequest, limit: usize) -> Result<Bytes, ApiError> {
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::BadBody, e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body exceeds {limit} bytes (limits.max_body_bytes); send fewer items per request"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn refuse(req: ServiceRequest, e: ApiError) -> ServiceResponse<BoxBody> {
    req.into_response(e.error_response())
}

fn replay(req: ServiceRequest, stored: &StoredResponse) -> ServiceResponse<BoxBody> {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    for (name, value) in &stored.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            res.insert_header((n, v));
        }
    }
    res.insert_header((
        HeaderName::from_static(REPLAYED_HEADER),
        HeaderValue::from_static("true"),
    ));
    req.into_response(res.body(stored.body.clone()))
}

/// Deletes expired records every `idempotency.purge_interval_secs` until
/// shutdown. Every node runs it; the delete is the same on each.
pub async fn purge_loop(
    store: Arc<dyn AdminStore>,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => match store.purge_idempotency_keys(Utc::now()).await {
                // Counted only when something was purged: the series then
                // appears with the first purge, not at a racy start-up tick.
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!("swarmwise_idempotency_keys_purged_total").increment(n);
                    tracing::debug!(purged = n, "expired idempotency keys purged");
                }
                Err(e) => tracing::warn!(error = %e, "could not purge expired idempotency keys; retried next interval"),
            },
            _ = shutdown.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn keys_are_printable_ascii_up_to_255() {
        assert_eq!(parse_key(b"abc-123").unwrap(), "abc-123");
        assert_eq!(parse_key(b"\"quoted key\"").unwrap(), "quoted key");
        assert_eq!(parse_key(&[b'k'; 255]).unwrap().len(), 255);
        for bad in [
            &b""[..],
            b"\"\"",
            &[b'k'; 256],
            b"tab\there",
            "caf\u{e9}".as_bytes(),
        ] {
            let e = parse_key(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidIdempotencyKey);
            assert_eq!(e.details["field"], HEADER);
        }
    }

    #[test]
    fn fingerprints_ignore_json_key_order_but_not_values_or_paths() {
        let m = Method::POST;
        let a = fingerprint(&m, "/p", "", br#"{"a":1,"b":{"c":2,"d":3}}"#);
        let b = fingerprint(&m, "/p", "", br#"{ "b": {"d":3, "c":2}, "a": 1 }"#);
        assert_eq!(a, b);
        assert_ne!(
            a,
            fingerprint(&m, "/p", "", br#"{"a":2,"b":{"c":2,"d":3}}"#)
        );
        assert_ne!(
            a,
            fingerprint(&m, "/q", "", br#"{"a":1,"b":{"c":2,"d":3}}"#)
        );
        assert_ne!(
            a,
            fingerprint(&m, "/p", "x=1", br#"{"a":1,"b":{"c":2,"d":3}}"#)
        );
    }

    #[test]
    fn only_what_a_retry_cannot_change_is_stored() {
        for s in [200, 201, 202, 400, 404, 413, 422] {
            assert!(is_stored(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [408, 409, 429, 500, 503] {
            assert!(!is_stored(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn every_post_but_the_key_issuing_ones_is_covered() {
        assert!(covered(&Method::POST, "/api/v1/recommendations"));
        assert!(covered(&Method::POST, "/api/v1/workflows/runs"));
        assert!(!covered(&Method::GET, "/api/v1/recommendations"));
        assert!(!covered(&Method::POST, "/api/v1/workspaces"));
        assert!(!covered(
            &Method::POST,
            "/api/v1/workspaces/{workspace_id}/api-keys/{key_id}/rotate"
        ));
    }
}
