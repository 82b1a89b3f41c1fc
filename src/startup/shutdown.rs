//! The stop protocol: a signal (or [`AppHandle::stop`]) ends SSE streams and
//! stops accepting; in-flight requests finish; running workflow runs get what
//! is left of `server.shutdown_timeout_secs` but a second, then are handed
//! over (their lease released, so another node or this one at restart
//! resumes them after their last stored stage; or failed, when their
//! workflow says `on_restart = "fail"`); every acknowledged recommendation
//! is flushed; alert notifications still queued get what is left of the
//! timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;

use super::Application;

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
    /// A handle to stop the server.
    pub fn handle(&self) -> AppHandle {
        AppHandle {
            server: self.server.handle(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// Serves until stopped, then drains acknowledged writes.
    pub async fn run(mut self) -> anyhow::Result<()> {
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
        // No scheduled job starts here any more, and another node takes the
        // leadership at its next renewal instead of after the lease expiry.
        if let Some(s) = &self.scheduler {
            s.shutdown().await;
        }
        // Runs still executing (`wait: false`, the demo) get what is left
        // but one second, then are handed over; the flush gets the rest.
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
                let (released, failed) = self
                    .workflows
                    .hand_over_in_flight("the server shut down before the run finished (server.shutdown_timeout_secs)")
                    .await;
                tracing::warn!(
                    runs = left_running,
                    released,
                    failed,
                    "workflow runs did not finish before the shutdown timeout; their leases are released for another node (or this one at restart) to resume them, or they are failed (on_restart = \"fail\")"
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
                tracing::info!("all acknowledged recommendations are stored");
                // The change-feed task ends at the shutdown signal; wait for
                // it, then for the trust scorer to finish what it was given,
                // so that no store call is in flight when the runtime is
                // dropped (a pooled connection dropped outside the runtime
                // panics, and the process would exit 101 after a clean stop).
                if let Some(task) = self.sync_task.take() {
                    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
                }
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), self.engine.trust_settled()).await;
                let spent = began.get().map_or(Duration::ZERO, Instant::elapsed);
                let pending = self.notifiers.pending();
                if pending > 0 {
                    let left = budget.saturating_sub(spent);
                    tracing::info!(
                        pending,
                        timeout_ms = left.as_millis() as u64,
                        "delivering queued alert notifications"
                    );
                    let lost = self.notifiers.settle(left).await;
                    if lost > 0 {
                        tracing::warn!(
                            notifications = lost,
                            "alert notifications not delivered before server.shutdown_timeout_secs (their receivers are slow or down); they are lost"
                        );
                    }
                }
                tracing::info!("bye");
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
