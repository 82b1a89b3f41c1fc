//! The `Scheduler` actor (replaces Celery Beat): cron schedules from config
//! start learning cycles for every workspace, the trust recompute and
//! retention. Cron expressions have six fields (sec min hour day-of-month
//! month day-of-week) and are evaluated in UTC. The other trigger, "N newly
//! evaluated outcomes", is the workflow runner's `CycleTrigger`.
//!
//! ## Several nodes
//!
//! Every node runs a scheduler, but cluster-wide jobs (learning cycles,
//! retention) run on one node only, and once per occurrence:
//!
//! - **Leadership**: a lease row (`SchedulerStore`, name `scheduler`) held
//!   by one `NodeId`, renewed every third of `leader_lease_secs`; when the
//!   leader dies, another node takes the lease once it has expired (its
//!   fencing token increases). A clean shutdown releases it at once.
//! - **Claims**: at each occurrence the leader inserts a claim keyed by
//!   (job, the cron occurrence's time) under its fencing token, and runs the
//!   job only if that insert won. The key is the occurrence's time, not the
//!   node's clock, so nodes with skewed clocks (or two leaders during a
//!   hand-over) produce the same key and one insert wins; a deposed
//!   leader's stale token is refused. Claims older than a day are pruned.
//! - The trust recompute runs on **every** node, unclaimed: it rebuilds
//!   the node's own in-memory trust state from the store and writes nothing
//!   shared, so running it on the leader alone would leave the others stale.
//!
//! Occurrences that fall while no node holds the lease (at most
//! `leader_lease_secs` after a leader dies) are skipped, like a Beat that
//! was down; the next occurrence runs.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::cluster::NodeId;
use crate::domain::ParseError;
use crate::engine::Engine;
use crate::learner::actor::Learner;
use crate::ports::Store;
use crate::retention::RetentionConfig;

/// Config section `[scheduler]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Run the scheduled jobs (false: only API, CLI and outcome triggers).
    pub enabled: bool,
    /// When every workspace's learning cycle runs (default daily at 02:00 UTC).
    pub learning_cycle: String,
    /// When trust is recomputed from the store (default every 6 hours; on
    /// every node: each rebuilds its own trust state).
    pub trust_recompute: String,
    /// Seconds a node holds the scheduler's leadership without renewing
    /// it (renewed every third of it); after a leader dies, another node
    /// takes over within this time.
    pub leader_lease_secs: u32,
}

/// Accepted range of `leader_lease_secs`.
pub const LEADER_LEASE_SECS: std::ops::RangeInclusive<u32> = 2..=600;

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            learning_cycle: "0 0 2 * * *".into(),
            trust_recompute: "0 0 */6 * * *".into(),
            leader_lease_secs: 20,
        }
    }
}

/// A scheduled job with its next run time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobInfo {
    /// `learning_cycle`, `trust_recompute`, `retention`, or `learning_cycle_on_outcomes`.
    pub name: String,
    /// Cron expression, or the trigger in words.
    pub schedule: String,
    /// Next run (null for event triggers).
    pub next_run: Option<DateTime<Utc>>,
    /// What it does.
    pub description: String,
}

/// Parses a six-field cron expression; the error names `key`.
pub fn parse_cron(key: &str, expr: &str) -> Result<cron::Schedule, ParseError> {
    parse(key, expr)
}

fn parse(key: &str, expr: &str) -> Result<cron::Schedule, ParseError> {
    cron::Schedule::from_str(expr).map_err(|e| {
        ParseError::new(key, format!("not a cron expression ({e}); use six fields: sec min hour day month weekday, e.g. \"0 0 2 * * *\""))
    })
}

impl SchedulerConfig {
    /// Checks both expressions; the error names the key.
    pub fn validate(&self) -> Result<(), ParseError> {
        parse("learning_cycle", &self.learning_cycle)?;
        parse("trust_recompute", &self.trust_recompute)?;
        if !LEADER_LEASE_SECS.contains(&self.leader_lease_secs) {
            return Err(ParseError::new(
                "leader_lease_secs",
                format!(
                    "must be {} to {} seconds; e.g. 20",
                    LEADER_LEASE_SECS.start(),
                    LEADER_LEASE_SECS.end()
                ),
            ));
        }
        Ok(())
    }

    /// Every job with its next run after `now` (like Celery Beat's listing);
    /// retention only when `retention.enabled`.
    pub fn jobs(
        &self,
        now: DateTime<Utc>,
        cycle_every_outcomes: u64,
        retention: &RetentionConfig,
    ) -> Vec<JobInfo> {
        let next = |expr: &str| parse("", expr).ok().and_then(|s| s.after(&now).next());
        let mut jobs = vec![
            JobInfo {
                name: "learning_cycle".into(),
                schedule: self.learning_cycle.clone(),
                next_run: if self.enabled {
                    next(&self.learning_cycle)
                } else {
                    None
                },
                description: "learning cycle for every workspace (patterns, rules, insights)"
                    .into(),
            },
            JobInfo {
                name: "trust_recompute".into(),
                schedule: self.trust_recompute.clone(),
                next_run: if self.enabled {
                    next(&self.trust_recompute)
                } else {
                    None
                },
                description:
                    "recompute every workspace's trust from stored outcomes (on every node)".into(),
            },
        ];
        if retention.enabled {
            jobs.push(JobInfo {
                name: "retention".into(),
                schedule: retention.schedule.clone(),
                next_run: if self.enabled {
                    next(&retention.schedule)
                } else {
                    None
                },
                description: format!(
                    "{} settled recommendations older than {} days (trust and patterns keep their digests)",
                    retention.mode.as_str(),
                    retention.max_age_days
                ),
            });
        }
        if cycle_every_outcomes > 0 {
            jobs.push(JobInfo {
                name: "learning_cycle_on_outcomes".into(),
                schedule: format!("every {cycle_every_outcomes} evaluated outcomes per workspace"),
                next_run: None,
                description: "learning cycle when enough new outcomes arrived".into(),
            });
        }
        jobs
    }
}

/// Name of the scheduler's leadership lease.
pub const LEASE: &str = "scheduler";

/// Claims older than this are pruned by the leader (once an hour).
const CLAIM_RETENTION: TimeDelta = TimeDelta::hours(24);

/// Occurrences each scheduler remembers having run (tests read them).
const RAN_LOG: usize = 1024;

/// The newest occurrences (job, scheduled time) a scheduler ran.
type RanLog = Arc<Mutex<VecDeque<(String, DateTime<Utc>)>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// Every workspace's learning cycle: leader only, claimed.
    Cycle,
    /// This node's trust state rebuilt from the store: every node (the
    /// state is per node, nothing shared is written).
    Recompute,
    /// Retention: leader only, claimed.
    Retention,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Self::Cycle => "learning_cycle",
            Self::Recompute => "trust_recompute",
            Self::Retention => "retention",
        }
    }

    /// Cluster-wide jobs run once per occurrence across the nodes.
    fn singleton(self) -> bool {
        !matches!(self, Self::Recompute)
    }
}

/// The retention job's inputs.
#[derive(Debug, Clone)]
pub struct RetentionJob {
    /// `[retention]` (the job is armed only when `enabled`).
    pub config: RetentionConfig,
    /// `learner.decision_key`, for the outcome digests.
    pub decision_key: String,
}

/// What the scheduler needs to run.
pub struct SchedulerParts {
    /// The store (lease, claims, workspaces).
    pub store: Arc<dyn Store>,
    /// The engine (trust recompute).
    pub engine: Engine,
    /// The meta-learner (scheduled cycles).
    pub learner: Learner,
    /// This node: the lease's holder and every claim's node.
    pub node: NodeId,
    /// The retention job, if configured.
    pub retention: Option<RetentionJob>,
    /// Added to this process's clock when computing occurrences (zero in
    /// service; tests simulate clock skew between nodes with it).
    pub clock_offset: TimeDelta,
}

/// Stop the scheduler; with `release`, give the leadership up first (a
/// clean shutdown), without it just stop (as a killed process would).
#[derive(Message)]
#[rtype(result = "()")]
struct Stop {
    release: bool,
}

/// Handle to a running scheduler: cheap to clone, hides actix.
#[derive(Clone)]
pub struct SchedulerHandle {
    addr: Addr<Scheduler>,
    leading: Arc<AtomicBool>,
    ran: RanLog,
}

impl SchedulerHandle {
    /// Whether this node believes it holds the leadership lease now.
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    /// The newest occurrences (job, scheduled time) this scheduler ran,
    /// oldest first (at most 1,024).
    pub fn ran(&self) -> Vec<(String, DateTime<Utc>)> {
        self.ran
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Releases the leadership (another node takes it at its next renewal
    /// instead of after the expiry) and stops; the clean-shutdown path.
    pub async fn shutdown(&self) {
        let _ = self.addr.send(Stop { release: true }).await;
    }

    /// Stops without releasing the lease, as a killed process would: the
    /// other nodes take over once it expires.
    pub async fn kill(&self) {
        let _ = self.addr.send(Stop { release: false }).await;
    }
}

/// The actor; start with [`Scheduler::start`].
pub struct Scheduler {
    parts: SchedulerParts,
    cycle: cron::Schedule,
    recompute: cron::Schedule,
    retention: Option<cron::Schedule>,
    lease_secs: u32,
    /// The fencing token of the lease this node holds, and until when (on
    /// this process's monotonic clock) it may believe so without a renewal.
    lease: Option<(i64, Instant)>,
    /// A lease call is in flight (renewals never overlap).
    renewing: bool,
    /// Mirror of `lease.is_some()` for the handle and the gauge.
    leading: Arc<AtomicBool>,
    ran: RanLog,
    /// The retention job is running on this node (occurrences that come
    /// while it runs are skipped).
    retention_running: Arc<AtomicBool>,
    last_prune: Option<Instant>,
}

impl Scheduler {
    /// Starts the scheduler (validate the config first). The returned
    /// handle stops it.
    pub fn start(
        parts: SchedulerParts,
        config: &SchedulerConfig,
    ) -> Result<SchedulerHandle, ParseError> {
        let cycle = parse("learning_cycle", &config.learning_cycle)?;
        let recompute = parse("trust_recompute", &config.trust_recompute)?;
        let retention = match &parts.retention {
            Some(r) if r.config.enabled => Some(parse("schedule", &r.config.schedule)?),
            _ => None,
        };
        let leading = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(Mutex::new(VecDeque::new()));
        // Exposed from the start (0 until the first renewal says otherwise).
        metrics::gauge!("swarmwise_scheduler_leader").set(0.0);
        let addr = Self {
            parts,
            cycle,
            recompute,
            retention,
            lease_secs: config.leader_lease_secs,
            lease: None,
            renewing: false,
            leading: Arc::clone(&leading),
            ran: Arc::clone(&ran),
            retention_running: Arc::new(AtomicBool::new(false)),
            last_prune: None,
        }
        .start();
        Ok(SchedulerHandle { addr, leading, ran })
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.parts.clock_offset
    }

    fn schedule(&self, job: Job) -> Option<&cron::Schedule> {
        match job {
            Job::Cycle => Some(&self.cycle),
            Job::Recompute => Some(&self.recompute),
            Job::Retention => self.retention.as_ref(),
        }
    }

    /// Arms `job` for its first occurrence after `after` (the previous
    /// occurrence, so a late timer never skips one).
    fn arm(&self, job: Job, after: DateTime<Utc>, ctx: &mut Context<Self>) {
        let Some(at) = self.schedule(job).and_then(|s| s.after(&after).next()) else {
            return;
        };
        let wait = (at - self.now()).to_std().unwrap_or_default();
        ctx.run_later(wait, move |act, ctx| {
            act.fire(job, at, ctx);
            act.arm(job, at, ctx);
        });
    }

    /// Renews (or tries to take) the leadership lease.
    fn renew(&mut self, ctx: &mut Context<Self>) {
        if self.renewing {
            return;
        }
        self.renewing = true;
        let store = Arc::clone(&self.parts.store);
        let node = self.parts.node.clone();
        let ttl = self.lease_secs;
        let asked = Instant::now();
        ctx.spawn(
            async move { store.acquire_lease(LEASE, node.as_str(), ttl).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.renewing = false;
                    let before = act.lease.map(|(t, _)| t);
                    match res {
                        // Believed for the lease time minus a third, counted
                        // from when it was asked for.
                        Ok(Some(l)) => {
                            act.lease = Some((
                                l.fencing_token,
                                asked + Duration::from_millis(u64::from(ttl) * 2000 / 3),
                            ))
                        }
                        Ok(None) => act.lease = None,
                        Err(e) => {
                            tracing::warn!(error = %e, "scheduler: could not renew the leadership lease; scheduled jobs pause on this node until the database answers");
                            if act.lease.is_some_and(|(_, until)| until <= Instant::now()) {
                                act.lease = None;
                            }
                        }
                    }
                    let now = act.lease.map(|(t, _)| t);
                    if before != now {
                        match now {
                            Some(token) => tracing::info!(node = %act.parts.node, fencing_token = token, "scheduler: this node leads the scheduled jobs"),
                            None => tracing::info!(node = %act.parts.node, "scheduler: another node leads the scheduled jobs"),
                        }
                    }
                    act.leading.store(now.is_some(), Ordering::Relaxed);
                    metrics::gauge!("swarmwise_scheduler_leader").set(if now.is_some() { 1.0 } else { 0.0 });
                    if now.is_some() && act.last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                        act.last_prune = Some(Instant::now());
                        act.prune(ctx);
                    }
                }),
        );
    }

    fn prune(&self, ctx: &mut Context<Self>) {
        let store = Arc::clone(&self.parts.store);
        let before = self.now() - CLAIM_RETENTION;
        ctx.spawn(
            async move {
                match store.prune_claims(before).await {
                    Ok(n) if n > 0 => tracing::info!(pruned = n, "scheduler: old occurrence claims pruned"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "scheduler: could not prune old occurrence claims; retried in an hour"),
                }
            }
            .into_actor(self),
        );
    }

    /// The token of the lease held now, if any.
    fn token(&self) -> Option<i64> {
        self.lease
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t)
    }

    fn fire(&self, job: Job, at: DateTime<Utc>, ctx: &mut Context<Self>) {
        let token = if job.singleton() {
            match self.token() {
                Some(t) => Some(t),
                // Not the leader: the leader runs it.
                None => return,
            }
        } else {
            None
        };
        let store = Arc::clone(&self.parts.store);
        let engine = self.parts.engine.clone();
        let learner = self.parts.learner.clone();
        let node = self.parts.node.clone();
        let ran = Arc::clone(&self.ran);
        let retention = self.parts.retention.clone();
        let retention_running = Arc::clone(&self.retention_running);
        ctx.spawn(
            async move {
                if let Some(token) = token {
                    match store.claim_occurrence(LEASE, job.name(), at, node.as_str(), token).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::debug!(job = job.name(), scheduled_at = %at, "scheduler: occurrence already claimed (or leadership lost); not run here");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(job = job.name(), scheduled_at = %at, error = %e, "scheduler: could not claim an occurrence; skipped (it runs at the next one)");
                            return;
                        }
                    }
                }
                metrics::counter!("swarmwise_scheduled_jobs_total", "job" => job.name()).increment(1);
                if let Ok(mut r) = ran.lock() {
                    if r.len() >= RAN_LOG {
                        r.pop_front();
                    }
                    r.push_back((job.name().to_owned(), at));
                }
                run_job(job, store, engine, learner, retention, retention_running).await;
            }
            .into_actor(self),
        );
    }
}

async fn run_job(
    job: Job,
    store: Arc<dyn Store>,
    engine: Engine,
    learner: Learner,
    retention: Option<RetentionJob>,
    retention_running: Arc<AtomicBool>,
) {
    match job {
        Job::Cycle => match store.workspace_ids().await {
            Ok(ids) => {
                tracing::info!(workspaces = ids.len(), "scheduled learning cycles");
                for ws in ids {
                    learner.request(ws, "schedule");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduled learning cycle: could not list workspaces")
            }
        },
        Job::Recompute => {
            if let Err(e) = engine.recompute_trust(None).await {
                tracing::error!(error = %e, "scheduled trust recompute failed");
            }
        }
        Job::Retention => {
            let Some(r) = retention else { return };
            if retention_running.swap(true, Ordering::AcqRel) {
                tracing::warn!("scheduled retention skipped: the previous run is still going");
                return;
            }
            let res = crate::retention::run(
                store.as_ref(),
                &r.config,
                &r.decision_key,
                Utc::now(),
                false,
                &|_, _, _, _| {},
            )
            .await;
            retention_running.store(false, Ordering::Release);
            match res {
                Ok(rep) => tracing::info!(
                    recommendations = rep.recommendations,
                    dead_letters = rep.dead_letters,
                    trust_history = rep.trust_history,
                    workspaces = rep.workspaces.len(),
                    mode = rep.mode.as_str(),
                    "scheduled retention done"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "scheduled retention failed; what was committed stays, the next run goes on from there")
                }
            }
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let now = self.now();
        for job in [Job::Cycle, Job::Recompute, Job::Retention] {
            self.arm(job, now, ctx);
        }
        self.renew(ctx);
        let every = Duration::from_millis((u64::from(self.lease_secs) * 1000 / 3).max(100));
        ctx.run_interval(every, |act, ctx| act.renew(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.leading.store(false, Ordering::Relaxed);
    }
}

impl Handler<Stop> for Scheduler {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Stop, _ctx: &mut Context<Self>) -> Self::Result {
        let store = Arc::clone(&self.parts.store);
        let node = self.parts.node.clone();
        let held = self.lease.is_some();
        self.lease = None;
        self.leading.store(false, Ordering::Relaxed);
        Box::pin(
            async move {
                if msg.release && held {
                    if let Err(e) = store.release_lease(LEASE, node.as_str()).await {
                        tracing::warn!(error = %e, "scheduler: could not release the leadership; another node takes it when it expires");
                    }
                }
            }
            .into_actor(self)
            .map(|_, _act, ctx| {
                metrics::gauge!("swarmwise_scheduler_leader").set(0.0);
                ctx.stop();
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn defaults_run_daily_at_two_and_every_six_hours() {
        let c = SchedulerConfig::default();
        c.validate().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 3, 30, 0).unwrap();
        let jobs = c.jobs(now, 1000, &RetentionConfig::default());
        assert_eq!(
            jobs[0].next_run,
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap())
        );
        assert_eq!(
            jobs[1].next_run,
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 6, 0, 0).unwrap())
        );
        assert_eq!(jobs[2].name, "learning_cycle_on_outcomes");
        let bad = SchedulerConfig {
            learning_cycle: "every day".into(),
            ..SchedulerConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "learning_cycle");
        let short = SchedulerConfig {
            leader_lease_secs: 1,
            ..SchedulerConfig::default()
        };
        assert_eq!(short.validate().unwrap_err().field, "leader_lease_secs");
        let retention = RetentionConfig {
            enabled: true,
            ..RetentionConfig::default()
        };
        let jobs = c.jobs(now, 0, &retention);
        assert_eq!(jobs[2].name, "retention");
        assert_eq!(
            jobs[2].next_run,
            Some(Utc.with_ymd_and_hms(2026, 11, 26, 3, 30, 0).unwrap())
        );
    }
}
