//! `swarmwise retention [--dry-run]`: retention now, over every workspace of
//! `database.url`, with the `[retention]` settings (whether or not
//! `retention.enabled` is set: that switch is for the scheduled job).
//! Progress goes to stderr, the counts per workspace to stdout.

use crate::config::Settings;

/// Runs (or with `dry_run`, counts) retention and prints what it did.
pub(super) async fn retention(settings: Settings, dry_run: bool) -> anyhow::Result<()> {
    let store = crate::store::connect(&settings.database).await?;
    let r = &settings.retention;
    let cutoff = r.cutoff(chrono::Utc::now());
    let history_cutoff = r.trust_history_cutoff(chrono::Utc::now());
    eprintln!(
        "{} settled recommendations created before {} ({} days) and trust history points recorded before {} ({} days) in {}, {} rows per batch{}",
        if dry_run { "counting" } else { r.mode.as_str() },
        cutoff.to_rfc3339(),
        r.max_age_days,
        history_cutoff.to_rfc3339(),
        r.trust_history_max_age_days,
        crate::store::redact(&settings.database.url),
        r.batch_size,
        if dry_run {
            " (dry run: nothing changes)"
        } else {
            ""
        }
    );
    let progress = |ws: swarmwise_actors::domain::WorkspaceId, kind: &str, done: u64, todo: u64| {
        if !dry_run {
            eprintln!("  workspace {ws}: {done}/{todo} {kind}");
        }
    };
    let report = swarmwise_actors::retention::run(
        store.as_ref(),
        r,
        &settings.learner.decision_key,
        chrono::Utc::now(),
        dry_run,
        &progress,
    )
    .await?;
    let verb = match (dry_run, r.mode) {
        (true, _) => "would remove",
        (false, swarmwise_actors::retention::RetentionMode::Delete) => "deleted",
        (false, swarmwise_actors::retention::RetentionMode::Archive) => "archived",
    };
    for w in &report.workspaces {
        println!(
            "workspace {}: {verb} {} recommendations, {} dead letters, {} trust history points",
            w.workspace_id, w.recommendations, w.dead_letters, w.trust_history
        );
    }
    println!(
        "total: {verb} {} recommendations, {} dead letters, {} trust history points in {} workspaces",
        report.recommendations,
        report.dead_letters,
        report.trust_history,
        report.workspaces.len()
    );
    Ok(())
}
