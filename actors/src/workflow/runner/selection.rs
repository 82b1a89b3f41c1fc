//! Selection: which agents a stage asks. Listed agents, or the top N by trust
//! for a type (Thompson sampling, `trust/select.rs`); then, per agent, why it
//! is skipped if it is (unregistered, disabled, quarantined by an alert, not
//! run, unhealthy, on probation and not its turn, trust below the threshold
//! except for a periodic probation probe or during an operator's grace).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::Workflows;
use crate::admission::QuarantineState;
use crate::domain::{Agent, AgentId, WorkspaceId};
use crate::workflow::StageDef;

impl Workflows {
    /// The stage's agents: listed, or the top N by trust for a type.
    pub(super) fn candidates(
        &self,
        ws: WorkspaceId,
        stage: &StageDef,
        registered: &BTreeMap<AgentId, Agent>,
    ) -> Vec<AgentId> {
        let parse = |s: &String| AgentId::parse("agents", s).ok();
        match &stage.select {
            None => stage.agents.iter().filter_map(parse).collect(),
            Some(sel) => {
                let pool: Vec<AgentId> = if sel.from.is_empty() {
                    registered
                        .values()
                        .filter(|a| {
                            a.enabled
                                && !a
                                    .quarantine
                                    .as_ref()
                                    .is_some_and(|q| q.state == QuarantineState::Quarantined)
                                && self.swarm.get(ws, &a.id).is_some()
                        })
                        .map(|a| a.id.clone())
                        .collect()
                } else {
                    sel.from.iter().filter_map(parse).collect()
                };
                let rtype = sel
                    .by_trust_for
                    .as_deref()
                    .unwrap_or(&stage.recommendation_type);
                let snap = self.engine.trust(ws);
                // Thompson sampling from each agent's posterior (docs/trust.md,
                // "Selection"); greedy when trust.selection_exploration = 0.
                let mut pool = pool;
                pool.sort();
                if !self.engine.learning_enabled() {
                    // Plain orchestrator: the first N by id, no trust, no chance.
                    pool.truncate(sel.top);
                    return pool;
                }
                crate::trust::select::select_agents(
                    &snap,
                    &pool,
                    rtype,
                    sel.top,
                    self.engine.params(),
                    &mut rand::thread_rng(),
                )
            }
        }
    }

    /// Why an agent is not asked, if it is not.
    pub(super) fn skip_reason(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        registered: &BTreeMap<AgentId, Agent>,
    ) -> Option<String> {
        let Some(a) = registered.get(agent) else {
            return Some("not registered in this workspace".into());
        };
        if !a.enabled {
            return Some("disabled".into());
        }
        if let Some(q) = a
            .quarantine
            .as_ref()
            .filter(|q| q.state == QuarantineState::Quarantined)
        {
            return Some(format!("quarantined: {}", q.reason));
        }
        let Some(running) = self.swarm.get(ws, agent) else {
            return Some(format!("kind {:?} is not run by the runtime", a.kind));
        };
        if running.health.is_unhealthy() {
            return Some(
                "unhealthy: restarted past its limit; PATCH enabled=true to re-enable".into(),
            );
        }
        let cfg = self.swarm.config();
        if let Some(q) = a
            .quarantine
            .as_ref()
            .filter(|q| q.state == QuarantineState::Probation)
        {
            // A canary: asked in one of every probation_every fan-outs (the
            // low-trust skip below would count the same fan-outs twice).
            let n = running.skipped_since_probe.fetch_add(1, Ordering::Relaxed) + 1;
            if cfg.probation_every > 0 && n >= cfg.probation_every {
                running.skipped_since_probe.store(0, Ordering::Relaxed);
                return None;
            }
            return Some(format!(
                "probation: asked in one of every {} fan-outs (agents.probation_every); quarantined: {}",
                cfg.probation_every, q.reason
            ));
        }
        if self.engine.learning_enabled() {
            let snap = self.engine.trust(ws);
            if let Some(card) = snap.agents.get(agent).map(|c| &c.overall) {
                // An operator's re-enable beats the low-trust skip until its
                // grace's observation count.
                let in_grace = a
                    .override_grace
                    .as_ref()
                    .is_some_and(|g| g.active(card.observations()));
                if !in_grace
                    && card.observations() >= cfg.disable_min_samples
                    && card.overall_trust < cfg.disable_below_trust
                {
                    let n = running.skipped_since_probe.fetch_add(1, Ordering::Relaxed) + 1;
                    if cfg.probation_every > 0 && n >= cfg.probation_every {
                        running.skipped_since_probe.store(0, Ordering::Relaxed);
                        return None; // probation probe
                    }
                    return Some(format!(
                        "trust {:.2} below agents.disable_below_trust {:.2}",
                        card.overall_trust, cfg.disable_below_trust
                    ));
                }
            }
        }
        None
    }
}
