//! `swarmwise check-config`: print the effective settings (secrets masked) as
//! `section.key = value` lines.

use crate::config::Settings;

/// Prints the effective settings, the admin key and database password masked.
pub(super) fn check_config(settings: &Settings) -> anyhow::Result<()> {
    let mut shown = settings.clone();
    if !shown.auth.admin_key.is_empty() {
        shown.auth.admin_key = "***".into();
    }
    shown.database.url = crate::store::redact(&shown.database.url);
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
