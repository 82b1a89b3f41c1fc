//! The dashboard's handlers: each reads through the same functions as the
//! JSON API, in the session's workspace only, and renders one template.
//! Numbers are formatted here (three decimals for trust, as `data-trust`
//! promises) so the templates stay plain.
//!
//! One module per page: [`signin`] (sign-in and sign-out), [`overview`]
//! (insights widget, live events, run a cycle), [`trust`] (trust scores,
//! enable/disable, agents CSV), [`patterns`] (pattern board), [`agent`]
//! (agent profile, its CSV exports), [`runs`] (runs and one run's fan-out).
//! Shared formatting and the page frame live here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use swarmwise_actors::domain::{AgentId, RecommendationFilter, RecommendationStatus};
use swarmwise_actors::learner::cycle::{PatternStatus, StoredPattern};
use swarmwise_actors::learner::patterns::Category;
use swarmwise_actors::trust::TrustCard;
use uuid::Uuid;

use super::session::{Sessions, COOKIE};
use super::svg::{self, Series};
use super::{assets, session_id, DashError, Signed};
use crate::auth::{caller_of_digest, hash_key, Caller};
use crate::error::ApiError;
use crate::routes::trust::csv_field;
use crate::state::AppState;
use crate::store::{Bucket, RunSummary};

type Page = Result<HttpResponse, DashError>;

/// An agent's quarantine as a badge: `quarantined` (held or cooling down)
/// or `probation`, with the alert's reason.
pub struct QuarantineBadge {
    /// `quarantined` or `probation` (also the CSS class).
    pub state: &'static str,
    /// The alert's reason and where the lifecycle is, in words.
    pub reason: String,
}

impl QuarantineBadge {
    /// The badge of an agent's quarantine, if it has one.
    pub fn of(q: Option<&swarmwise_actors::admission::Quarantine>) -> Option<Self> {
        let q = q?;
        let when = if q.hold {
            "held until an operator enables it".to_owned()
        } else {
            match q.until {
                Some(u) => format!("cool-down until {}", u.format("%Y-%m-%d %H:%M UTC")),
                None => format!("probation since {}", q.since.format("%Y-%m-%d %H:%M UTC")),
            }
        };
        Some(Self {
            state: q.state.as_str(),
            reason: format!("{} ({when}; {} failed probations)", q.reason, q.probations),
        })
    }
}

/// What every page's frame needs.
pub struct Chrome {
    /// The session's CSRF token, for the sign-out form and every action.
    pub csrf: String,
    /// Which nav entry is current.
    pub active: &'static str,
    /// Versioned stylesheet URL.
    pub css_url: &'static str,
    /// Versioned script URL.
    pub js_url: &'static str,
}

fn chrome(s: &Signed, active: &'static str) -> Chrome {
    Chrome {
        csrf: s.session.csrf.clone(),
        active,
        css_url: assets::css_url(),
        js_url: assets::js_url(),
    }
}

fn html(t: &impl Template) -> Page {
    let body = t.render().map_err(|e| {
        DashError::Api(ApiError::new(
            crate::error::ErrorCode::Internal,
            format!("the page could not be rendered: {e}"),
        ))
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(body))
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

/// A serde enum's snake_case word.
fn word<T: Serialize>(t: &T) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn t3(v: f64) -> String {
    format!("{v:.3}")
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn signed_diff(v: f64) -> String {
    format!("{v:+.3}")
}

fn ago(t: DateTime<Utc>) -> String {
    let s = (Utc::now() - t).num_seconds().max(0);
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn duration(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> String {
    match to {
        Some(to) => format!("{} ms", (to - from).num_milliseconds().max(0)),
        None => "running".into(),
    }
}

fn notice(done: Option<&str>) -> Option<String> {
    match done? {
        "cycle" => Some("Learning cycle finished.".into()),
        "enabled" => Some("Agent enabled.".into()),
        "disabled" => Some("Agent disabled.".into()),
        "busy" => Some("A learning cycle is already running; try again in a moment.".into()),
        _ => None,
    }
}

fn csv(name: &str, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .body(body)
}

mod agent;
mod overview;
mod patterns;
mod runs;
mod signin;
mod trust;

pub use agent::*;
pub use overview::*;
pub use patterns::*;
pub use runs::*;
pub use signin::*;
pub use trust::*;
