//! The demo: its swarm (`config/demo/swarm.toml`, or the built-in copy), its
//! workspace and key, and the loop that runs a workflow continuously in the
//! `demo` workspace. The key file lives in [`key`].

pub mod key;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use swarmwise_actors::domain::{to_micros, Agent, AgentId, Priority, WorkspaceId};
use swarmwise_actors::workflow::{RunRequest, Workflows};
use uuid::Uuid;

use crate::config::DemoSettings;
use crate::store::AdminStore;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwarmFile {
    agents: Vec<AgentEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    id: String,
    name: String,
    kind: String,
    #[serde(default)]
    config: Option<toml::Value>,
}

/// The demo workspace's fixed id, so restarts keep its history.
pub const DEMO_WORKSPACE: Uuid = Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0de0);

/// Reads and checks the demo swarm (`demo.swarm_file`, or the built-in one
/// when the file does not exist): each agent's kind and config are checked
/// with `validate`. Pure, so a bad file fails the start before any actor runs.
pub fn demo_agents(
    demo: &DemoSettings,
    validate: impl Fn(&Agent) -> Result<(), swarmwise_actors::domain::ParseError>,
) -> anyhow::Result<Vec<Agent>> {
    let text = if Path::new(&demo.swarm_file).exists() {
        std::fs::read_to_string(&demo.swarm_file).with_context(|| {
            format!(
                "reading demo.swarm_file {}; set demo.enabled = false to run without the demo",
                demo.swarm_file
            )
        })?
    } else {
        tracing::info!(
            file = %demo.swarm_file,
            "demo.swarm_file not found: using the built-in demo swarm"
        );
        crate::assets::DEMO_SWARM.to_owned()
    };
    let file: SwarmFile = toml::from_str(&text)
        .with_context(|| format!("{}: not a valid swarm file", demo.swarm_file))?;
    let mut agents = Vec::with_capacity(file.agents.len());
    for entry in file.agents {
        let config = match entry.config {
            Some(v) => serde_json::to_value(v)?,
            None => json!({}),
        };
        let agent = Agent {
            id: AgentId::parse("id", &entry.id)
                .map_err(|e| anyhow::anyhow!("{}: {e}", demo.swarm_file))?,
            name: entry.name,
            kind: entry.kind,
            config,
            enabled: true,
            created_at: to_micros(Utc::now()),
            quarantine: None,
            override_grace: None,
        };
        validate(&agent)
            .map_err(|e| anyhow::anyhow!("{}: agent {}: {e}", demo.swarm_file, agent.id))?;
        agents.push(agent);
    }
    Ok(agents)
}

/// Creates the demo workspace and its agents (from [`demo_agents`]) if
/// missing, and returns the workspace with its API key (the same across
/// restarts, see [`key`]).
pub async fn prepare_demo(
    demo: &DemoSettings,
    agents: &[Agent],
    store: &dyn AdminStore,
) -> anyhow::Result<(WorkspaceId, String)> {
    let ws = WorkspaceId(DEMO_WORKSPACE);
    let key = key::ensure(store, ws, &demo.key_file).await?;
    for agent in agents {
        if store.agent(ws, &agent.id).await?.is_none() {
            store.create_agent(ws, agent).await?;
        }
    }
    Ok((ws, key))
}

/// Starts `demo.workflow` `runs_per_second` times a second until shutdown,
/// without waiting for runs to finish (at most 64 in flight).
pub async fn demo_loop(
    demo: DemoSettings,
    ws: WorkspaceId,
    workflows: Workflows,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let every = Duration::from_secs_f64(1.0 / demo.runs_per_second);
    let mut tick = tokio::time::interval(every);
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        if *shutdown.borrow() {
            tracing::info!("demo stopped");
            return;
        }
        let Ok(permit) = std::sync::Arc::clone(&in_flight).try_acquire_owned() else {
            continue;
        };
        n += 1;
        let req = RunRequest {
            workflow: demo.workflow.clone(),
            input: json!({ "goal": format!("demo move #{n}") }),
            priority: Priority::Normal,
        };
        let wf = workflows.clone();
        actix::spawn(async move {
            if let Err(e) = wf.run(ws, req).await {
                tracing::warn!(error = %e, "demo run failed");
            }
            drop(permit);
        });
    }
}
