//! Bearer API keys. A workspace key authenticates as that workspace; the
//! admin key (config `auth.admin_key`) manages workspaces. Keys are random
//! 256-bit tokens, stored only as SHA-256 digests: a fast hash is right for
//! high-entropy tokens (a slow password hash would cost every request and add
//! nothing against brute force of 2^256).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use rand::RngCore;
use sha2::{Digest, Sha256};
use swarmwise_actors::domain::WorkspaceId;

use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::NewApiKey;

/// SHA-256 of a key, hex.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A fresh random key with its stored form.
pub fn generate_key(prefix: &str) -> (String, NewApiKey) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let key = format!("{prefix}{}", hex::encode(bytes));
    let stored = NewApiKey {
        id: uuid::Uuid::now_v7(),
        key_hash: hash_key(&key),
        prefix: key.chars().take(prefix.len() + 6).collect(),
    };
    (key, stored)
}

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
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
        .ok_or_else(|| {
            ApiError::new(
                actix_web::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "app state missing",
            )
        })
}

/// The caller's workspace, from a workspace API key.
#[derive(Debug, Clone, Copy)]
pub struct Workspace(pub WorkspaceId);

impl FromRequest for Workspace {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = state(req);
        Box::pin(async move {
            let token = token?;
            let state = state?;
            let hash = hash_key(&token);
            if let Some(ws) = state.key_cache.get(&hash) {
                return Ok(Workspace(*ws));
            }
            if hash == state.admin_key_hash {
                return Err(ApiError::new(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "workspace_key_required",
                    "the admin key manages workspaces; use a workspace API key (from POST /api/v1/workspaces) here",
                ));
            }
            match state.store.workspace_for_key(&hash).await? {
                Some(ws) => {
                    state.key_cache.insert(hash, ws);
                    Ok(Workspace(ws))
                }
                None => Err(ApiError::unauthorized(
                    "unknown API key; create one with POST /api/v1/workspaces (admin key)",
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
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let check = || {
            let token = bearer(req)?;
            let state = state(req)?;
            // Comparing digests: timing reveals nothing about the key.
            if hash_key(&token) == state.admin_key_hash {
                Ok(Admin)
            } else {
                Err(ApiError::new(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "admin_key_required",
                    "this endpoint needs the admin key (auth.admin_key, printed at start when generated)",
                ))
            }
        };
        std::future::ready(check())
    }
}
