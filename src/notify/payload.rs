//! What each notifier sends, as pure functions of a [`Notification`]: the
//! webhook's JSON, the Slack message, the PagerDuty event, the mail's
//! subject and body. No I/O here, so each shape is unit-tested.
//!
//! Alert text can carry a tenant's strings (an agent id in a summary), so:
//! JSON is built with serde (never by formatting), Slack's control
//! sequences (`<!channel>`, `<url|label>`) are escaped, and a mail subject
//! has its control characters (CR, LF) replaced before it becomes a header.

use serde_json::{json, Value};
use swarmwise_actors::alerts::{AlertStatus, Notification, Severity};

/// The `version` of the webhook payload: bumped only for a change that is
/// not additive.
pub const WEBHOOK_VERSION: u32 = 1;

/// The webhook body: the notification (`status`, `alert`) plus `version`.
pub fn webhook(n: &Notification) -> Value {
    json!({
        "version": WEBHOOK_VERSION,
        "status": n.status,
        "alert": n.alert,
    })
}

/// `FIRING` or `RESOLVED`.
fn status_word(status: AlertStatus) -> &'static str {
    match status {
        AlertStatus::Firing => "FIRING",
        AlertStatus::Resolved => "RESOLVED",
    }
}

/// Where the alert is: the workspace id, or `node` for node-level alerts.
fn scope(n: &Notification) -> String {
    n.alert
        .workspace_id
        .map_or_else(|| "node".to_owned(), |w| w.to_string())
}

/// Escapes the three characters Slack reads as control sequences in
/// message text (`&`, `<`, `>`), so `<!channel>` in a summary stays text.
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Slack attachment colour by severity (green once resolved).
fn slack_colour(n: &Notification) -> &'static str {
    match (n.status, n.alert.severity) {
        (AlertStatus::Resolved, _) => "#2eb886",
        (_, Severity::Critical) => "#d00000",
        (_, Severity::Warning) => "#f2c744",
        (_, Severity::Info) => "#439fe0",
    }
}

/// A Slack incoming-webhook message: `text` (the notification line, also
/// the fallback of clients without attachments) and one attachment
/// coloured by severity with the alert's fields. A resolution says
/// `RESOLVED` and is green.
pub fn slack(n: &Notification) -> Value {
    let a = &n.alert;
    let text = format!(
        "[{}] [{}] {}",
        status_word(n.status),
        a.severity.as_str().to_uppercase(),
        slack_escape(&a.summary)
    );
    let mut fields = vec![
        json!({"title": "rule", "value": slack_escape(&a.rule), "short": true}),
        json!({"title": "severity", "value": a.severity.as_str(), "short": true}),
        json!({"title": "workspace", "value": scope(n), "short": true}),
        json!({"title": "subject", "value": slack_escape(&a.subject), "short": true}),
        json!({"title": "value", "value": format!("{} (threshold {})", a.value, a.threshold), "short": true}),
        json!({"title": "fired at", "value": a.fired_at.to_rfc3339(), "short": true}),
    ];
    if let Some(at) = a.resolved_at {
        fields.push(json!({"title": "resolved at", "value": at.to_rfc3339(), "short": true}));
    }
    if let Some(action) = &a.action {
        fields.push(json!({"title": "action", "value": slack_escape(action), "short": true}));
    }
    json!({
        "text": text,
        "attachments": [{
            "color": slack_colour(n),
            "fallback": text,
            "fields": fields,
            "footer": format!("swarmwise alert {}", a.id),
        }],
    })
}

/// PagerDuty's largest `summary`, in characters.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;
/// PagerDuty's largest `dedup_key`, in characters.
const PAGERDUTY_DEDUP_MAX: usize = 255;

/// The PagerDuty dedup key of an alert: its fingerprint, so a trigger and
/// its resolve name the same incident; a fingerprint longer than
/// PagerDuty's 255 characters is replaced by its SHA-256 (hex), the same
/// for both.
pub fn pagerduty_dedup_key(fingerprint: &str) -> String {
    if fingerprint.chars().count() <= PAGERDUTY_DEDUP_MAX {
        fingerprint.to_owned()
    } else {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(fingerprint.as_bytes()))
    }
}

/// Cuts `s` to at most `max` characters.
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A PagerDuty Events API v2 event: `trigger` while firing, `resolve` once
/// resolved, `dedup_key` = the fingerprint, severity mapped one to one
/// (`critical`, `warning`, `info`), `timestamp` = when it fired (RFC 3339).
pub fn pagerduty(n: &Notification, routing_key: &str) -> Value {
    let a = &n.alert;
    let action = match n.status {
        AlertStatus::Firing => "trigger",
        AlertStatus::Resolved => "resolve",
    };
    json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": pagerduty_dedup_key(&a.fingerprint),
        "client": "swarmwise",
        "payload": {
            "summary": cut(&a.summary, PAGERDUTY_SUMMARY_MAX),
            "source": format!("swarmwise/{}", scope(n)),
            "severity": a.severity.as_str(),
            "timestamp": a.fired_at.to_rfc3339(),
            "component": a.subject,
            "group": scope(n),
            "class": a.rule,
            "custom_details": {
                "alert_id": a.id,
                "rule": a.rule,
                "subject": a.subject,
                "value": a.value,
                "threshold": a.threshold,
                "action": a.action,
                "started_at": a.started_at,
                "resolved_at": a.resolved_at,
            },
        },
    })
}

/// Most characters of a mail subject (long summaries are cut).
const SUBJECT_MAX: usize = 200;

/// Replaces every control character (CR, LF, tab, ...) by a space, so a
/// string can be one header line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `[CRITICAL] summary` while firing, `[RESOLVED] [CRITICAL] summary` once
/// resolved; one line, at most 200 characters.
pub fn email_subject(n: &Notification) -> String {
    let severity = n.alert.severity.as_str().to_uppercase();
    let subject = match n.status {
        AlertStatus::Firing => format!("[{severity}] {}", n.alert.summary),
        AlertStatus::Resolved => format!("[RESOLVED] [{severity}] {}", n.alert.summary),
    };
    cut(&one_line(&subject), SUBJECT_MAX)
}

/// The plain-text body: what fired, where, the value against its
/// threshold, when, and the alert id to look it up
/// (`GET /api/v1/alerts/{id}`).
pub fn email_body(n: &Notification) -> String {
    let a = &n.alert;
    let mut body = format!(
        "{status}: {summary}\n\n\
         rule:       {rule}\n\
         severity:   {severity}\n\
         workspace:  {ws}\n\
         subject:    {subject}\n\
         value:      {value} (threshold {threshold})\n\
         started at: {started}\n\
         fired at:   {fired}\n",
        status = status_word(n.status),
        summary = a.summary,
        rule = a.rule,
        severity = a.severity.as_str(),
        ws = scope(n),
        subject = a.subject,
        value = a.value,
        threshold = a.threshold,
        started = a.started_at.to_rfc3339(),
        fired = a.fired_at.to_rfc3339(),
    );
    if let Some(at) = a.resolved_at {
        body.push_str(&format!("resolved at: {}\n", at.to_rfc3339()));
    }
    if let Some(action) = &a.action {
        body.push_str(&format!("action:     {action}\n"));
    }
    body.push_str(&format!(
        "\nalert id {id} (GET /api/v1/alerts/{id}; fingerprint {fp})\n",
        id = a.id,
        fp = a.fingerprint
    ));
    body
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use chrono::{TimeZone, Utc};
    use swarmwise_actors::alerts::Alert;
    use swarmwise_actors::domain::WorkspaceId;

    pub(crate) fn alert(summary: &str, status: AlertStatus) -> Notification {
        let ws = WorkspaceId(uuid::Uuid::nil());
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
        Notification {
            status,
            alert: Alert {
                id: uuid::Uuid::nil(),
                workspace_id: Some(ws),
                rule: "agent_trust_low".into(),
                severity: Severity::Critical,
                subject: "a1".into(),
                fingerprint: Alert::fingerprint_of(Some(ws), "agent_trust_low", "a1"),
                status,
                value: 0.21,
                threshold: 0.3,
                summary: summary.into(),
                action: Some("quarantine".into()),
                started_at: at,
                fired_at: at,
                resolved_at: (status == AlertStatus::Resolved).then_some(at),
                acked_at: None,
                acked_by: None,
            },
        }
    }

    #[test]
    fn webhook_is_the_notification_with_a_version() {
        let n = alert("agent a1: trust 0.21 < 0.30", AlertStatus::Firing);
        let v = webhook(&n);
        assert_eq!(v["version"], 1);
        assert_eq!(v["status"], "firing");
        let back: Notification = serde_json::from_value(v).unwrap();
        assert_eq!(back, n);
    }

    #[test]
    fn slack_escapes_mentions_and_links_and_says_resolved() {
        let n = alert(
            "<!channel> see <https://evil.example|here> & act",
            AlertStatus::Firing,
        );
        let v = slack(&n);
        let text = v["text"].as_str().unwrap();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(
            text.contains("&lt;!channel&gt;") && text.contains("&amp; act"),
            "{text}"
        );
        assert_eq!(v["attachments"][0]["color"], "#d00000");
        let r = slack(&alert("x", AlertStatus::Resolved));
        assert!(r["text"]
            .as_str()
            .unwrap()
            .starts_with("[RESOLVED] [CRITICAL]"));
        assert_eq!(r["attachments"][0]["color"], "#2eb886");
    }

    #[test]
    fn pagerduty_trigger_and_resolve_share_the_dedup_key() {
        let t = pagerduty(&alert("s", AlertStatus::Firing), "rk");
        let r = pagerduty(&alert("s", AlertStatus::Resolved), "rk");
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(t["dedup_key"], r["dedup_key"]);
        assert_eq!(
            t["dedup_key"],
            alert("s", AlertStatus::Firing).alert.fingerprint
        );
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["routing_key"], "rk");
        let long = pagerduty(&alert(&"é".repeat(5000), AlertStatus::Firing), "rk");
        assert_eq!(
            long["payload"]["summary"].as_str().unwrap().chars().count(),
            1024
        );
        let key = pagerduty_dedup_key(&"x".repeat(300));
        assert_eq!(key.len(), 64);
        assert_eq!(key, pagerduty_dedup_key(&"x".repeat(300)));
    }

    #[test]
    fn subject_is_one_line_whatever_the_summary() {
        let n = alert(
            "bad\r\nBcc: victim@example.com\r\n\r\nbody",
            AlertStatus::Firing,
        );
        let s = email_subject(&n);
        assert!(!s.contains('\r') && !s.contains('\n'), "{s:?}");
        assert!(s.starts_with("[CRITICAL] bad  Bcc:"), "{s}");
        let r = email_subject(&alert("x", AlertStatus::Resolved));
        assert_eq!(r, "[RESOLVED] [CRITICAL] x");
        assert!(
            email_subject(&alert(&"y".repeat(1000), AlertStatus::Firing))
                .chars()
                .count()
                <= 200
        );
        assert!(email_body(&n).contains("quarantine"));
    }
}
