//! Starts the `Alerter` (`[alerts]`) with what the service provides: the
//! store's readiness check as the `database_errors` probe, the notifiers'
//! dispatcher as the notification sink, and the engine's admission
//! controller (`swarmwise_actors::admission`: quarantine, probation,
//! re-admission).

use std::sync::Arc;

use swarmwise_actors::alerts::{Alerter, AlerterDeps, StoreProbe};
use swarmwise_actors::Engine;

use crate::config::Settings;
use crate::store::AdminStore;

/// The readiness check (database reachable, migrations applied) as the
/// `database_errors` probe.
struct ReadyProbe(Arc<dyn AdminStore>);

#[async_trait::async_trait]
impl StoreProbe for ReadyProbe {
    async fn probe(&self) -> Result<(), String> {
        self.0.ready().await.map_err(|e| e.to_string())
    }
}

/// Starts the alerter when `alerts.enabled`; `None` otherwise.
pub(super) fn start_alerter(
    settings: &Settings,
    store: &Arc<dyn AdminStore>,
    engine: &Engine,
    notifiers: &crate::notify::Dispatcher,
) -> anyhow::Result<Option<Alerter>> {
    if !settings.alerts.enabled {
        return Ok(None);
    }
    let config = settings.alerts.engine();
    let rules = config
        .resolve(
            settings.agents.disable_below_trust,
            settings.agents.disable_min_samples,
        )
        .map_err(|(key, message)| anyhow::anyhow!("config key `{key}`: {message}"))?;
    let deps = AlerterDeps {
        store: store.clone(),
        engine: engine.clone(),
        admission: Arc::new(engine.admission().clone()),
        sink: Arc::new(notifiers.clone()),
        probe: Some(Arc::new(ReadyProbe(Arc::clone(store)))),
        health: engine.health().clone(),
    };
    Ok(Some(Alerter::start(
        deps,
        &config,
        rules,
        settings.supervision.alerter.clone(),
    )))
}
