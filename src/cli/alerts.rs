//! `swarmwise alerts`: the alerts of one workspace or of all (node-level ones
//! included), read from the store directly like `learn` does: firing and
//! recent, newest first, as a table or as JSON lines.

use swarmwise_actors::alerts::{Alert, AlertStatus};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::{AlertFilter, AlertScope};

use crate::config::Settings;

/// What to list.
#[derive(Debug, Clone)]
pub(super) struct AlertsArgs {
    /// `firing`, `resolved`, or both (`None`).
    pub status: Option<String>,
    /// One workspace, or all.
    pub workspace: Option<uuid::Uuid>,
    /// At most this many.
    pub limit: u32,
    /// JSON, one alert per line.
    pub json: bool,
}

/// Lists alerts.
pub(super) async fn alerts(settings: Settings, args: AlertsArgs) -> anyhow::Result<()> {
    let status = match args.status.as_deref() {
        None | Some("all") => None,
        Some("firing") => Some(AlertStatus::Firing),
        Some("resolved") => Some(AlertStatus::Resolved),
        Some(other) => anyhow::bail!("--status {other:?}: use firing, resolved or all"),
    };
    let max = settings.alerts.max_alerts_listed;
    if args.limit == 0 || args.limit > max {
        anyhow::bail!("--limit must be between 1 and {max} (alerts.max_alerts_listed)");
    }
    let mut db = settings.database.clone();
    db.migrate = false;
    let store = crate::store::connect(&db).await?;
    let workspace = args.workspace.map(WorkspaceId);
    if let Some(ws) = workspace {
        if !store.workspace_ids().await?.contains(&ws) {
            anyhow::bail!(
                "workspace {ws} does not exist in {}; list them with GET /api/v1/workspaces (admin key)",
                crate::store::redact(&settings.database.url)
            );
        }
    }
    let filter = AlertFilter {
        status,
        workspace,
        limit: args.limit,
        ..AlertFilter::default()
    };
    let alerts = store.list_alerts(AlertScope::Admin, &filter).await?;
    if args.json {
        for a in &alerts {
            println!("{}", serde_json::to_string(a)?);
        }
        return Ok(());
    }
    if alerts.is_empty() {
        println!("no alerts");
        return Ok(());
    }
    println!(
        "{:<8} {:<8} {:<24} {:<20} {:<36} {:<20} SUMMARY",
        "STATUS", "SEVERITY", "RULE", "FIRED (UTC)", "WORKSPACE", "SUBJECT"
    );
    for a in &alerts {
        println!("{}", row(a));
    }
    Ok(())
}

fn row(a: &Alert) -> String {
    let status = match a.status {
        AlertStatus::Firing if a.acked_at.is_some() => "acked",
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    };
    let ws = a
        .workspace_id
        .map_or_else(|| "node".to_owned(), |w| w.to_string());
    // A tenant's subject is printed escaped: no terminal control sequences.
    let subject = printable(&a.subject);
    format!(
        "{:<8} {:<8} {:<24} {:<20} {:<36} {:<20} {}",
        status,
        a.severity.as_str(),
        a.rule,
        a.fired_at.format("%Y-%m-%d %H:%M:%S"),
        ws,
        subject,
        printable(&a.summary)
    )
}

/// `s` with control characters and bidirectional overrides escaped
/// (`\n`, `\u{202e}`), so a row cannot move the cursor, clear the screen or
/// reorder what follows; anything else, quotes included, as it is (an
/// `escape_debug` printed "agents\' trust changed").
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::printable;

    #[test]
    fn rows_keep_quotes_and_escape_control_and_bidi_characters() {
        assert_eq!(
            printable("trust updated: 7 agents' trust changed \"x\""),
            "trust updated: 7 agents' trust changed \"x\""
        );
        assert_eq!(printable("a\x1b[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
        assert_eq!(printable("x\u{202e}y"), "x\\u{202e}y");
    }
}
