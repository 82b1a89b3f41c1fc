//! `Application::build`: open the store, start the engine's actors, bind the
//! HTTP server (port 0 in tests) and return the bound address. `run` serves
//! until a signal (or `AppHandle::stop`), then drains: stop accepting, finish
//! in-flight requests, flush every acknowledged recommendation, exit.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle, Service as _};
use actix_web::{web, App, HttpServer};
use swarmwise_actors::learner::actor::Learner;
use swarmwise_actors::swarm::Swarm;
use swarmwise_actors::workflow::{CountingTrigger, CycleTrigger, Workflows};
use swarmwise_actors::Engine;

use crate::auth::{generate_key, hash_key};
use crate::config::Settings;
use crate::error::ApiError;
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
    shutdown: tokio::sync::watch::Sender<bool>,
    /// `server.shutdown_timeout_secs`: the whole stop, flush included.
    shutdown_timeout_secs: u64,
}

/// Stops a running application from elsewhere (tests, signals).
#[derive(Clone)]
pub struct AppHandle {
    server: ServerHandle,
    /// Tells long-lived responses (SSE) to end, so the graceful stop does not
    /// wait `server.shutdown_timeout_secs` for them.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl AppHandle {
    /// Graceful stop: the same path as SIGINT/SIGTERM.
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        self.server.stop(true).await;
    }
}

impl Application {
    /// Opens the store, starts the actors, binds. Must run inside an actix system.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Everything that can fail on configuration fails here, before any
        // actor starts: a failed start then exits with its message alone.
        let listener = TcpListener::bind(&settings.server.bind)
            .map_err(|e| anyhow::anyhow!("could not listen on {} ({e}); set server.bind or SWARMWISE__SERVER__BIND to a free address", settings.server.bind))?;
        let address = listener.local_addr()?;
        let defs = crate::workflows::load_definitions(&settings.workflows.dir)?;
        let factory = crate::backends::ServiceFactory::with_limits(
            &settings.agents,
            crate::backends::AnswerLimits::from(&settings.limits),
        );
        let demo_agents = if settings.demo.enabled {
            Some(crate::workflows::demo_agents(&settings.demo, |agent| {
                swarmwise_actors::swarm::validate_agent(&factory, &settings.agents, agent)
            })?)
        } else {
            None
        };
        let prometheus = crate::telemetry::prometheus()?;
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        actix::spawn(crate::telemetry::metrics_upkeep(
            prometheus.clone(),
            Duration::from_secs(settings.telemetry.metrics_upkeep_secs),
            shutdown_rx.clone(),
        ));
        let patterns = crate::cache::PatternCache::new(&settings.redis).await?;
        let store = store::connect_for(&settings.database, settings.tracking.mode).await?;
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
        if settings.scheduler.enabled {
            swarmwise_actors::scheduler::Scheduler::start(
                store.clone(),
                engine.clone(),
                learner.clone(),
                &settings.scheduler,
            )
            .map_err(|e| anyhow::anyhow!("scheduler.{e}"))?;
        }
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
        );
        let demo = match &demo_agents {
            Some(agents) => {
                Some(crate::workflows::prepare_demo(&settings.demo, agents, store.as_ref()).await?)
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
                actix::spawn(crate::workflows::demo_loop(
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
        let cache_ttl = Duration::from_secs(settings.auth.cache_ttl_secs);
        let state = web::Data::new(AppState {
            engine: engine.clone(),
            store: store.clone(),
            admin_key_hash: hash_key(&admin_key),
            key_cache: TtlCache::new(cache_ttl),
            agents: TtlCache::new(cache_ttl),
            prometheus,
            settings: Arc::new(settings.clone()),
            workflows: workflows.clone(),
            agent_policy,
            limits: crate::limits::Limits::new(&settings.limits),
            shutdown: shutdown_rx,
            learner,
            patterns,
            cycles,
        });
        {
            // Idle rate-limit buckets and run counters are forgotten, so the
            // limits hold state only for active keys and workspaces.
            let state = state.clone();
            let mut shutdown = state.shutdown.clone();
            actix::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    tokio::select! {
                        _ = tick.tick() => state.limits.upkeep(),
                        _ = shutdown.changed() => break,
                    }
                }
            });
        }
        {
            // Cached patterns go stale when any cycle (API, outcomes, schedule) finishes.
            let state = state.clone();
            let mut rx = engine.events().subscribe();
            actix::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(swarmwise_actors::events::Event::LearningCycle {
                            workspace_id, ..
                        }) => {
                            state.patterns.invalidate(workspace_id).await;
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            state.patterns.clear_local()
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
        }
        let workers = if settings.server.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            settings.server.workers
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ApiError::new(
                        actix_web::http::StatusCode::BAD_REQUEST,
                        "invalid_query",
                        format!("query string: {e}"),
                    )
                    .into()
                }))
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    ApiError::new(
                        actix_web::http::StatusCode::BAD_REQUEST,
                        "invalid_path",
                        format!("path: {e}"),
                    )
                    .into()
                }))
                .wrap_fn(|req, srv| {
                    let started = Instant::now();
                    let method = crate::telemetry::method_label(req.method());
                    let fut = srv.call(req);
                    async move {
                        let res = fut.await?;
                        let route = res
                            .request()
                            .match_pattern()
                            .unwrap_or_else(|| "unmatched".into());
                        metrics::histogram!(
                            "swarmwise_http_request_duration_seconds",
                            "method" => method,
                            "route" => route,
                            "status" => res.status().as_u16().to_string()
                        )
                        .record(started.elapsed().as_secs_f64());
                        Ok(res)
                    }
                })
                .configure(crate::routes::configure)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::not_found(
                        "route_not_found",
                        "no such endpoint; see /api/v1/openapi.json for the API",
                    ))
                }))
        })
        .workers(workers)
        // Signals are handled in `run`, which first ends SSE streams.
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        .listen(listener)?
        .run();
        Ok(Self {
            server,
            address,
            admin_key,
            admin_key_generated,
            engine,
            store,
            workflows,
            demo_key,
            shutdown,
            shutdown_timeout_secs: settings.server.shutdown_timeout_secs,
        })
    }

    /// The workflow runner.
    pub fn workflows(&self) -> &Workflows {
        &self.workflows
    }

    /// The demo workspace's API key for this run, when the demo is on.
    pub fn demo_key(&self) -> Option<&str> {
        self.demo_key.as_deref()
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

    /// The store.
    pub fn store(&self) -> Arc<dyn AdminStore> {
        Arc::clone(&self.store)
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> AppHandle {
        AppHandle {
            server: self.server.handle(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// Serves until stopped, then drains acknowledged writes.
    pub async fn run(self) -> anyhow::Result<()> {
        let handle = self.handle();
        actix::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: stopping (in-flight requests finish, then acknowledged writes are flushed)");
            handle.stop().await;
        });
        // The whole stop (in-flight requests, then the flush) has
        // `server.shutdown_timeout_secs`; the flush gets what HTTP left of
        // it, and at least one second.
        let budget = Duration::from_secs(self.shutdown_timeout_secs);
        let mut stopping = self.shutdown.subscribe();
        let began: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        {
            let began = Arc::clone(&began);
            actix::spawn(async move {
                if stopping.wait_for(|s| *s).await.is_ok() {
                    let _ = began.set(Instant::now());
                }
            });
        }
        self.server.await?;
        // Runs still executing (`wait: false`, the demo) get what is left
        // but one second, then are marked interrupted; the flush gets the rest.
        let spent = began.get().map_or(Duration::ZERO, Instant::elapsed);
        let for_runs = budget.saturating_sub(spent + Duration::from_secs(1));
        let running = self.workflows.in_flight();
        if running > 0 {
            tracing::info!(
                runs = running,
                timeout_ms = for_runs.as_millis() as u64,
                "waiting for workflow runs to finish"
            );
            let left_running = self.workflows.settle(for_runs).await;
            if left_running > 0 {
                let marked = self
                    .workflows
                    .interrupt_in_flight("the server shut down before the run finished (server.shutdown_timeout_secs); start it again")
                    .await;
                tracing::warn!(
                    runs = left_running,
                    marked,
                    "workflow runs did not finish before the shutdown timeout; marked interrupted"
                );
            }
        }
        let spent = began.get().map_or(Duration::ZERO, Instant::elapsed);
        let left = budget.saturating_sub(spent).max(Duration::from_secs(1));
        tracing::info!(
            pending = self.engine.pending_writes(),
            timeout_ms = left.as_millis() as u64,
            "HTTP stopped; flushing acknowledged recommendations"
        );
        match self.engine.drain(left).await {
            Ok(()) => {
                tracing::info!("all acknowledged recommendations are stored; bye");
                Ok(())
            }
            Err(swarmwise_actors::EngineError::DrainIncomplete { rows }) => {
                // Logged by the tracker too; the exit status says it.
                anyhow::bail!(
                    "stopped after server.shutdown_timeout_secs with {rows} acknowledged recommendations not written (the database did not accept them in time; see the log)"
                )
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Marks what a dead process left `running` (workflow runs, learning
/// cycles) as `interrupted`, with the reason, in every workspace. With
/// several nodes on one database a starting node would also mark the runs
/// another live node is executing; that node's own end state then
/// overwrites the mark (durable runs with leases are the multi-node answer).
async fn interrupt_leftovers(store: &dyn AdminStore) -> anyhow::Result<()> {
    let reason = "the process running it stopped (crash or kill) before it finished; marked at the next start";
    let now = chrono::Utc::now();
    let (mut runs, mut cycles) = (0, 0);
    for ws in store.workspace_ids().await? {
        let (r, c) = store.interrupt_unfinished(ws, reason, now).await?;
        runs += r;
        cycles += c;
    }
    if runs + cycles > 0 {
        tracing::warn!(runs, cycles, "marked workflow runs and learning cycles left running by a stopped process as interrupted");
    }
    Ok(())
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
