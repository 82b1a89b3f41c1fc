//! Selection: which agents a stage asks. Listed agents, or the top N by trust
//! for a type (Thompson sampling, `trust/select.rs`); then, per agent, why it
//! is skipped if it is (unregistered, disabled, quarantined by an alert, not
//! run, unhealthy, on probation and not its turn). Low trust is not a skip
//! reason of its own: the `agent_trust_low` alert rule (threshold
//! `agents.disable_below_trust` after `agents.disable_min_samples`
//! observations) quarantines the agent, and the quarantine is the skip.

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
        // Registered (the store says so) but not running here: another node
        // registered it a moment ago and this node's change feed has not
        // caught up yet; start it now rather than skip it.
        let running = match self.swarm.get(ws, agent) {
            Some(r) => r,
            None => {
                if let Err(e) = self.swarm.start_agent(ws, a) {
                    return Some(format!("not startable on this node: {e}"));
                }
                match self.swarm.get(ws, agent) {
                    Some(r) => r,
                    None => return Some(format!("kind {:?} is not run by the runtime", a.kind)),
                }
            }
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
            // A canary: asked in one of every probation_every fan-outs.
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
        None
    }
}
