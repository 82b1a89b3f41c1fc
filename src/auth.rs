//! Bearer API keys. A workspace key authenticates as that workspace; the
//! admin key (config `auth.admin_key`) manages workspaces, their keys and the
//! audit log. Keys are random 256-bit tokens, stored only as SHA-256 digests:
//! a fast hash is right for high-entropy tokens (a slow password hash would
//! cost every request and add nothing against brute force of 2^256).
//!
//! The 401/403 rule: a missing, malformed, unknown or revoked credential is
//! 401 on every endpoint; 403 is for a valid key without the right (a
//! workspace key on an admin endpoint, the admin key on a workspace
//! endpoint). To hold on every endpoint, [`authenticate`] resolves the
//! credential *before* any extractor runs (actix polls a handler's extractors
//! together, so an extractor that waits on the database would otherwise let a
//! body error answer first); [`Caller`], [`Workspace`] and [`Admin`] read
//! that result.
//!
//! A key's workspace is cached in `AppState.key_cache` for at most
//! `auth.cache_ttl_secs`; revoking through the API empties the workspace's
//! entries at once on this node, and other nodes see it within the TTL.

use std::future::Future;
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use rand::RngCore;
use sha2::{Digest, Sha256};
use swarmwise_actors::domain::WorkspaceId;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::store::NewApiKey;

/// SHA-256 of a key, hex.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A key's fingerprint for logs: the first 8 hex digits of its SHA-256.
/// Enough to tell which key is in force, useless to guess it.
pub fn fingerprint(key: &str) -> String {
    hash_key(key).chars().take(8).collect()
}

/// A fresh random key with its stored form.
pub fn generate_key(prefix: &str) -> (String, NewApiKey) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = format!("{prefix}{}", hex::encode(bytes));
    let stored = stored_form(&key, prefix.len());
    (key, stored)
}

/// The stored form of a key whose first `prefix_len` characters are its
/// prefix (the listing shows those and 6 more).
pub fn stored_form(key: &str, prefix_len: usize) -> NewApiKey {
    NewApiKey {
        id: uuid::Uuid::now_v7(),
        key_hash: hash_key(key),
        prefix: key.chars().take(prefix_len + 6).collect(),
    }
}

/// Who is calling, once the bearer key is known to be valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The admin key.
    Admin,
    /// A workspace key.
    Workspace(WorkspaceId),
}

impl Caller {
    /// The audit log's name for the caller: `admin` or `workspace:<id>`.
    pub fn actor(&self) -> String {
        match self {
            Caller::Admin => "admin".into(),
            Caller::Workspace(ws) => format!("workspace:{ws}"),
        }
    }
}

/// The bearer token of a request, or 401 naming what is missing.
pub(crate) fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing Authorization header; send `Authorization: Bearer <api key>`",
            )
        })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <api key>`"))?;
    Ok(token.to_owned())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "app state missing"))
}

/// Resolves the request's bearer key: admin, a workspace, or a 401.
/// Resolves a key by its digest (`hash_key` of the bearer token).
async fn resolve(
    digest: Result<String, ApiError>,
    state: Result<web::Data<AppState>, ApiError>,
) -> Result<Caller, ApiError> {
    let hash = digest?;
    let state = state?;
    caller_of_digest(&state, hash).await?.ok_or_else(|| {
        ApiError::unauthorized(
            "unknown or revoked API key; ask the operator for a key (POST /api/v1/workspaces/{id}/api-keys, admin key)",
        )
    })
}

/// Who a key digest belongs to now: the admin, a workspace (through the key
/// cache, so a revocation is seen within `auth.cache_ttl_secs`), or nobody.
/// The dashboard's sessions call it on every request.
pub(crate) async fn caller_of_digest(
    state: &AppState,
    hash: String,
) -> Result<Option<Caller>, ApiError> {
    // Comparing digests: timing reveals nothing about the key.
    if hash == state.admin_key_hash {
        return Ok(Some(Caller::Admin));
    }
    if let Some(ws) = state.key_cache.get(&hash) {
        return Ok(Some(Caller::Workspace(ws)));
    }
    match state.store.workspace_for_key(&hash).await? {
        Some(ws) => {
            state.key_cache.insert(hash, ws);
            Ok(Some(Caller::Workspace(ws)))
        }
        None => Ok(None),
    }
}

/// The result of [`authenticate`], kept in the request's extensions.
#[derive(Debug)]
struct Resolved(Result<Caller, ApiError>);

fn copy_error(e: &ApiError) -> ApiError {
    ApiError {
        status: e.status,
        code: e.code,
        message: e.message.clone(),
        details: e.details.clone(),
    }
}

/// Middleware on `/api/v1`: resolves a sent bearer key before the handler's
/// extractors run, so an invalid credential is 401 whatever else is wrong
/// with the request. Requests without an `Authorization` header pass through
/// (public routes need none; the extractors answer 401).
pub async fn authenticate(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req
        .headers()
        .contains_key(actix_web::http::header::AUTHORIZATION)
    {
        let http = req.request();
        let digest = bearer(http).map(|token| hash_key(&token));
        let state = state(http);
        let limiter = (digest.as_ref().ok().cloned(), state.as_ref().ok().cloned());
        let mut result = resolve(digest, state).await;
        // Rate limits apply to valid workspace keys only: an invented key
        // leaves no state behind.
        if let (Ok(Caller::Workspace(_)), (Some(digest), Some(state))) = (&result, limiter) {
            if let Err(limited) = state.limits.check_key(&digest) {
                // Read the refused request's body (bounded) so the keep-alive
                // connection survives: an unread body closes it, and a
                // throttled client reconnecting for every request costs the
                // server more than serving it would.
                drain(&mut req, state.settings.limits.max_body_bytes).await;
                result = Err(limited);
            }
        }
        req.extensions_mut().insert(Resolved(result));
    }
    next.call(req).await
}

/// The caller [`authenticate`] resolved for this request, when it resolved
/// a valid one (`None`: no credential, or one that answers 401 or 429).
pub(crate) fn resolved_caller(req: &HttpRequest) -> Option<Caller> {
    req.extensions()
        .get::<Resolved>()
        .and_then(|r| r.0.as_ref().ok().copied())
}

/// Reads and discards up to `cap` bytes of the request body.
async fn drain(req: &mut ServiceRequest, cap: usize) {
    use futures_util::StreamExt as _;
    let mut payload = req.take_payload();
    let mut read = 0usize;
    while let Some(Ok(chunk)) = payload.next().await {
        read += chunk.len();
        if read > cap {
            break;
        }
    }
}

fn caller(req: &HttpRequest) -> Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>> {
    if let Some(Resolved(r)) = req.extensions().get::<Resolved>() {
        let r = r.as_ref().copied().map_err(copy_error);
        return Box::pin(std::future::ready(r));
    }
    // Outside the middleware (no header, or a route not under /api/v1).
    Box::pin(resolve(
        bearer(req).map(|token| hash_key(&token)),
        state(req),
    ))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        caller(req)
    }
}

/// The caller's workspace, from a workspace API key.
#[derive(Debug, Clone, Copy)]
pub struct Workspace(pub WorkspaceId);

impl FromRequest for Workspace {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = caller(req);
        Box::pin(async move {
            match caller.await? {
                Caller::Workspace(ws) => {
                    // The request span (telemetry::request_span) now names its tenant.
                    tracing::Span::current().record("workspace", tracing::field::display(ws));
                    Ok(Workspace(ws))
                }
                Caller::Admin => Err(ApiError::new(
                    ErrorCode::WorkspaceKeyRequired,
                    "the admin key manages workspaces; use a workspace API key (from POST /api/v1/workspaces) here",
                )),
            }
        })
    }
}

/// The caller holds the admin key.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = caller(req);
        Box::pin(async move {
            match caller.await? {
                Caller::Admin => Ok(Admin),
                Caller::Workspace(_) => Err(ApiError::new(
                    ErrorCode::AdminKeyRequired,
                    "this endpoint needs the admin key (auth.admin_key); a workspace key cannot manage workspaces, keys, the audit log or the alert notifiers",
                )),
            }
        })
    }
}
