//! `Body<T>`: a JSON body extractor whose errors name the offending field
//! (`items[3].confidence`) and use our error shape, with the size limit from
//! `limits.max_body_bytes` (413 past it).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// A parsed JSON body.
#[derive(Debug)]
pub struct Body<T>(pub T);

/// Parses JSON bytes, naming the field on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." { String::new() } else { path };
        let message = if field.is_empty() {
            format!("the body is not valid JSON of the expected shape: {inner}")
        } else {
            format!("{field}: {inner}")
        };
        ApiError::field(ErrorCode::MalformedJson, &field, message)
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(4 * 1024 * 1024, |s| s.settings.limits.max_body_bytes);
        let json_type = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/json") || v.contains("+json"));
        let mut payload = payload.take();
        Box::pin(async move {
            if !json_type {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    "send the body as JSON with Content-Type: application/json",
                ));
            }
            let mut body = web::BytesMut::new();
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
            parse_json(&body).map(Body)
        })
    }
}

/// A parsed query string, like `web::Query`, whose errors name the
/// offending parameter in `details.field` (400 `invalid_query`): `web::Query`
/// said only "Query deserialize error: provided string was not `true` or
/// `false`", without the parameter.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Query<T> {
    /// The parsed value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Parses a query string, naming the parameter on error.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." { String::new() } else { path };
        let message = if field.is_empty() {
            format!("query string: {inner}; fix the query and retry")
        } else {
            format!("query parameter {field}: {inner}; fix it and retry")
        };
        ApiError::field(ErrorCode::InvalidQuery, &field, message)
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(Query))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::parse_query;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Q {
        include_expired: Option<bool>,
        limit: Option<u32>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let q: Q = parse_query("include_expired=true&limit=3").unwrap();
        assert_eq!((q.include_expired, q.limit), (Some(true), Some(3)));
        let e = parse_query::<Q>("limit=3&include_expired=maybe").unwrap_err();
        let body = e.body();
        assert_eq!(body["error"], "invalid_query");
        assert_eq!(body["details"]["field"], "include_expired", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("query parameter include_expired: "),
            "{body}"
        );
    }
}
