//! `swarmwise check-config`: print the effective settings (secrets masked) as
//! `section.key = value` lines, after checking what `serve` would check at
//! start beyond the file itself (each notifier's secret variables are set).

use crate::config::Settings;

/// Prints the effective settings, the admin key and database password masked.
pub(super) fn check_config(settings: &Settings) -> anyhow::Result<()> {
    let mut shown = settings.clone();
    if !shown.telemetry.metrics_token.is_empty() {
        shown.telemetry.metrics_token = "***".into();
    }
    if !shown.auth.admin_key.is_empty() {
        shown.auth.admin_key = "***".into();
    }
    shown.database.url = crate::store::redact(&shown.database.url);
    // A notifier's URL can carry a token in its path (Slack's does): show
    // the scheme and host only.
    for n in shown.alerts.notifiers.values_mut() {
        if let Some(url) = &mut n.url {
            *url = match url::Url::parse(url) {
                Ok(u) => format!("{}://{}/***", u.scheme(), u.host_str().unwrap_or("")),
                Err(_) => "***".into(),
            };
        }
    }
    for (name, n) in &settings.alerts.notifiers {
        for (field, var) in n.secret_envs() {
            if std::env::var(var).map_or(true, |v| v.is_empty()) {
                anyhow::bail!(
                    "config key `alerts.notifiers.{name}.{field}`: environment variable {var} is not set (or empty); export it before starting swarmwise, or remove this notifier"
                );
            }
        }
    }
    println!("{}", toml_like(&serde_json::to_value(&shown)?));
    println!("configuration OK");
    Ok(())
}

/// Prints settings as `section.key = value` lines.
fn toml_like(v: &serde_json::Value) -> String {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => out.push(format!("{prefix} = {other}")),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.join("\n")
}
