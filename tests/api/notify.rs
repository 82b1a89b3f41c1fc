//! Notifiers against local receivers speaking each real protocol on
//! loopback: an HTTP server for the webhook, Slack and PagerDuty (payload
//! shapes, dedup keys, retry on 5xx, no retry on 400), an SMTP server
//! written here (EHLO, MAIL, RCPT, DATA, QUIT) for email, and a dead port
//! for a notifier that is down. Hostile tenants: a workspace key cannot
//! read notifier status, and a summary carrying a tenant's string cannot
//! break JSON, ping a Slack channel or add a mail header.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise::notify::{Dispatcher, NotifierKind, NotifierSettings, RouteSettings, SmtpTls};
use swarmwise_actors::alerts::{Alert, AlertStatus, Notification, Severity};
use swarmwise_actors::domain::WorkspaceId;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::helpers::{assert_error, loopback_peer, spawn_app_with, Backend};

/// One request a receiver got.
#[derive(Debug)]
struct Received {
    at: Instant,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// An HTTP receiver on loopback answering the statuses of `script` in
/// turn, then `then`.
fn receiver(script: &[u16], then: u16) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(
        script.iter().copied().collect::<VecDeque<u16>>(),
    ));
    let addr = loopback_peer("127.0.0.1", move |req: HttpRequest, body: web::Bytes| {
        let (tx, script) = (tx.clone(), Arc::clone(&script));
        async move {
            let status = script.lock().unwrap().pop_front().unwrap_or(then);
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let body = serde_json::from_slice(&body).expect("the notifier sent valid JSON");
            let _ = tx.send(Received {
                at: Instant::now(),
                headers,
                body,
            });
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .json(json!({"status": if status < 300 { "success" } else { "invalid event" }}))
        }
    });
    (format!("http://{addr}/hook"), rx)
}

/// The next request, failing the test after 30 s.
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("nothing received within 30 s")
        .expect("receiver gone")
}

fn alert(summary: &str, status: AlertStatus, severity: Severity) -> Notification {
    let ws = WorkspaceId(uuid::Uuid::now_v7());
    let now = chrono::Utc::now();
    Notification {
        status,
        alert: Alert {
            id: uuid::Uuid::now_v7(),
            workspace_id: Some(ws),
            rule: "agent_trust_low".into(),
            severity,
            subject: "a1".into(),
            fingerprint: Alert::fingerprint_of(Some(ws), "agent_trust_low", "a1"),
            status,
            value: 0.21,
            threshold: 0.3,
            summary: summary.into(),
            action: Some("quarantine".into()),
            started_at: now,
            fired_at: now,
            resolved_at: (status == AlertStatus::Resolved).then_some(now),
            acked_at: None,
            acked_by: None,
        },
    }
}

/// The same alert, resolved.
fn resolved(n: &Notification) -> Notification {
    let mut r = n.clone();
    r.status = AlertStatus::Resolved;
    r.alert.status = AlertStatus::Resolved;
    r.alert.resolved_at = Some(chrono::Utc::now());
    r
}

fn fast(mut n: NotifierSettings) -> NotifierSettings {
    n.initial_backoff_ms = 50;
    n.max_backoff_ms = 200;
    n.timeout_ms = 10_000;
    n
}

/// A dispatcher with one notifier `name` routed for every severity.
fn one(name: &str, n: NotifierSettings, env: &[(&str, &str)]) -> Dispatcher {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let routes = RouteSettings {
        critical: vec![name.into()],
        warning: vec![name.into()],
        info: vec![name.into()],
    };
    Dispatcher::start_with_env(&BTreeMap::from([(name.to_owned(), n)]), &routes, &|k| {
        env.get(k).cloned()
    })
    .unwrap()
}

/// Polls the dispatcher until notifier 0 satisfies `done`, for 30 s.
async fn status_until(
    d: &Dispatcher,
    done: impl Fn(&swarmwise::notify::NotifierStatus) -> bool,
) -> swarmwise::notify::NotifierStatus {
    crate::helpers::poll_until("notifier status", || async {
        let s = d.statuses().remove(0);
        if done(&s) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await
}

#[actix_web::test]
async fn webhook_posts_the_notification_with_its_version_and_secret_header() {
    let (url, mut rx) = receiver(&[], 200);
    let mut n = NotifierSettings::new(NotifierKind::Webhook);
    n.url = Some(url);
    n.headers_env = BTreeMap::from([("Authorization".into(), "HOOK_AUTH".into())]);
    let d = one("hook", fast(n), &[("HOOK_AUTH", "Bearer s3cret")]);
    // A tenant's string in the summary: quotes, backslashes, newlines,
    // a NUL-free control character and non-ASCII text stay data.
    let summary = "agent \"a1\"}, {\"injected\": true} \\ \n\t é ☃";
    let firing = alert(summary, AlertStatus::Firing, Severity::Critical);
    d.send(firing.clone());
    let got = next(&mut rx).await;
    assert_eq!(got.headers["authorization"], "Bearer s3cret");
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.body["version"], 1);
    assert_eq!(got.body["status"], "firing");
    assert_eq!(got.body["alert"]["summary"], summary);
    assert!(got.body.get("injected").is_none());
    let back: Notification = serde_json::from_value(got.body.clone()).unwrap();
    assert_eq!(back.alert.fingerprint, firing.alert.fingerprint);
    d.send(resolved(&firing));
    let got = next(&mut rx).await;
    assert_eq!(got.body["status"], "resolved");
    let s = status_until(&d, |s| s.sent == 2).await;
    assert!(
        s.up && s.failed == 0 && s.last_success_at.is_some(),
        "{s:?}"
    );
}

#[actix_web::test]
async fn slack_message_is_coloured_escaped_and_says_resolved() {
    let (url, mut rx) = receiver(&[], 200);
    let mut n = NotifierSettings::new(NotifierKind::Slack);
    n.url_env = Some("SLACK_URL".into());
    let d = one("slack", fast(n), &[("SLACK_URL", &url)]);
    let firing = alert(
        "<!channel> agent <https://evil.example|a1> & co",
        AlertStatus::Firing,
        Severity::Warning,
    );
    d.send(firing.clone());
    let got = next(&mut rx).await;
    let text = got.body["text"].as_str().unwrap();
    assert!(text.starts_with("[FIRING] [WARNING] "), "{text}");
    assert!(
        !text.contains("<!channel>") && !text.contains("<https"),
        "{text}"
    );
    assert!(text.contains("&lt;!channel&gt;"), "{text}");
    let attachment = &got.body["attachments"][0];
    assert_eq!(attachment["color"], "#f2c744");
    assert!(attachment["fields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["title"] == "rule" && f["value"] == "agent_trust_low"));
    d.send(resolved(&firing));
    let got = next(&mut rx).await;
    assert!(got.body["text"]
        .as_str()
        .unwrap()
        .starts_with("[RESOLVED] [WARNING] "));
    assert_eq!(got.body["attachments"][0]["color"], "#2eb886");
}

#[actix_web::test]
async fn pagerduty_triggers_then_resolves_under_one_dedup_key() {
    let (url, mut rx) = receiver(&[], 202);
    let mut n = NotifierSettings::new(NotifierKind::Pagerduty);
    n.url = Some(url);
    n.routing_key_env = Some("PD_KEY".into());
    let d = one("pd", fast(n), &[("PD_KEY", "R0UTINGKEY")]);
    let firing = alert(
        "agent a1: trust 0.21 < 0.30",
        AlertStatus::Firing,
        Severity::Critical,
    );
    d.send(firing.clone());
    d.send(resolved(&firing));
    let trigger = next(&mut rx).await.body;
    let resolve = next(&mut rx).await.body;
    assert_eq!(trigger["routing_key"], "R0UTINGKEY");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve", "in order: {resolve}");
    assert_eq!(trigger["dedup_key"], firing.alert.fingerprint.as_str());
    assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
    let p = &trigger["payload"];
    assert_eq!(p["summary"], "agent a1: trust 0.21 < 0.30");
    assert_eq!(p["severity"], "critical");
    assert!(p["source"].as_str().unwrap().starts_with("swarmwise/"));
    assert!(chrono::DateTime::parse_from_rfc3339(p["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(p["custom_details"]["rule"], "agent_trust_low");
    assert_eq!(p["custom_details"]["threshold"], 0.3);
    let s = status_until(&d, |s| s.sent == 2).await;
    assert_eq!(s.failed, 0);
}

#[actix_web::test]
async fn a_failing_receiver_is_retried_with_backoff_until_it_takes_the_event() {
    let (url, mut rx) = receiver(&[500, 429], 202);
    let mut n = NotifierSettings::new(NotifierKind::Pagerduty);
    n.url = Some(url);
    n.routing_key_env = Some("PD_KEY".into());
    n.attempts = 5;
    let d = one("pd-retry", fast(n), &[("PD_KEY", "k")]);
    let firing = alert("s", AlertStatus::Firing, Severity::Critical);
    d.send(firing.clone());
    let first = next(&mut rx).await;
    let second = next(&mut rx).await;
    let third = next(&mut rx).await;
    for r in [&first, &second, &third] {
        assert_eq!(r.body["dedup_key"], firing.alert.fingerprint.as_str());
    }
    // Equal jitter waits at least half the backoff: >= 25 ms, then >= 50 ms
    // (lower bounds only; a sleep never ends early).
    assert!(second.at - first.at >= Duration::from_millis(25));
    assert!(third.at - second.at >= Duration::from_millis(50));
    let s = status_until(&d, |s| s.sent == 1).await;
    assert!(s.up, "{s:?}");
    assert_eq!((s.failed, s.consecutive_failures), (0, 0));
    assert!(
        s.last_error.as_deref().unwrap().contains("HTTP 429"),
        "{s:?}"
    );
}

#[actix_web::test]
async fn a_400_is_not_retried() {
    let (url, mut rx) = receiver(&[400], 202);
    let mut n = NotifierSettings::new(NotifierKind::Pagerduty);
    n.url = Some(url);
    n.routing_key_env = Some("PD_KEY".into());
    n.attempts = 5;
    let d = one("pd-400", fast(n), &[("PD_KEY", "k")]);
    let refused = alert("first", AlertStatus::Firing, Severity::Critical);
    let taken = alert("second", AlertStatus::Firing, Severity::Critical);
    d.send(refused.clone());
    d.send(taken.clone());
    // The queue is in order: had the 400 been retried, the second request
    // would carry the first alert again.
    let a = next(&mut rx).await;
    let b = next(&mut rx).await;
    assert_eq!(a.body["payload"]["summary"], "first");
    assert_eq!(b.body["payload"]["summary"], "second");
    let s = status_until(&d, |s| s.sent == 1).await;
    assert_eq!(s.failed, 1, "{s:?}");
    assert!(rx.try_recv().is_err(), "a third request was sent");
}

#[actix_web::test]
async fn a_full_queue_drops_instead_of_blocking_the_caller() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut n = NotifierSettings::new(NotifierKind::Webhook);
    n.url = Some(format!("http://127.0.0.1:{port}/closed"));
    n.queue_capacity = 1;
    n.attempts = 1;
    let d = one("tiny-queue", n, &[]);
    for i in 0..10 {
        d.send(alert(&format!("n{i}"), AlertStatus::Firing, Severity::Info));
    }
    let s = d.statuses().remove(0);
    // One queued (or already taken by the task), the rest dropped.
    assert!(s.dropped >= 8, "{s:?}");
    let s = status_until(&d, |s| s.failed + s.dropped == 10).await;
    assert_eq!(s.sent, 0);
}

/// One mail the SMTP server received.
#[derive(Debug, Default)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A minimal SMTP server on loopback (RFC 5321: greeting, EHLO, MAIL,
/// RCPT, DATA with dot-unstuffing, RSET, QUIT); answers the first MAIL
/// with `451` when `busy_once`.
async fn smtp_server(busy_once: bool) -> (u16, mpsc::UnboundedReceiver<Mail>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut busy = busy_once;
        while let Ok((sock, _)) = listener.accept().await {
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            let _ = w.write_all(b"220 mail.test ESMTP ready\r\n").await;
            let mut mail = Mail::default();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                let cmd = line.to_ascii_uppercase();
                let reply: &[u8] = if cmd.starts_with("EHLO") {
                    b"250-mail.test\r\n250 8BITMIME\r\n"
                } else if cmd.starts_with("HELO") || cmd.starts_with("RSET") {
                    b"250 OK\r\n"
                } else if cmd.starts_with("MAIL FROM:") {
                    if busy {
                        busy = false;
                        b"451 4.3.0 busy, try again later\r\n"
                    } else {
                        mail.from = line.trim_end().to_owned();
                        b"250 2.1.0 OK\r\n"
                    }
                } else if cmd.starts_with("RCPT TO:") {
                    mail.to.push(line.trim_end()["RCPT TO:".len()..].to_owned());
                    b"250 2.1.5 OK\r\n"
                } else if cmd.starts_with("DATA") {
                    let _ = w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).await.unwrap_or(0) == 0 || l == ".\r\n" {
                            break;
                        }
                        mail.data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    }
                    let _ = tx.send(std::mem::take(&mut mail));
                    b"250 2.0.0 queued\r\n"
                } else if cmd.starts_with("QUIT") {
                    let _ = w.write_all(b"221 2.0.0 bye\r\n").await;
                    break;
                } else {
                    b"502 5.5.2 command not recognised\r\n"
                };
                let _ = w.write_all(reply).await;
            }
        }
    });
    (port, rx)
}

/// A mail's headers, unfolded (RFC 5322 §2.2.3), one per line.
fn headers(data: &str) -> Vec<String> {
    let head = data.split("\r\n\r\n").next().unwrap();
    head.replace("\r\n ", " ")
        .replace("\r\n\t", " ")
        .split("\r\n")
        .map(str::to_owned)
        .collect()
}

#[actix_web::test]
async fn email_reaches_the_smtp_server_and_a_summary_cannot_add_a_header() {
    let (port, mut rx) = smtp_server(true).await;
    let mut n = NotifierSettings::new(NotifierKind::Email);
    n.smtp_host = Some("127.0.0.1".into());
    n.smtp_port = Some(port);
    n.tls = Some(SmtpTls::None);
    n.from = Some("Swarmwise <alerts@swarmwise.test>".into());
    n.to = vec!["oncall@swarmwise.test".into(), "lead@swarmwise.test".into()];
    let d = one("mail", fast(n), &[]);
    let firing = alert(
        "agent a1 low\r\nBcc: victim@evil.test\r\n\r\nforged body",
        AlertStatus::Firing,
        Severity::Critical,
    );
    d.send(firing.clone());
    // The first MAIL got 451 (transient): this is the retry.
    let mail = next(&mut rx).await;
    assert!(mail.from.contains("alerts@swarmwise.test"), "{mail:?}");
    assert_eq!(mail.to.len(), 2, "{mail:?}");
    assert!(mail.to.iter().all(|t| !t.contains("evil")), "{mail:?}");
    let hs = headers(&mail.data);
    let subject = hs
        .iter()
        .find_map(|h| h.strip_prefix("Subject: "))
        .unwrap_or_else(|| panic!("no subject in {hs:?}"));
    // CR and LF became spaces (compared with runs of space collapsed, as a
    // long subject may be folded).
    assert_eq!(
        subject.split_whitespace().collect::<Vec<_>>().join(" "),
        "[CRITICAL] agent a1 low Bcc: victim@evil.test forged body"
    );
    assert!(
        !hs.iter()
            .any(|h| h.to_ascii_lowercase().starts_with("bcc:")),
        "{hs:?}"
    );
    assert!(hs
        .iter()
        .any(|h| h.starts_with("To: ") && h.contains("lead@swarmwise.test")));
    assert!(
        hs.iter().any(|h| h.starts_with("Content-Type: text/plain")),
        "{hs:?}"
    );
    let body = mail.data.split_once("\r\n\r\n").unwrap().1;
    assert!(body.contains("rule:       agent_trust_low"), "{body}");
    assert!(body.contains(&firing.alert.id.to_string()), "{body}");
    d.send(resolved(&firing));
    let mail = next(&mut rx).await;
    let hs = headers(&mail.data);
    assert!(
        hs.iter()
            .any(|h| h.starts_with("Subject: [RESOLVED] [CRITICAL] agent a1 low")),
        "{hs:?}"
    );
    let s = status_until(&d, |s| s.sent == 2).await;
    assert_eq!(s.failed, 0);
}

#[test]
fn a_missing_secret_stops_the_start_naming_the_key() {
    let mut n = NotifierSettings::new(NotifierKind::Pagerduty);
    n.routing_key_env = Some("SWARMWISE_TEST_UNSET_PD_KEY".into());
    let err = Dispatcher::start_with_env(
        &BTreeMap::from([("oncall".to_owned(), n)]),
        &RouteSettings::default(),
        &|_| None,
    )
    .unwrap_err();
    assert_eq!(err.0, "alerts.notifiers.oncall.routing_key_env");
    assert!(err.1.contains("SWARMWISE_TEST_UNSET_PD_KEY") && err.1.contains("export"));
}

#[test]
fn check_config_names_a_route_to_an_unknown_notifier() {
    use crate::helpers::OutputWithin;
    let dir = tempfile::tempdir().unwrap();
    let run = |toml: &str| {
        let file = dir.path().join("alerts.toml");
        std::fs::write(&file, toml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmwise"))
            .args(["--config", file.to_str().unwrap(), "check-config"])
            .env_remove("SWARMWISE_TEST_UNSET_PD_KEY")
            .output_within()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run("[alerts.routes]\ncritical = [\"oncall\"]\n");
    assert!(!ok);
    assert!(
        err.contains("alerts.routes.critical") && err.contains("oncall"),
        "{err}"
    );
    let (ok, _, err) = run(
        "[alerts.notifiers.oncall]\nkind = \"pagerduty\"\nrouting_key_env = \"SWARMWISE_TEST_UNSET_PD_KEY\"\n",
    );
    assert!(!ok);
    assert!(
        err.contains("alerts.notifiers.oncall.routing_key_env"),
        "{err}"
    );
    let (ok, out, err) = run(
        "[alerts.notifiers.chat]\nkind = \"slack\"\nurl = \"https://hooks.slack.test/services/T0/B0/SECRETTOKEN\"\n[alerts.routes]\nwarning = [\"chat\"]\n",
    );
    assert!(ok, "{err}");
    assert!(
        !out.contains("SECRETTOKEN"),
        "check-config printed a webhook token: {out}"
    );
    assert!(out.contains("alerts.routes.warning = [\"chat\"]"), "{out}");
}

/// A notifier whose receiver is gone shows as down on the admin endpoint
/// and in /metrics; a workspace key cannot read it.
async fn dead_receiver_marks_the_notifier_down(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = format!("dead-{}", uuid::Uuid::now_v7().simple());
    let app = spawn_app_with(backend, |s| {
        let mut n = NotifierSettings::new(NotifierKind::Webhook);
        n.url = Some(format!("http://127.0.0.1:{port}/gone"));
        n.attempts = 2;
        n.initial_backoff_ms = 10;
        n.max_backoff_ms = 20;
        s.alerts.notifiers.insert(name.clone(), n);
        s.alerts.routes.critical = vec![name.clone()];
    })
    .await;
    app.ready().await;
    let (_, key) = app.workspace("tenant").await;
    let res = app.get(&key, "/api/v1/alerts/notifiers").await;
    assert_error(res, StatusCode::FORBIDDEN, "admin_key_required", None).await;
    let res = app.get("not-a-key", "/api/v1/alerts/notifiers").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    app.notifiers
        .send(alert("db down", AlertStatus::Firing, Severity::Critical));
    let item = crate::helpers::poll_until("the notification given up", || async {
        let body = app.json(&app.admin_key, "/api/v1/alerts/notifiers").await;
        let item = body["items"][0].clone();
        if item["failed"] == 1 {
            Ok(item)
        } else {
            Err(body)
        }
    })
    .await;
    assert_eq!(item["name"], name.as_str());
    assert_eq!(item["kind"], "webhook");
    assert_eq!(item["up"], false);
    assert_eq!(item["consecutive_failures"], 2);
    assert_eq!(item["sent"], 0);
    assert!(item["last_success_at"].is_null());
    assert!(
        item["last_error"]
            .as_str()
            .unwrap()
            .starts_with("no answer"),
        "{item}"
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(&format!("swarmwise_notifier_up{{notifier=\"{name}\"}} 0")),
        "{metrics}"
    );
    assert!(metrics
        .lines()
        .any(|l| l.starts_with("swarmwise_notifications_failed_total")
            && l.contains(&name)
            && l.ends_with(" 1")));
    app.stop().await.unwrap();
}
crate::both_backends!(dead_receiver_marks_the_notifier_down);

/// The stop protocol delivers what is queued: a notification handed over
/// just before the stop, to a receiver that takes 300 ms to answer, is
/// delivered before `run` returns (the process would exit right after).
#[actix_web::test]
async fn a_queued_notification_is_delivered_before_the_stop_completes() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = loopback_peer("127.0.0.1", move |body: web::Bytes| {
        let tx = tx.clone();
        async move {
            // A slow receiver, so the stop must wait for the answer.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = tx.send(body.len());
            HttpResponse::Ok().finish()
        }
    });
    let name = format!("stop-{}", uuid::Uuid::now_v7().simple());
    let app = spawn_app_with(Backend::Sqlite, |s| {
        let mut n = NotifierSettings::new(NotifierKind::Webhook);
        n.url = Some(format!("http://{addr}/hook"));
        s.alerts.notifiers.insert(name.clone(), n);
        s.alerts.routes.warning = vec![name.clone()];
    })
    .await;
    app.ready().await;
    let notifiers = app.notifiers.clone();
    notifiers.send(alert("slow", AlertStatus::Firing, Severity::Warning));
    assert_eq!(notifiers.pending(), 1);
    app.stop().await.unwrap();
    assert_eq!(notifiers.pending(), 0);
    assert_eq!(notifiers.statuses()[0].sent, 1);
    assert!(rx.try_recv().is_ok(), "the receiver never got it");
}

/// End to end: real outcomes drive an agent's trust below the threshold,
/// the Alerter raises `agent_trust_low`, and the PagerDuty receiver gets a
/// `trigger` whose dedup key is the alert's fingerprint; the alert as the
/// API lists it is the one that was paged.
async fn an_alert_raised_by_the_alerter_reaches_pagerduty(backend: Backend) {
    let (url, mut rx) = receiver(&[], 202);
    let name = format!("pd-e2e-{}", uuid::Uuid::now_v7().simple());
    std::env::set_var("SWARMWISE_TEST_NOTIFY_PD_KEY", "e2e-routing-key");
    let app = spawn_app_with(backend, |s| {
        s.alerts.evaluate_every_secs = 3600;
        let mut n = NotifierSettings::new(NotifierKind::Pagerduty);
        n.url = Some(url.clone());
        n.routing_key_env = Some("SWARMWISE_TEST_NOTIFY_PD_KEY".into());
        s.alerts.notifiers.insert(name.clone(), n);
        s.alerts.routes.critical = vec![name.clone()];
    })
    .await;
    app.ready().await;
    let (ws, key) = app.workspace("paged").await;
    app.agent(&key, "bad").await;
    app.agent(&key, "good").await;
    for i in 0..40 {
        let wf = format!("wf-{i}");
        let bad = app.track(&key, "bad", &wf, "strategy", 0.9).await;
        let good = app.track(&key, "good", &wf, "strategy", 0.6).await;
        let res = app
            .post(
                &key,
                &format!("/api/v1/workflows/{wf}/outcome"),
                &json!({"overall_quality_score": 50, "verdicts": [
                    {"recommendation_id": bad, "status": "rejected", "quality": 0},
                    {"recommendation_id": good, "status": "approved", "quality": 90}]}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let event = next(&mut rx).await.body;
    assert_eq!(event["routing_key"], "e2e-routing-key");
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], format!("{ws}/agent_trust_low/bad"));
    assert_eq!(event["payload"]["severity"], "critical");
    assert_eq!(event["payload"]["source"], format!("swarmwise/{ws}"));
    assert_eq!(event["payload"]["custom_details"]["action"], "quarantine");
    let listed = app
        .json(&key, "/api/v1/alerts?rule=agent_trust_low&status=firing")
        .await;
    assert_eq!(
        listed["items"][0]["id"], event["payload"]["custom_details"]["alert_id"],
        "{listed}"
    );
    app.stop().await.unwrap();
}
crate::both_backends!(an_alert_raised_by_the_alerter_reaches_pagerduty);

/// `tls = "starttls"` never falls back to plain text: against a server that
/// does not offer STARTTLS the mail (and any credentials) is not sent, and
/// the notifier says why.
#[actix_web::test]
async fn starttls_is_required_not_opportunistic() {
    let (port, mut rx) = smtp_server(false).await;
    let mut n = NotifierSettings::new(NotifierKind::Email);
    n.smtp_host = Some("127.0.0.1".into());
    n.smtp_port = Some(port);
    n.tls = Some(SmtpTls::Starttls);
    n.from = Some("alerts@swarmwise.test".into());
    n.to = vec!["oncall@swarmwise.test".into()];
    n.attempts = 1;
    let d = one("mail-starttls", n, &[]);
    d.send(alert("x", AlertStatus::Firing, Severity::Critical));
    let s = status_until(&d, |s| s.failed == 1).await;
    assert!(!s.up && s.sent == 0, "{s:?}");
    assert!(s.last_error.is_some(), "{s:?}");
    assert!(rx.try_recv().is_err(), "a mail went out in plain text");
}
