//! `[alerts.notifiers.NAME]` and `[alerts.routes]`: which notifiers exist
//! (operator config only: a tenant never names a URL, a host or a secret)
//! and which severities reach them. Validation names the offending key.
//!
//! Secrets (a PagerDuty routing key, webhook headers, SMTP credentials, a
//! Slack URL, which is itself a credential) are never written in TOML: the
//! config names the environment variable that holds them, read once at
//! start ([`NotifierSettings::secret_envs`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The environment prefix of the service's own settings: never a secret
/// a notifier may read (it would leak e.g. the admin key to a receiver).
const SETTINGS_ENV_PREFIX: &str = crate::backends::policy::SETTINGS_ENV_PREFIX;

/// The Events API v2 endpoint, the default `url` of a `pagerduty` notifier.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// What a notifier speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    /// POST of the notification as JSON (with a `version` field).
    Webhook,
    /// A Slack-compatible incoming webhook (`text` + coloured attachment).
    Slack,
    /// PagerDuty Events API v2 (`trigger` / `resolve`, dedup key = fingerprint).
    Pagerduty,
    /// A plain-text mail over SMTP.
    Email,
}

impl NotifierKind {
    /// `webhook`, `slack`, `pagerduty` or `email`: the `kind` metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Pagerduty => "pagerduty",
            Self::Email => "email",
        }
    }
}

/// How an `email` notifier talks to its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (a relay on localhost or a trusted network only).
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

impl SmtpTls {
    /// The usual port of each mode: 25, 587, 465.
    pub const fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::Starttls => 587,
            Self::Tls => 465,
        }
    }
}

/// `[alerts.notifiers.NAME]`: one notifier. Fields that do not apply to its
/// `kind` are refused, so a typo cannot go unnoticed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierSettings {
    /// `webhook`, `slack`, `pagerduty` or `email`.
    pub kind: NotifierKind,
    /// webhook, slack: where to POST (http or https). pagerduty: the Events
    /// API endpoint (default [`PAGERDUTY_EVENTS_URL`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// webhook, slack: the environment variable holding the URL instead of
    /// `url` (a Slack webhook URL is a credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// webhook: extra request headers, header name → environment variable
    /// holding its value (e.g. `Authorization = "ALERT_HOOK_TOKEN"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers_env: BTreeMap<String, String>,
    /// pagerduty: the environment variable holding the integration's
    /// routing key (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key_env: Option<String>,
    /// email: the SMTP server's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_host: Option<String>,
    /// email: its port (default by `tls`: 25, 587 or 465).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_port: Option<u16>,
    /// email: `none`, `starttls` (default) or `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SmtpTls>,
    /// email: environment variable holding the SMTP user name (with
    /// `password_env`; both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_env: Option<String>,
    /// email: environment variable holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// email: the sender, e.g. `Swarmwise <alerts@example.com>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// email: the recipients (at least one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// Only alerts of these workspaces (ids), plus node-level alerts when
    /// `"node"` is listed; empty = every alert routed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspaces: Vec<String>,
    /// Also deliver resolutions (PagerDuty: `resolve`); false = firing only.
    #[serde(default = "yes")]
    pub notify_resolved: bool,
    /// Milliseconds one delivery attempt may take (connect to answer).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per notification, the first included (1 = no retry).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Milliseconds before the first retry; doubles each retry, with jitter.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Cap of the backoff, in milliseconds (also caps a 429's Retry-After).
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Notifications waiting for this notifier; one more is dropped (and
    /// counted) rather than blocking the Alerter.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

const fn yes() -> bool {
    true
}
const fn default_timeout_ms() -> u64 {
    10_000
}
const fn default_attempts() -> u32 {
    5
}
const fn default_initial_backoff_ms() -> u64 {
    1_000
}
const fn default_max_backoff_ms() -> u64 {
    60_000
}
const fn default_queue_capacity() -> usize {
    1_000
}

impl NotifierSettings {
    /// A notifier of `kind` with every other field at its default (empty).
    pub fn new(kind: NotifierKind) -> Self {
        Self {
            kind,
            url: None,
            url_env: None,
            headers_env: BTreeMap::new(),
            routing_key_env: None,
            smtp_host: None,
            smtp_port: None,
            tls: None,
            username_env: None,
            password_env: None,
            from: None,
            to: Vec::new(),
            workspaces: Vec::new(),
            notify_resolved: true,
            timeout_ms: default_timeout_ms(),
            attempts: default_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            queue_capacity: default_queue_capacity(),
        }
    }

    /// Every environment variable this notifier reads, with the key that
    /// names it (`url_env`, `headers_env.Authorization`, ...).
    pub fn secret_envs(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for (key, v) in [
            ("url_env", &self.url_env),
            ("routing_key_env", &self.routing_key_env),
            ("username_env", &self.username_env),
            ("password_env", &self.password_env),
        ] {
            if let Some(v) = v {
                out.push((key.to_owned(), v.as_str()));
            }
        }
        for (header, v) in &self.headers_env {
            out.push((format!("headers_env.{header}"), v.as_str()));
        }
        out
    }

    /// The fields set that `kind` does not use (their key names).
    fn foreign_fields(&self) -> Vec<&'static str> {
        let set: [(&'static str, bool, &[NotifierKind]); 11] = {
            use NotifierKind::{Email, Pagerduty, Slack, Webhook};
            [
                ("url", self.url.is_some(), &[Webhook, Slack, Pagerduty]),
                ("url_env", self.url_env.is_some(), &[Webhook, Slack]),
                ("headers_env", !self.headers_env.is_empty(), &[Webhook]),
                (
                    "routing_key_env",
                    self.routing_key_env.is_some(),
                    &[Pagerduty],
                ),
                ("smtp_host", self.smtp_host.is_some(), &[Email]),
                ("smtp_port", self.smtp_port.is_some(), &[Email]),
                ("tls", self.tls.is_some(), &[Email]),
                ("username_env", self.username_env.is_some(), &[Email]),
                ("password_env", self.password_env.is_some(), &[Email]),
                ("from", self.from.is_some(), &[Email]),
                ("to", !self.to.is_empty(), &[Email]),
            ]
        };
        set.iter()
            .filter(|(_, present, kinds)| *present && !kinds.contains(&self.kind))
            .map(|(k, _, _)| *k)
            .collect()
    }
}

/// `[alerts.routes]`: the notifiers (by name) each severity is sent to.
/// Empty everywhere by default: nothing is notified until the operator
/// routes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteSettings {
    /// Notifiers for critical alerts.
    pub critical: Vec<String>,
    /// Notifiers for warnings.
    pub warning: Vec<String>,
    /// Notifiers for info alerts.
    pub info: Vec<String>,
}

impl RouteSettings {
    /// The notifier names routed for `severity`.
    pub fn for_severity(&self, severity: swarmwise_actors::alerts::Severity) -> &[String] {
        use swarmwise_actors::alerts::Severity;
        match severity {
            Severity::Critical => &self.critical,
            Severity::Warning => &self.warning,
            Severity::Info => &self.info,
        }
    }
}

/// A notifier name: it becomes a metric label and a map key, so it is
/// short and plain.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(SETTINGS_ENV_PREFIX)
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn check_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(format!(
            "{url:?} must be an http:// or https:// URL with a host"
        )),
        Err(e) => Err(format!(
            "{url:?} is not a URL ({e}); e.g. https://hooks.example.com/swarmwise"
        )),
    }
}

/// Checks the notifiers and routes; `Err((key, message))` names the
/// offending key under `alerts.`.
pub fn validate(
    notifiers: &BTreeMap<String, NotifierSettings>,
    routes: &RouteSettings,
) -> Result<(), (String, String)> {
    for (name, n) in notifiers {
        let key = |field: &str| format!("alerts.notifiers.{name}.{field}");
        if !valid_name(name) {
            return Err((
                format!("alerts.notifiers.{name}"),
                "a notifier name is 1 to 64 of a-z, 0-9, `_` and `-` (it is a metric label), e.g. oncall-pagerduty".into(),
            ));
        }
        if let Some(field) = n.foreign_fields().first() {
            return Err((
                key(field),
                format!(
                    "not used by kind = \"{}\"; remove it (see config/default.toml for each kind's keys)",
                    n.kind.as_str()
                ),
            ));
        }
        for (field, env) in n.secret_envs() {
            if !valid_env_name(env) {
                return Err((
                    key(&field),
                    format!("{env:?} must name an environment variable (letters, digits, `_`), not a value, and never one of the service's own SWARMWISE__* settings"),
                ));
            }
        }
        match n.kind {
            NotifierKind::Webhook | NotifierKind::Slack => match (&n.url, &n.url_env) {
                (Some(url), None) => check_url(url).map_err(|m| (key("url"), m))?,
                (None, Some(_)) => {}
                _ => {
                    return Err((
                        key("url"),
                        "set exactly one of url and url_env (the variable holding the URL)".into(),
                    ))
                }
            },
            NotifierKind::Pagerduty => {
                if let Some(url) = &n.url {
                    check_url(url).map_err(|m| (key("url"), m))?;
                }
                if n.routing_key_env.is_none() {
                    return Err((
                        key("routing_key_env"),
                        "required: the environment variable holding the integration's routing key, e.g. PAGERDUTY_ROUTING_KEY".into(),
                    ));
                }
            }
            NotifierKind::Email => {
                if n.smtp_host.as_deref().is_none_or(|h| h.trim().is_empty()) {
                    return Err((
                        key("smtp_host"),
                        "required: the SMTP server's host name, e.g. smtp.example.com".into(),
                    ));
                }
                if n.smtp_port == Some(0) {
                    return Err((key("smtp_port"), "must be 1 to 65535".into()));
                }
                if n.username_env.is_some() != n.password_env.is_some() {
                    return Err((
                        key("username_env"),
                        "set both username_env and password_env, or neither".into(),
                    ));
                }
                let from = n.from.as_deref().unwrap_or_default();
                if from.parse::<lettre::message::Mailbox>().is_err() {
                    return Err((
                        key("from"),
                        format!("{from:?} is not a mail address; e.g. \"Swarmwise <alerts@example.com>\""),
                    ));
                }
                if n.to.is_empty() {
                    return Err((
                        key("to"),
                        "list at least one recipient, e.g. [\"oncall@example.com\"]".into(),
                    ));
                }
                for to in &n.to {
                    if to.parse::<lettre::message::Mailbox>().is_err() {
                        return Err((
                            key("to"),
                            format!("{to:?} is not a mail address; e.g. \"oncall@example.com\""),
                        ));
                    }
                }
            }
        }
        for w in &n.workspaces {
            if w != "node" && uuid::Uuid::parse_str(w).is_err() {
                return Err((
                    key("workspaces"),
                    format!(
                        "{w:?} is neither a workspace id (a UUID) nor \"node\" (node-level alerts)"
                    ),
                ));
            }
        }
        if n.timeout_ms == 0 || n.timeout_ms > 300_000 {
            return Err((
                key("timeout_ms"),
                "must be 1 to 300000 (five minutes)".into(),
            ));
        }
        if !(1..=100).contains(&n.attempts) {
            return Err((key("attempts"), "must be 1 to 100 (1 = no retry)".into()));
        }
        if n.initial_backoff_ms == 0 || n.initial_backoff_ms > n.max_backoff_ms {
            return Err((
                key("initial_backoff_ms"),
                "must be at least 1 and not exceed max_backoff_ms".into(),
            ));
        }
        if n.max_backoff_ms > 3_600_000 {
            return Err((
                key("max_backoff_ms"),
                "must be at most 3600000 (one hour)".into(),
            ));
        }
        if !(1..=1_000_000).contains(&n.queue_capacity) {
            return Err((key("queue_capacity"), "must be 1 to 1000000".into()));
        }
    }
    for (severity, names) in [
        ("critical", &routes.critical),
        ("warning", &routes.warning),
        ("info", &routes.info),
    ] {
        for name in names {
            if !notifiers.contains_key(name) {
                let known: Vec<&str> = notifiers.keys().map(String::as_str).collect();
                return Err((
                    format!("alerts.routes.{severity}"),
                    format!(
                        "unknown notifier {name:?}; declare [alerts.notifiers.{name}] or use one of: {}",
                        if known.is_empty() { "(none declared)".to_owned() } else { known.join(", ") }
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn webhook() -> NotifierSettings {
        let mut n = NotifierSettings::new(NotifierKind::Webhook);
        n.url = Some("http://127.0.0.1:9/hook".into());
        n
    }

    fn check(n: NotifierSettings, routes: RouteSettings) -> Result<(), (String, String)> {
        validate(&BTreeMap::from([("hook".to_owned(), n)]), &routes)
    }

    #[test]
    fn unknown_notifier_in_a_route_names_the_route() {
        let routes = RouteSettings {
            warning: vec!["nope".into()],
            ..RouteSettings::default()
        };
        let (key, message) = check(webhook(), routes).unwrap_err();
        assert_eq!(key, "alerts.routes.warning");
        assert!(
            message.contains("nope") && message.contains("hook"),
            "{message}"
        );
    }

    #[test]
    fn each_kind_needs_its_own_keys_and_refuses_others() {
        assert!(check(webhook(), RouteSettings::default()).is_ok());
        let mut n = webhook();
        n.smtp_host = Some("smtp.example.com".into());
        assert_eq!(
            check(n, RouteSettings::default()).unwrap_err().0,
            "alerts.notifiers.hook.smtp_host"
        );
        let mut n = webhook();
        n.url_env = Some("HOOK_URL".into());
        assert_eq!(
            check(n, RouteSettings::default()).unwrap_err().0,
            "alerts.notifiers.hook.url"
        );
        let n = NotifierSettings::new(NotifierKind::Pagerduty);
        assert_eq!(
            check(n, RouteSettings::default()).unwrap_err().0,
            "alerts.notifiers.hook.routing_key_env"
        );
        let mut n = NotifierSettings::new(NotifierKind::Email);
        n.smtp_host = Some("smtp.example.com".into());
        n.from = Some("Swarmwise <alerts@example.com>".into());
        assert_eq!(
            check(n.clone(), RouteSettings::default()).unwrap_err().0,
            "alerts.notifiers.hook.to"
        );
        n.to = vec!["oncall@example.com".into()];
        assert!(check(n.clone(), RouteSettings::default()).is_ok());
        n.to = vec!["not an address".into()];
        assert_eq!(
            check(n, RouteSettings::default()).unwrap_err().0,
            "alerts.notifiers.hook.to"
        );
    }

    #[test]
    fn secrets_are_variable_names_and_never_the_services_own_settings() {
        let mut n = NotifierSettings::new(NotifierKind::Pagerduty);
        n.routing_key_env = Some("SWARMWISE__AUTH__ADMIN_KEY".into());
        assert_eq!(
            check(n.clone(), RouteSettings::default()).unwrap_err().0,
            "alerts.notifiers.hook.routing_key_env"
        );
        n.routing_key_env = Some("R0UTING key with spaces".into());
        assert!(check(n.clone(), RouteSettings::default()).is_err());
        n.routing_key_env = Some("PAGERDUTY_ROUTING_KEY".into());
        assert!(check(n, RouteSettings::default()).is_ok());
    }

    #[test]
    fn names_are_bounded_label_values() {
        assert!(valid_name("oncall-pagerduty_2"));
        for bad in ["", "Oncall", "a b", "x\"}", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn backoff_and_workspace_filter_are_checked() {
        let mut n = webhook();
        n.initial_backoff_ms = 10;
        n.max_backoff_ms = 5;
        assert_eq!(
            check(n, RouteSettings::default()).unwrap_err().0,
            "alerts.notifiers.hook.initial_backoff_ms"
        );
        let mut n = webhook();
        n.workspaces = vec!["node".into(), "not-a-uuid".into()];
        assert_eq!(
            check(n, RouteSettings::default()).unwrap_err().0,
            "alerts.notifiers.hook.workspaces"
        );
    }
}
