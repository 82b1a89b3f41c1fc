//! `swarmwise learn --workspace ID`: one learning cycle now, with a progress
//! bar, and its report.

use crate::config::Settings;

/// Runs one learning cycle for `workspace` and prints its report.
pub(super) async fn learn(settings: Settings, workspace: uuid::Uuid) -> anyhow::Result<()> {
    use std::sync::Arc;
    let store = crate::store::connect(&settings.database).await?;
    let ws = swarmwise_actors::domain::WorkspaceId(workspace);
    if !store.workspace_ids().await?.contains(&ws) {
        anyhow::bail!(
            "workspace {workspace} does not exist in {}; create one with POST /api/v1/workspaces",
            crate::store::redact(&settings.database.url)
        );
    }
    let engine = swarmwise_actors::Engine::start(store.clone(), settings.engine());
    let bar = indicatif::ProgressBar::new(4);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("loading trust");
    engine.trust_settled().await?;
    bar.inc(1);
    let b = bar.clone();
    let progress: swarmwise_actors::learner::actor::Progress = Arc::new(move |m: &str| {
        b.set_message(m.to_owned());
        b.inc(1);
    });
    let report = swarmwise_actors::learner::actor::cycle(
        store,
        engine,
        Arc::new(settings.learner.clone()),
        ws,
        "cli".into(),
        progress,
        Default::default(),
    )
    .await?;
    bar.finish_with_message("done");
    println!("cycle {} {}", report.id, report.status);
    println!(
        "  outcomes {} | patterns discovered {}, confirmed {}, retired {} | rules updated {}",
        report.recommendations_processed,
        report.patterns_discovered,
        report.patterns_confirmed,
        report.patterns_retired,
        report.rules_updated
    );
    if let (Some(a), Some(c)) = (report.model_accuracy, report.coverage) {
        println!(
            "  model accuracy {:.1}% (held out), coverage {:.1}%",
            100.0 * a,
            100.0 * c
        );
    }
    for key in ["key_insights", "recommended_actions"] {
        if let Some(items) = report.insights.get(key).and_then(|v| v.as_array()) {
            println!("  {}:", key.replace('_', " "));
            for i in items {
                println!("    - {}", i.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}
