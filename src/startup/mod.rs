//! `Application::build`: open the store, start the engine's actors, bind the
//! HTTP server (port 0 in tests) and return the bound address. `run` serves
//! until a signal (or `AppHandle::stop`), then drains: stop accepting, finish
//! in-flight requests, flush every acknowledged recommendation, exit.
//!
//! By concern: this file wires the parts together ([`Application::build`]);
//! `http` builds the actix-web server (extractor errors, the request
//! metric, the routes); `background` holds the tasks that live as long as
//! the server; `shutdown` is the stop protocol ([`Application::run`],
//! [`AppHandle`]).

mod alerting;
mod background;
mod http;
mod shutdown;

pub use shutdown::AppHandle;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use swarmwise_actors::learner::actor::Learner;
use swarmwise_actors::swarm::Swarm;
use swarmwise_actors::workflow::{CountingTrigger, CycleTrigger, Workflows};
use swarmwise_actors::Engine;

use crate::auth::{generate_key, hash_key};
use crate::config::Settings;
use crate::state::AppState;
use crate::store::{self, AdminStore};
use crate::ttl_cache::TtlCache;

/// A built, bound, not yet running service.
pub struct Application {
    server: Server,
    address: SocketAddr,
    admin_key: String,
    admin_key_generated: bool,
    engine: Engine,
    store: Arc<dyn AdminStore>,
    workflows: Workflows,
    demo_key: Option<String>,
    /// This node's identity (`[cluster] node_id`, or generated).
    node: swarmwise_actors::cluster::NodeId,
    /// The change-feed task (`crate::sync`), awaited at the stop.
    sync_task: Option<tokio::task::JoinHandle<()>>,
    /// The alert notifiers, for the Alerter and for tests that send through them.
    notifiers: crate::notify::Dispatcher,
    /// The alerter (`None` when `alerts.enabled = false`).
    alerter: Option<swarmwise_actors::alerts::Alerter>,
    /// The scheduler (`None` when `scheduler.enabled = false`); its
    /// leadership is released on a clean stop.
    scheduler: Option<swarmwise_actors::scheduler::SchedulerHandle>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// `server.shutdown_timeout_secs`: the whole stop, flush included.
    shutdown_timeout_secs: u64,
}

impl Application {
    /// Opens the store, starts the actors, binds. Must run inside an actix system.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Everything that can fail on configuration fails here, before any
        // actor starts: a failed start then exits with its message alone.
        let listener = TcpListener::bind(&settings.server.bind)
            .map_err(|e| anyhow::anyhow!("could not listen on {} ({e}); set server.bind or SWARMWISE__SERVER__BIND to a free address", settings.server.bind))?;
        let address = listener.local_addr()?;
        let defs = crate::definitions::load_definitions(&settings.workflows.dir)?;
        let factory = crate::backends::ServiceFactory::with_limits(
            &settings.agents,
            crate::backends::AnswerLimits::from(&settings.limits),
        )
        .with_prices(settings.costs.clone());
        let demo_agents = if settings.demo.enabled {
            Some(crate::demo::demo_agents(&settings.demo, |agent| {
                swarmwise_actors::swarm::validate_agent(&factory, &settings.agents, agent)
            })?)
        } else {
            None
        };
        let node = swarmwise_actors::cluster::NodeId::from_config(&settings.cluster.node_id)
            .map_err(|m| anyhow::anyhow!("config key `cluster.node_id`: {m}"))?;
        tracing::info!(node = %node, "node identity");
        let prometheus = crate::telemetry::prometheus()?;
        let notifiers =
            crate::notify::Dispatcher::start(&settings.alerts.notifiers, &settings.alerts.routes)
                .map_err(|(key, message)| anyhow::anyhow!("config key `{key}`: {message}"))?;
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        actix::spawn(crate::telemetry::metrics_upkeep(
            prometheus.clone(),
            Duration::from_secs(settings.telemetry.metrics_upkeep_secs),
            shutdown_rx.clone(),
        ));
        // Redis is optional and may be down: the link connects now if it
        // can (bounded), and keeps trying in the background.
        let redis = crate::redis_link::RedisLink::new(&settings.redis)?;
        redis.connect_now().await;
        redis.spawn_upkeep(shutdown_rx.clone());
        let patterns = crate::cache::PatternCache::new(&settings.redis, redis.clone());
        let store = store::connect_as(&settings.database, settings.tracking.mode, &node).await?;
        // Read before anything loads state from the tables: a change another
        // process commits from here on is applied by the sync task.
        let feed_start = store.feed_head().await?;
        interrupt_leftovers(store.as_ref()).await?;
        let engine = Engine::start(store.clone(), settings.engine());
        let agent_policy = Arc::clone(factory.policy());
        let swarm = Swarm::new(
            Arc::new(factory),
            settings.agents.clone(),
            engine.events().clone(),
        );
        let learner = Learner::start(
            store.clone(),
            engine.clone(),
            settings.learner.clone(),
            settings.supervision.meta_learner.clone(),
        );
        {
            let (store, engine) = (store.clone(), engine.clone());
            actix_web::rt::spawn(async move {
                swarmwise_actors::learner::agreement::restore(store.as_ref(), &engine).await;
            });
        }
        let scheduler = if settings.scheduler.enabled {
            use swarmwise_actors::scheduler::{RetentionJob, Scheduler, SchedulerParts};
            let parts = SchedulerParts {
                store: store.clone(),
                engine: engine.clone(),
                learner: learner.clone(),
                node: node.clone(),
                retention: Some(RetentionJob {
                    config: settings.retention.clone(),
                    decision_key: settings.learner.decision_key.clone(),
                }),
                clock_offset: chrono::TimeDelta::zero(),
            };
            Some(
                Scheduler::start(parts, &settings.scheduler)
                    .map_err(|e| anyhow::anyhow!("config key `{}`: {}", e.field, e.message))?,
            )
        } else {
            None
        };
        let alerter = alerting::start_alerter(&settings, &store, &engine, &notifiers)?;
        // One counter for every path that evaluates outcomes: workflow runs,
        // REST outcomes and feedback all count towards cycle_every_outcomes.
        let cycles: Arc<dyn CycleTrigger> = Arc::new({
            let learner = learner.clone();
            CountingTrigger::new(settings.learning.cycle_every_outcomes, move |ws| {
                learner.request(ws, "outcomes")
            })
        });
        let workflows = Workflows::new(
            defs,
            engine.clone(),
            swarm.clone(),
            store.clone(),
            engine.events().clone(),
            Arc::clone(&cycles),
            settings.workflows.clone(),
            node.clone(),
        );
        let demo = match &demo_agents {
            Some(agents) => {
                Some(crate::demo::prepare_demo(&settings.demo, agents, store.as_ref()).await?)
            }
            None => None,
        };
        let mut started = 0;
        for ws in store.workspace_ids().await? {
            for agent in store.agents(ws).await? {
                match swarm.start_agent(ws, &agent) {
                    Ok(()) => started += 1,
                    Err(e) => {
                        tracing::warn!(workspace = %ws, agent = %agent.id, error = %e, "agent not started; fix its config with PATCH or re-register it")
                    }
                }
            }
        }
        tracing::info!(
            agents = started,
            workflows = workflows.definitions().len(),
            "swarm ready"
        );
        let demo_key = match demo {
            Some((ws, key)) => {
                actix::spawn(crate::demo::demo_loop(
                    settings.demo.clone(),
                    ws,
                    workflows.clone(),
                    shutdown_rx.clone(),
                ));
                Some(key)
            }
            None => None,
        };
        let (admin_key, admin_key_generated) = if settings.auth.admin_key.is_empty() {
            (generate_key("swa_").0, true)
        } else {
            (settings.auth.admin_key.clone(), false)
        };
        let hub = crate::event_hub::EventHub::new(
            node.clone(),
            redis.clone(),
            settings.events.replay_buffer,
        );
        hub.start(engine.events().subscribe(), shutdown_rx.clone())
            .await;
        let cache_ttl = Duration::from_secs(settings.auth.cache_ttl_secs);
        let state = web::Data::new(AppState {
            node: node.clone(),
            engine: engine.clone(),
            store: store.clone(),
            admin_key_hash: hash_key(&admin_key),
            key_cache: TtlCache::new(cache_ttl),
            agents: TtlCache::new(cache_ttl),
            prometheus,
            stats: Arc::default(),
            settings: Arc::new(settings.clone()),
            workflows: workflows.clone(),
            agent_policy,
            limits: crate::limits::Limits::new(&settings.limits),
            shutdown: shutdown_rx,
            learner,
            patterns,
            redis,
            hub,
            cycles,
            notifiers: notifiers.clone(),
        });
        background::spawn_limits_upkeep(state.clone());
        background::spawn_stats_refresh(&state);
        background::spawn_idempotency_purge(&state);
        background::spawn_pattern_invalidation(state.clone(), engine.events().subscribe());
        background::spawn_redis_catch_up(state.clone());
        background::spawn_run_sweeper(&state);
        let sync_task = crate::sync::spawn(state.clone(), feed_start);
        let workers = if settings.server.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            settings.server.workers
        };
        let server = http::server(
            state,
            workers,
            settings.server.shutdown_timeout_secs,
            listener,
        )?;
        Ok(Self {
            server,
            address,
            admin_key,
            admin_key_generated,
            engine,
            store,
            workflows,
            demo_key,
            node,
            sync_task,
            notifiers,
            alerter,
            scheduler,
            shutdown,
            shutdown_timeout_secs: settings.server.shutdown_timeout_secs,
        })
    }

    /// The workflow runner.
    pub fn workflows(&self) -> &Workflows {
        &self.workflows
    }

    /// This node's identity.
    pub fn node(&self) -> &swarmwise_actors::cluster::NodeId {
        &self.node
    }

    /// The demo workspace's API key for this run, when the demo is on.
    pub fn demo_key(&self) -> Option<&str> {
        self.demo_key.as_deref()
    }

    /// The scheduler, when `scheduler.enabled`.
    pub fn scheduler(&self) -> Option<&swarmwise_actors::scheduler::SchedulerHandle> {
        self.scheduler.as_ref()
    }

    /// The alerter, when `alerts.enabled`.
    pub fn alerter(&self) -> Option<&swarmwise_actors::alerts::Alerter> {
        self.alerter.as_ref()
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The admin key in force.
    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// Whether the admin key was generated at start (none configured).
    pub fn admin_key_generated(&self) -> bool {
        self.admin_key_generated
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The alert notifiers' dispatcher.
    pub fn notifiers(&self) -> &crate::notify::Dispatcher {
        &self.notifiers
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn AdminStore> {
        Arc::clone(&self.store)
    }
}

/// Marks what a dead process left `running` as `interrupted`, with the
/// reason, in every workspace: learning cycles whose workspace's cycle lock
/// no live node holds (`interrupt_orphaned_cycles`: a cycle another node is
/// running now stays `running`), and workflow runs without an owner
/// (written before durable runs). Runs with an owner are never marked
/// here: they hold a lease, and the run sweeper (`background::spawn_run_sweeper`)
/// takes them over when it expires, or at once when they were this node's.
async fn interrupt_leftovers(store: &dyn AdminStore) -> anyhow::Result<()> {
    let reason = "the process running it stopped (crash or kill) before it finished; marked at the next start";
    let now = chrono::Utc::now();
    let (mut runs, mut cycles) = (0, 0);
    for ws in store.workspace_ids().await? {
        let (r, _) = store.interrupt_unfinished(ws, reason, now).await?;
        runs += r;
        cycles += store.interrupt_orphaned_cycles(ws, reason, now).await?;
    }
    if runs + cycles > 0 {
        tracing::warn!(runs, cycles, "marked workflow runs and learning cycles left running by a stopped process as interrupted");
    }
    Ok(())
}
