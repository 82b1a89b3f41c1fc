//! The dashboards' stylesheet and script, compiled into the binary from
//! `assets/dashboard/`. Pages link them as `/learning/static/NAME?v=HASH`
//! (the first 16 hex digits of the file's SHA-256), so a new binary changes
//! the URL and browsers may cache each version for a year (`immutable`);
//! an `ETag` of the same hash answers revalidations with 304.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// `app.css`.
pub const CSS: &str = include_str!("../../assets/dashboard/app.css");
/// `app.js`: the live insights widget (progressive enhancement; every page
/// works without it).
pub const JS: &str = include_str!("../../assets/dashboard/app.js");

struct Asset {
    name: &'static str,
    body: &'static str,
    content_type: &'static str,
    hash: String,
    url: String,
}

fn asset(name: &'static str, body: &'static str, content_type: &'static str) -> Asset {
    let hash: String = hex::encode(Sha256::digest(body.as_bytes()))
        .chars()
        .take(16)
        .collect();
    let url = format!("/learning/static/{name}?v={hash}");
    Asset {
        name,
        body,
        content_type,
        hash,
        url,
    }
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        asset("app.css", CSS, "text/css; charset=utf-8"),
        asset("app.js", JS, "text/javascript; charset=utf-8"),
    ]
});

/// The stylesheet's versioned URL.
pub fn css_url() -> &'static str {
    ASSETS
        .first()
        .map_or("/learning/static/app.css", |a| a.url.as_str())
}

/// The script's versioned URL.
pub fn js_url() -> &'static str {
    ASSETS
        .get(1)
        .map_or("/learning/static/app.js", |a| a.url.as_str())
}

/// `GET /learning/static/{file}`: no session needed (nothing in them is
/// secret); 304 when `If-None-Match` names the current version.
pub async fn serve(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    let Some(a) = ASSETS.iter().find(|a| a.name == file.as_str()) else {
        return super::error_page(actix_web::http::StatusCode::NOT_FOUND, "no such file");
    };
    let etag = format!("\"{}\"", a.hash);
    let cache = (header::CACHE_CONTROL, "public, max-age=31536000, immutable");
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if matches {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header(cache)
            .finish();
    }
    HttpResponse::Ok()
        .content_type(a.content_type)
        .insert_header((header::ETAG, etag))
        .insert_header(cache)
        .body(a.body)
}
