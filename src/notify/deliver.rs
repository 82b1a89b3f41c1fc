//! One delivery attempt per kind: an HTTP POST (webhook, Slack,
//! PagerDuty) or one SMTP transaction (email), classified as delivered, a
//! permanent refusal (not retried: a 4xx, a 5xx SMTP reply) or a transient
//! failure (retried: a timeout, no connection, 408, 429, 5xx, a 4xx SMTP
//! reply). Secrets are read from the environment once, when the notifier
//! is built, and never appear in an error (reqwest errors are stripped of
//! their URL, which for Slack is the credential).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use swarmwise_actors::alerts::Notification;

use super::config::{NotifierKind, NotifierSettings, SmtpTls, PAGERDUTY_EVENTS_URL};
use super::payload;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The receiver took it (HTTP 2xx, SMTP 250).
    Delivered,
    /// The receiver refused it for good (HTTP 4xx other than 408/429, a 3xx,
    /// a 5xx SMTP reply): retrying would be refused again.
    Permanent(String),
    /// Worth retrying; `retry_after` is the receiver's `Retry-After`.
    Transient {
        /// What went wrong, for the log and the status endpoint.
        error: String,
        /// The receiver's requested wait (429 with `Retry-After: seconds`).
        retry_after: Option<Duration>,
    },
}

/// A built notifier target: clients and secrets resolved.
pub(crate) enum Target {
    /// webhook, slack, pagerduty: a JSON POST.
    Http {
        /// The client (per notifier: its own timeout, no redirects).
        client: reqwest::Client,
        /// Where to POST.
        url: String,
        /// Extra headers (webhook `headers_env`).
        headers: HeaderMap,
        /// The PagerDuty routing key (pagerduty only).
        routing_key: Option<String>,
    },
    /// email: an SMTP client, sender and recipients.
    Email {
        /// Connects per message (no pool: alerts are rare).
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// `From`.
        from: Mailbox,
        /// `To`.
        to: Vec<Mailbox>,
    },
}

/// Reads environment variable `name` (named by `key`), or says which to export.
fn secret(
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
    name: &str,
) -> Result<String, (String, String)> {
    env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
        (
            key.to_owned(),
            format!("environment variable {name} is not set (or empty); export it before starting swarmwise, or remove this notifier"),
        )
    })
}

impl Target {
    /// Builds the target of notifier `name`, reading its secrets with
    /// `env`. `Err((key, message))` names the key whose variable is
    /// missing or whose value is unusable.
    pub(crate) fn build(
        name: &str,
        s: &NotifierSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, (String, String)> {
        let key = |field: &str| format!("alerts.notifiers.{name}.{field}");
        let timeout = Duration::from_millis(s.timeout_ms);
        match s.kind {
            NotifierKind::Webhook | NotifierKind::Slack | NotifierKind::Pagerduty => {
                let url = match (&s.url, &s.url_env) {
                    (Some(url), _) => url.clone(),
                    (None, Some(var)) => {
                        let url = secret(env, &key("url_env"), var)?;
                        match url::Url::parse(&url) {
                            Ok(u) if matches!(u.scheme(), "http" | "https") => url,
                            _ => {
                                return Err((
                                    key("url_env"),
                                    format!(
                                        "environment variable {var} does not hold an http(s) URL"
                                    ),
                                ))
                            }
                        }
                    }
                    (None, None) => PAGERDUTY_EVENTS_URL.to_owned(),
                };
                let mut headers = HeaderMap::new();
                for (header, var) in &s.headers_env {
                    let field = key(&format!("headers_env.{header}"));
                    let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                        (
                            field.clone(),
                            format!("{header:?} is not an HTTP header name"),
                        )
                    })?;
                    let mut value = HeaderValue::from_str(&secret(env, &field, var)?)
                        .map_err(|_| {
                            (
                                field.clone(),
                                format!("environment variable {var} holds characters a header value cannot carry"),
                            )
                        })?;
                    value.set_sensitive(true);
                    headers.insert(name, value);
                }
                let routing_key = match &s.routing_key_env {
                    Some(var) => Some(secret(env, &key("routing_key_env"), var)?),
                    None => None,
                };
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .connect_timeout(timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("swarmwise/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| (key("kind"), format!("could not build an HTTP client: {e}")))?;
                Ok(Self::Http {
                    client,
                    url,
                    headers,
                    routing_key,
                })
            }
            NotifierKind::Email => {
                let host = s.smtp_host.clone().unwrap_or_default();
                let mode = s.tls.unwrap_or(SmtpTls::Starttls);
                let tls = match mode {
                    SmtpTls::None => Tls::None,
                    SmtpTls::Starttls | SmtpTls::Tls => {
                        let params = TlsParameters::new(host.clone()).map_err(|e| {
                            (key("tls"), format!("could not set up TLS for {host}: {e}"))
                        })?;
                        if mode == SmtpTls::Tls {
                            Tls::Wrapper(params)
                        } else {
                            Tls::Required(params)
                        }
                    }
                };
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
                    .port(s.smtp_port.unwrap_or(mode.default_port()))
                    .tls(tls)
                    .timeout(Some(timeout));
                if let (Some(user), Some(pass)) = (&s.username_env, &s.password_env) {
                    builder = builder.credentials(Credentials::new(
                        secret(env, &key("username_env"), user)?,
                        secret(env, &key("password_env"), pass)?,
                    ));
                }
                let mailbox = |field: &str, v: &str| {
                    v.parse::<Mailbox>()
                        .map_err(|e| (key(field), format!("{v:?} is not a mail address ({e})")))
                };
                let from = mailbox("from", s.from.as_deref().unwrap_or_default())?;
                let to =
                    s.to.iter()
                        .map(|t| mailbox("to", t))
                        .collect::<Result<Vec<_>, _>>()?;
                Ok(Self::Email {
                    transport: builder.build(),
                    from,
                    to,
                })
            }
        }
    }

    /// One attempt to deliver `n` as `kind`.
    pub(crate) async fn attempt(&self, kind: NotifierKind, n: &Notification) -> Attempt {
        match self {
            Self::Http {
                client,
                url,
                headers,
                routing_key,
            } => {
                let body = match kind {
                    NotifierKind::Slack => payload::slack(n),
                    NotifierKind::Pagerduty => {
                        payload::pagerduty(n, routing_key.as_deref().unwrap_or_default())
                    }
                    NotifierKind::Webhook | NotifierKind::Email => payload::webhook(n),
                };
                let sent = client
                    .post(url)
                    .headers(headers.clone())
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(res) => classify_http(res).await,
                    Err(e) => Attempt::Transient {
                        error: format!("no answer: {}", e.without_url()),
                        retry_after: None,
                    },
                }
            }
            Self::Email {
                transport,
                from,
                to,
            } => {
                let mut builder = Message::builder()
                    .from(from.clone())
                    .subject(payload::email_subject(n))
                    .header(ContentType::TEXT_PLAIN);
                for t in to {
                    builder = builder.to(t.clone());
                }
                let message = match builder.body(payload::email_body(n)) {
                    Ok(m) => m,
                    Err(e) => return Attempt::Permanent(format!("could not build the mail: {e}")),
                };
                match transport.send(message).await {
                    Ok(_) => Attempt::Delivered,
                    Err(e) if e.is_permanent() => {
                        Attempt::Permanent(format!("SMTP server refused the mail: {e}"))
                    }
                    Err(e) => Attempt::Transient {
                        error: format!("SMTP: {e}"),
                        retry_after: None,
                    },
                }
            }
        }
    }
}

/// Most bytes of a receiver's answer kept in an error message.
const ANSWER_MAX: usize = 200;

/// Maps an HTTP answer to an attempt's outcome.
async fn classify_http(res: reqwest::Response) -> Attempt {
    let status = res.status();
    if status.is_success() {
        return Attempt::Delivered;
    }
    let retry_after = res
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = res.text().await.unwrap_or_default();
    let answer: String = text
        .chars()
        .take(ANSWER_MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let error = format!("HTTP {}: {}", status.as_u16(), answer.trim());
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Attempt::Transient { error, retry_after }
    } else {
        Attempt::Permanent(error)
    }
}
