//! Settings: built-in defaults, then the TOML file (`--config`, default
//! `config/default.toml` when present), then `SWARMWISE__SECTION__KEY`
//! environment variables. Unknown keys are errors, and every error names the
//! key (`swarmwise check-config` prints it).
//!
//! Why one file of about 660 lines: every section's validation in one place
//! (an error names its key), 640 lines before its tests
//! (the notifiers' own checks live in `crate::notify::config`).

use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use swarmwise_actors::learner::actor::LearnerConfig;
use swarmwise_actors::scheduler::SchedulerConfig;
use swarmwise_actors::swarm::SwarmConfig;
use swarmwise_actors::tracker::TrackerConfig;
use swarmwise_actors::trust::TrustParams;
use swarmwise_actors::workflow::WorkflowsConfig;
use swarmwise_actors::SupervisionConfig;

/// The default config file, used when it exists and no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "config/default.toml";

/// Every setting; sections mirror `config/default.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[server]`.
    pub server: ServerSettings,
    /// `[database]`.
    pub database: DatabaseSettings,
    /// `[redis]`.
    pub redis: RedisSettings,
    /// `[events]`: the SSE streams (heartbeat, lifetime, replay buffer).
    pub events: EventSettings,
    /// `[cluster]`.
    pub cluster: ClusterSettings,
    /// `[auth]`.
    pub auth: AuthSettings,
    /// `[learning]`.
    pub learning: LearningSettings,
    /// `[tracking]`.
    pub tracking: TrackerConfig,
    /// `[trust]`.
    pub trust: TrustParams,
    /// `[supervision]`.
    pub supervision: SupervisionConfig,
    /// `[agents]`: scheduling, pools, trust threshold, supervision of agents.
    pub agents: SwarmConfig,
    /// `[workflows]`.
    pub workflows: WorkflowsConfig,
    /// `[learner]`: pattern mining and lifecycle.
    pub learner: LearnerConfig,
    /// `[scheduler]`: cron schedules and leadership across nodes.
    pub scheduler: SchedulerConfig,
    /// `[retention]`: removing or archiving old recommendations (off by default).
    pub retention: swarmwise_actors::retention::RetentionConfig,
    /// `[demo]`.
    pub demo: DemoSettings,
    /// `[limits]`.
    pub limits: LimitSettings,
    /// `[telemetry]`.
    pub telemetry: TelemetrySettings,
    /// `[dashboard]`: the pages under `/learning`.
    pub dashboard: DashboardSettings,
    /// `[alerts]`: the rules the `Alerter` evaluates, silences, retention,
    /// and the notifiers with their routes by severity.
    pub alerts: AlertsSettings,
    /// `[idempotency]`: the `Idempotency-Key` header on creates.
    pub idempotency: IdempotencySettings,
    /// `[costs]`: the price table, USD per million tokens per model.
    pub costs: crate::costs::CostSettings,
}

/// `[idempotency]`: how long a create sent with an `Idempotency-Key` header
/// is remembered, and how long an unfinished claim holds its key
/// (docs/idempotency.md; `crate::idempotency`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencySettings {
    /// Seconds a key's record and stored answer are kept: a repeat within
    /// this replays the answer; after it the key is new again. 60 to
    /// 2592000 (30 days).
    pub ttl_secs: u64,
    /// Seconds a running request's claim lasts unless renewed (its node
    /// renews it every third of this while the request runs): a claim of a
    /// node that died lapses after this, and a retry runs the request again.
    /// 3 to 3600, and below `ttl_secs`.
    pub lease_secs: u64,
    /// Seconds between purges of expired records (every node purges; the
    /// delete is the same on each). 1 to 86400.
    pub purge_interval_secs: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            ttl_secs: 24 * 3600,
            lease_secs: 30,
            purge_interval_secs: 3600,
        }
    }
}

/// `[alerts]`: the rules the `Alerter` evaluates (the engine's part,
/// [`AlertsConfig`](swarmwise_actors::alerts::AlertsConfig): rules,
/// evaluation period, silences, retention) and where notifications go.
/// `[alerts.notifiers.NAME]` declares a notifier (webhook, Slack,
/// PagerDuty, email) and `[alerts.routes]` lists the notifiers of each
/// severity; both belong to the operator (see `crate::notify`). None by
/// default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSettings {
    /// Evaluate rules at all (see `AlertsConfig::enabled`).
    pub enabled: bool,
    /// Seconds between evaluations.
    pub evaluate_every_secs: u64,
    /// Largest page of `GET /api/v1/alerts`.
    pub max_alerts_listed: u32,
    /// Longest silence, in seconds.
    pub max_silence_secs: u64,
    /// Active or scheduled silences per workspace.
    pub max_silences_per_workspace: u32,
    /// Days a resolved alert is kept (0 = forever).
    pub retention_days: u32,
    /// `[alerts.rules.NAME]`.
    pub rules: std::collections::BTreeMap<String, swarmwise_actors::alerts::RuleConfig>,
    /// `[alerts.notifiers.NAME]`, by name.
    pub notifiers: std::collections::BTreeMap<String, crate::notify::NotifierSettings>,
    /// `[alerts.routes]`.
    pub routes: crate::notify::RouteSettings,
    /// `[alerts.quarantine]`: cool-down, probation and re-admission of an
    /// agent an alert quarantined (docs/admission.md).
    pub quarantine: swarmwise_actors::admission::QuarantineConfig,
}

impl Default for AlertsSettings {
    fn default() -> Self {
        let c = swarmwise_actors::alerts::AlertsConfig::default();
        Self {
            enabled: c.enabled,
            evaluate_every_secs: c.evaluate_every_secs,
            max_alerts_listed: c.max_alerts_listed,
            max_silence_secs: c.max_silence_secs,
            max_silences_per_workspace: c.max_silences_per_workspace,
            retention_days: c.retention_days,
            rules: c.rules,
            notifiers: Default::default(),
            routes: Default::default(),
            quarantine: Default::default(),
        }
    }
}

impl AlertsSettings {
    /// The engine's part (the `Alerter`'s config).
    pub fn engine(&self) -> swarmwise_actors::alerts::AlertsConfig {
        swarmwise_actors::alerts::AlertsConfig {
            enabled: self.enabled,
            evaluate_every_secs: self.evaluate_every_secs,
            max_alerts_listed: self.max_alerts_listed,
            max_silence_secs: self.max_silence_secs,
            max_silences_per_workspace: self.max_silences_per_workspace,
            retention_days: self.retention_days,
            rules: self.rules.clone(),
        }
    }
}

/// `[dashboard]`: sign-in sessions and colour thresholds of the pages
/// under `/learning`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardSettings {
    /// Seconds a sign-in lasts (the cookie's Max-Age and the server-side
    /// expiry), 60 to 604800.
    pub session_ttl_secs: u64,
    /// Sessions kept per workspace; signing in once more ends the oldest.
    pub max_sessions_per_workspace: usize,
    /// Mark the session cookie `Secure` (set it when served over HTTPS).
    pub secure_cookie: bool,
    /// Trust below this is drawn red.
    pub trust_red_below: f64,
    /// Trust at or above this is drawn green (between: yellow).
    pub trust_green_from: f64,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self {
            session_ttl_secs: 8 * 3600,
            max_sessions_per_workspace: 50,
            secure_cookie: false,
            trust_red_below: 0.4,
            trust_green_from: 0.7,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port.
    pub bind: String,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Seconds a stop may take: in-flight requests, then the tracker's flush.
    pub shutdown_timeout_secs: u64,
    /// glibc malloc arenas for `serve` (`MALLOC_ARENA_MAX`, set by re-executing
    /// the binary when the variable is unset); 0 = the C library's default.
    pub malloc_arena_max: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 0,
            shutdown_timeout_secs: 30,
            malloc_arena_max: 2,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path/file.db` (embedded default) or `postgres://user@host/db`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// Seconds to wait for a pooled connection before answering 503.
    pub acquire_timeout_secs: u64,
    /// Apply migrations at start.
    pub migrate: bool,
    /// SQLite only: milliseconds between checkpoints of the write-ahead log
    /// by a background task, off the write path (0 to 60000; 0 = SQLite's
    /// own checkpoint inside the commit that fills 1,000 pages). See
    /// docs/operations.md, "Checkpoints".
    pub sqlite_checkpoint_interval_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/swarmwise.db".into(),
            max_connections: 8,
            acquire_timeout_secs: 5,
            migrate: true,
            sqlite_checkpoint_interval_ms: 100,
        }
    }
}

/// `[redis]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://host:port/db`; empty = no Redis.
    pub url: String,
    /// Seconds a cached pattern list lives in Redis (a new cycle deletes it sooner).
    pub pattern_ttl_secs: u64,
    /// Prefix of every key and channel swarmwise uses.
    pub key_prefix: String,
    /// Milliseconds every single Redis call may take before the caller
    /// falls back (to the database, or to this node's local events); a
    /// failed or late call marks Redis unavailable until a PING succeeds.
    pub op_timeout_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            pattern_ttl_secs: 300,
            key_prefix: "swarmwise:".into(),
            op_timeout_ms: 200,
        }
    }
}

/// `[events]`: the server-sent event streams (`GET /api/v1/events`,
/// `GET /learning/events`; docs/events.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Seconds between `: ping` comments: a gone client is noticed (and its
    /// stream slot freed) at the first write after it left.
    pub heartbeat_secs: u64,
    /// Seconds a stream lives before the server ends it with a `retry:`
    /// hint (clients reconnect with `Last-Event-ID`); 0 = no limit.
    pub max_stream_secs: u64,
    /// Recent events kept per workspace on each node for replay after
    /// `Last-Event-ID`; 0 = no replay (a reconnect with an id gets a reset).
    pub replay_buffer: usize,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            heartbeat_secs: 15,
            max_stream_secs: 3600,
            replay_buffer: 256,
        }
    }
}

/// `[cluster]`: how this node identifies itself among several sharing
/// one database (docs/operations.md, "Several nodes").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// This node's id (`swarmwise_actors::cluster::NodeId`); empty =
    /// generated at every start.
    pub node_id: String,
    /// Milliseconds between two reads of the change feed (`crate::sync`);
    /// 0 = the feed is not read.
    pub sync_poll_ms: u64,
    /// Feed rows read per query, at most.
    pub sync_batch: u32,
    /// Seconds feed rows are kept; a node that could not read the feed for
    /// longer rebuilds its derived state from the tables.
    pub sync_retention_secs: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            sync_poll_ms: 250,
            sync_batch: 1000,
            sync_retention_secs: 600,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// The admin key (manages workspaces); empty = generate one at start and print it.
    pub admin_key: String,
    /// Seconds an authorisation fact read from the database (a key's
    /// workspace, a registered agent) is reused before it is read again: how
    /// long another node's revocation can take to reach this one. 0 = no cache.
    pub cache_ttl_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            admin_key: String::new(),
            cache_ttl_secs: 5,
        }
    }
}

/// `[learning]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearningSettings {
    /// The rollback switch: false = nothing is tracked or learned.
    pub enabled: bool,
    /// Request a learning cycle every this many evaluated outcomes per workspace (0 = never).
    pub cycle_every_outcomes: u64,
}

impl Default for LearningSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            cycle_every_outcomes: 1000,
        }
    }
}

/// `[demo]`: a swarm of simulated agents running a workflow continuously.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    /// Run the demo swarm in the `demo` workspace.
    pub enabled: bool,
    /// The demo swarm's agents (TOML, `[[agents]]` with id, name, kind, config).
    pub swarm_file: String,
    /// Workflow to run.
    pub workflow: String,
    /// Runs started per second.
    pub runs_per_second: f64,
    /// File (mode 0600) holding the demo workspace's API key, so it survives
    /// restarts; created at the first start.
    pub key_file: String,
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            swarm_file: "config/demo/swarm.toml".into(),
            workflow: "move_creation".into(),
            runs_per_second: 2.0,
            key_file: "data/demo.key".into(),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest `content` of one recommendation, in bytes of JSON.
    pub max_content_bytes: usize,
    /// Largest text field (reasoning, feedback, comment), in bytes.
    pub max_text_bytes: usize,
    /// Most items in one batch.
    pub max_batch_items: usize,
    /// Page size when `limit` is absent.
    pub default_page_size: u32,
    /// Largest `limit`.
    pub max_page_size: u32,
    /// Rows a page of `GET /recommendations` with combined filters (two or
    /// more of agent, status and type, no workflow) examines at most: its
    /// scan window. The page may then hold fewer than `limit` items with a
    /// `next_cursor` that continues below the window.
    pub list_scan_rows: u32,
    /// Requests per second each workspace API key may send (0 = unlimited).
    pub key_requests_per_second: u32,
    /// Requests a key may send at once above its rate (token bucket size).
    pub key_burst: u32,
    /// Workflow runs in flight per workspace (0 = unlimited).
    pub max_runs_in_flight: usize,
    /// Agents one workspace may register (0 = unlimited).
    pub max_agents_per_workspace: usize,
    /// Server-sent event streams open at once per workspace, over
    /// `GET /api/v1/events` and `GET /learning/events` together (0 =
    /// unlimited); one more is 429 `too_many_streams`. Counted per node:
    /// with N nodes a workspace may hold up to N times this many.
    pub max_event_streams_per_workspace: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_content_bytes: 64 * 1024,
            max_text_bytes: 16 * 1024,
            max_batch_items: 1000,
            default_page_size: 50,
            max_page_size: 500,
            list_scan_rows: 10_000,
            key_requests_per_second: 1000,
            key_burst: 2000,
            max_runs_in_flight: 64,
            max_agents_per_workspace: 1000,
            max_event_streams_per_workspace: 32,
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// Log filter (`info`, `swarmwise=debug,info`, ...); `RUST_LOG` wins when set.
    pub log_level: String,
    /// Seconds between folds of recorded histogram samples into their
    /// buckets. The recorder keeps every sample until then, so this bounds
    /// the memory metrics hold between scrapes (or without a scraper).
    pub metrics_upkeep_secs: u64,
    /// Seconds between refreshes of the gauges read from the database and
    /// the trust snapshots (patterns, table rows, trust, quality, RLS);
    /// `/metrics` serves the latest refresh and costs no query.
    pub stats_refresh_secs: u64,
    /// Per-agent series (`agent` label) this node exposes at most, over all
    /// workspaces together, `agent="_other"` series included; agents past
    /// it are folded into `_other` (docs/monitoring.md).
    pub max_agent_series: usize,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`
    /// (Prometheus `authorization.credentials`); empty: open, as before.
    /// The per-workspace gauges carry workspace and agent ids, so set it
    /// wherever tenants can reach the port.
    pub metrics_token: String,
    /// `[telemetry.otlp]`: OpenTelemetry trace export (off by default).
    pub otlp: OtlpSettings,
}

/// `[telemetry.otlp]`: spans exported over OTLP/HTTP (protobuf) to a
/// collector (docs/tracing.md). Off while `endpoint` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpSettings {
    /// Collector base URL (`http://127.0.0.1:4318`), `/v1/traces` appended
    /// unless already there; empty: no export, no trace context.
    pub endpoint: String,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Share of new traces sampled, 0.0–1.0 (an incoming `traceparent`
    /// gives the trace id, not the decision).
    pub sample_ratio: f64,
    /// Deadline of one export request, in milliseconds.
    pub timeout_ms: u64,
    /// Extra request headers for the collector (auth); never logged.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Ended spans waiting for export at most; past it spans are dropped
    /// and counted (`swarmwise_otlp_spans_dropped_total`).
    pub max_queue_size: usize,
    /// Spans per export request at most.
    pub max_export_batch_size: usize,
    /// Milliseconds between two exports of a partly filled batch.
    pub scheduled_delay_ms: u64,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            service_name: "swarmwise".into(),
            sample_ratio: 1.0,
            timeout_ms: 5_000,
            headers: std::collections::BTreeMap::new(),
            max_queue_size: 2_048,
            max_export_batch_size: 512,
            scheduled_delay_ms: 1_000,
        }
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            metrics_upkeep_secs: 5,
            stats_refresh_secs: 60,
            max_agent_series: 200,
            metrics_token: String::new(),
            otlp: OtlpSettings::default(),
        }
    }
}

/// A setting that is wrong, by key.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    /// Dotted key, e.g. `tracking.batch_size`.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// When `key`'s value came from a config file and is a relative path, makes
/// it relative to that file's folder (values from defaults or the
/// environment stay relative to the working directory).
fn relative_to_file(fig: &Figment, key: &str, value: &mut String) {
    if Path::new(value.as_str()).is_absolute() {
        return;
    }
    let source = fig.find_metadata(key).and_then(|m| m.source.as_ref());
    if let Some(figment::Source::File(file)) = source {
        if let Some(dir) = file.parent() {
            *value = dir.join(value.as_str()).to_string_lossy().into_owned();
        }
    }
}

impl Settings {
    /// Loads defaults ← file ← environment. `file = None` uses
    /// `config/default.toml` if it exists; a named file must exist.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError {
                        key: "--config".into(),
                        message: format!(
                            "{} does not exist; pass an existing file or omit --config",
                            path.display()
                        ),
                    });
                }
                fig = fig.merge(Toml::file(path));
            }
            None => {
                if Path::new(DEFAULT_CONFIG_FILE).exists() {
                    fig = fig.merge(Toml::file(DEFAULT_CONFIG_FILE));
                }
            }
        }
        fig = fig.merge(Env::prefixed("SWARMWISE__").split("__"));
        let mut settings: Settings = fig.extract().map_err(|e| {
            let key = e.path.join(".");
            let message = e.to_string();
            ConfigError {
                key: if key.is_empty() { "(file)".into() } else { key },
                message,
            }
        })?;
        // Configuration files named in a config file live beside it.
        relative_to_file(&fig, "workflows.dir", &mut settings.workflows.dir);
        relative_to_file(&fig, "demo.swarm_file", &mut settings.demo.swarm_file);
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            key: key.into(),
            message,
        };
        self.server.bind.parse::<SocketAddr>().map_err(|e| {
            err(
                "server.bind",
                format!(
                    "{:?} is not host:port ({e}); e.g. 127.0.0.1:8080",
                    self.server.bind
                ),
            )
        })?;
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(err(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://; e.g. sqlite://data/swarmwise.db".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(err("database.max_connections", "must be at least 1".into()));
        }
        if self.database.sqlite_checkpoint_interval_ms > 60_000 {
            return Err(err(
                "database.sqlite_checkpoint_interval_ms",
                format!(
                    "{} is out of range; use 0 to 60000 (milliseconds; 100 suits most, 0 checkpoints inside commits)",
                    self.database.sqlite_checkpoint_interval_ms
                ),
            ));
        }
        swarmwise_actors::cluster::NodeId::from_config(&self.cluster.node_id)
            .map_err(|m| err("cluster.node_id", m))?;
        if !(1..=10_000).contains(&self.redis.op_timeout_ms) {
            return Err(err(
                "redis.op_timeout_ms",
                format!(
                    "{} is out of range; use 1 to 10000 (milliseconds; 100 to 250 suits a Redis on the same network)",
                    self.redis.op_timeout_ms
                ),
            ));
        }
        if !(1..=300).contains(&self.events.heartbeat_secs) {
            return Err(err(
                "events.heartbeat_secs",
                format!(
                    "{} is out of range; use 1 to 300 (seconds; 15 to 30 keeps proxies from closing idle streams)",
                    self.events.heartbeat_secs
                ),
            ));
        }
        if self.events.max_stream_secs > 7 * 24 * 3600 {
            return Err(err(
                "events.max_stream_secs",
                format!(
                    "{} is too long; use 0 (no limit) to 604800 seconds (a week; 3600 lets clients spread over new nodes within the hour)",
                    self.events.max_stream_secs
                ),
            ));
        }
        if self.events.replay_buffer > 100_000 {
            return Err(err(
                "events.replay_buffer",
                format!(
                    "{} is too large; use 0 to 100000 events per workspace (each node keeps that many per active workspace in memory)",
                    self.events.replay_buffer
                ),
            ));
        }
        let c = &self.cluster;
        if c.sync_poll_ms != 0 && !(10..=60_000).contains(&c.sync_poll_ms) {
            return Err(err(
                "cluster.sync_poll_ms",
                format!("{} is out of range: use 10 to 60000 (milliseconds), or 0 to not follow other nodes", c.sync_poll_ms),
            ));
        }
        if !(1..=10_000).contains(&c.sync_batch) {
            return Err(err(
                "cluster.sync_batch",
                format!("{} is out of range: use 1 to 10000 rows", c.sync_batch),
            ));
        }
        if !(60..=604_800).contains(&c.sync_retention_secs) {
            return Err(err(
                "cluster.sync_retention_secs",
                format!(
                    "{} is out of range: use 60 to 604800 seconds",
                    c.sync_retention_secs
                ),
            ));
        }
        let redis = &self.redis.url;
        if !(redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            return Err(err(
                "redis.url",
                "must be empty (no Redis) or start with redis:// or rediss://".into(),
            ));
        }
        self.learner
            .agreement
            .validate()
            .map_err(|(key, message)| err(key, message))?;
        if self.tracking.batch_size == 0 {
            return Err(err("tracking.batch_size", "must be at least 1".into()));
        }
        if self.tracking.max_pending < self.tracking.batch_size as u64 {
            return Err(err(
                "tracking.max_pending",
                "must be at least tracking.batch_size".into(),
            ));
        }
        let per_workspace = self.tracking.max_pending_per_workspace;
        if per_workspace < self.limits.max_batch_items as u64 {
            return Err(err(
                "tracking.max_pending_per_workspace",
                format!(
                    "must be at least limits.max_batch_items ({}), or the largest batch could never be taken",
                    self.limits.max_batch_items
                ),
            ));
        }
        if self.tracking.max_pending_wait_ms > 60_000 {
            return Err(err(
                "tracking.max_pending_wait_ms",
                "must be at most 60000 (a request waits for buffer room at most a minute)".into(),
            ));
        }
        if !(1..=10_000).contains(&self.tracking.evaluation_batch_size) {
            return Err(err(
                "tracking.evaluation_batch_size",
                "must be between 1 and 10000".into(),
            ));
        }
        if self.tracking.read_flush_timeout_ms == 0 {
            return Err(err(
                "tracking.read_flush_timeout_ms",
                "must be at least 1".into(),
            ));
        }
        if self.tracking.retry_backoff_initial_ms == 0
            || self.tracking.retry_backoff_initial_ms > self.tracking.retry_backoff_max_ms
        {
            return Err(err(
                "tracking.retry_backoff_initial_ms",
                "must be at least 1 and not exceed tracking.retry_backoff_max_ms".into(),
            ));
        }
        if self.tracking.flush_interval_ms == 0 {
            return Err(err(
                "tracking.flush_interval_ms",
                "must be at least 1".into(),
            ));
        }
        self.trust
            .validate()
            .map_err(|e| err(&format!("trust.{}", e.field), e.message))?;
        for (kind, p) in [
            ("tracker", &self.supervision.tracker),
            ("trust_scorer", &self.supervision.trust_scorer),
        ] {
            if p.backoff_initial_ms > p.backoff_max_ms {
                return Err(err(
                    &format!("supervision.{kind}.backoff_initial_ms"),
                    "must not exceed backoff_max_ms".into(),
                ));
            }
        }
        self.scheduler
            .validate()
            .map_err(|e| err(&format!("scheduler.{}", e.field), e.message))?;
        self.retention
            .validate()
            .map_err(|e| err(&format!("retention.{}", e.field), e.message))?;
        let a = &self.agents;
        if !(0.0..=1.0).contains(&a.disable_below_trust) {
            return Err(err(
                "agents.disable_below_trust",
                "must be in [0, 1]".into(),
            ));
        }
        if a.concurrency == 0 {
            return Err(err("agents.concurrency", "must be at least 1".into()));
        }
        if a.late_grace_factor < 1.0 {
            return Err(err("agents.late_grace_factor", "must be at least 1".into()));
        }
        for (name, p) in &a.pools {
            if p.slots == 0 {
                return Err(err(
                    &format!("agents.pools.{name}.slots"),
                    "must be at least 1".into(),
                ));
            }
        }
        for kind in &a.allowed_kinds {
            if !crate::backends::KINDS.contains(&kind.as_str()) {
                return Err(err(
                    "agents.allowed_kinds",
                    format!(
                        "unknown kind {kind:?}; use any of {}",
                        crate::backends::KINDS.join(", ")
                    ),
                ));
            }
        }
        for name in &a.secret_env {
            if name.starts_with(crate::backends::policy::SETTINGS_ENV_PREFIX) || name.is_empty() {
                return Err(err(
                    "agents.secret_env",
                    format!("{name:?}: the service's own SWARMWISE__* settings can never be agent secrets; list the variables agents may read, e.g. OPENAI_API_KEY"),
                ));
            }
        }
        for (name, hosts) in &a.secret_hosts {
            if !a.secret_env.contains(name) {
                return Err(err(
                    &format!("agents.secret_hosts.{name}"),
                    format!("{name} is not in agents.secret_env; list it there too, or remove this entry"),
                ));
            }
            if hosts.iter().any(|h| h.trim().is_empty()) {
                return Err(err(
                    &format!("agents.secret_hosts.{name}"),
                    "hosts must not be empty strings".into(),
                ));
            }
        }
        for host in &a.allow_hosts {
            let h = host.trim().trim_start_matches('[').trim_end_matches(']');
            let ok = if h.contains('/') {
                h.parse::<ipnet::IpNet>().is_ok()
            } else {
                !h.is_empty() && h.parse::<std::net::IpAddr>().is_ok()
                    || url::Host::parse(h).is_ok()
            };
            if !ok {
                return Err(err(
                    "agents.allow_hosts",
                    format!("{host:?} is not a host name, an IP address or a CIDR block such as 10.0.0.0/8"),
                ));
            }
        }
        for (name, p) in &a.programs {
            if p.program.trim().is_empty() {
                return Err(err(
                    &format!("agents.programs.{name}.program"),
                    "must name an executable (a path, or a name on PATH)".into(),
                ));
            }
            if p.timeout_ms == 0 {
                return Err(err(
                    &format!("agents.programs.{name}.timeout_ms"),
                    "must be at least 1".into(),
                ));
            }
        }
        if self.workflows.default_timeout_ms == 0 {
            return Err(err(
                "workflows.default_timeout_ms",
                "must be at least 1".into(),
            ));
        }
        let w = &self.workflows;
        if !(1..=300).contains(&w.lease_secs) {
            return Err(err(
                "workflows.lease_secs",
                format!("{} is out of range: must be between 1 and 300 seconds (a run whose node died waits about this long to be taken over; the default is 15)", w.lease_secs),
            ));
        }
        if w.max_backoff_ms == 0 {
            return Err(err(
                "workflows.max_backoff_ms",
                "must be at least 1 (milliseconds)".into(),
            ));
        }
        if !(1..=swarmwise_actors::workflow::definition::MAX_APPROVAL_TIMEOUT_SECS)
            .contains(&w.approval_timeout_secs)
        {
            return Err(err(
                "workflows.approval_timeout_secs",
                format!(
                    "must be between 1 and {} seconds (30 days)",
                    swarmwise_actors::workflow::definition::MAX_APPROVAL_TIMEOUT_SECS
                ),
            ));
        }
        if !(1..=1000).contains(&w.sweep_batch) {
            return Err(err(
                "workflows.sweep_batch",
                "must be between 1 and 1000".into(),
            ));
        }
        if !(1..=10_000).contains(&w.write_batch_size) {
            return Err(err(
                "workflows.write_batch_size",
                "must be between 1 and 10000".into(),
            ));
        }
        if self.demo.enabled
            && !(self.demo.runs_per_second > 0.0 && self.demo.runs_per_second <= 1000.0)
        {
            return Err(err("demo.runs_per_second", "must be in (0, 1000]".into()));
        }
        if self.demo.enabled && self.demo.key_file.trim().is_empty() {
            return Err(err(
                "demo.key_file",
                "must name a file, e.g. data/demo.key".into(),
            ));
        }
        if !(60..=604_800).contains(&self.dashboard.session_ttl_secs) {
            return Err(err(
                "dashboard.session_ttl_secs",
                "must be between 60 and 604800 (one week)".into(),
            ));
        }
        if !(1..=10_000).contains(&self.dashboard.max_sessions_per_workspace) {
            return Err(err(
                "dashboard.max_sessions_per_workspace",
                "must be between 1 and 10000".into(),
            ));
        }
        let (red, green) = (
            self.dashboard.trust_red_below,
            self.dashboard.trust_green_from,
        );
        if !(0.0..=1.0).contains(&red) || !(0.0..=1.0).contains(&green) || red > green {
            return Err(err(
                "dashboard.trust_red_below",
                format!("trust_red_below ({red}) and trust_green_from ({green}) must be in [0, 1] with red <= green"),
            ));
        }
        if self.auth.cache_ttl_secs > 300 {
            return Err(err(
                "auth.cache_ttl_secs",
                "must be at most 300: it bounds how long a revoked key keeps working on other nodes".into(),
            ));
        }
        if !(1..=60).contains(&self.telemetry.metrics_upkeep_secs) {
            return Err(err(
                "telemetry.metrics_upkeep_secs",
                "must be between 1 and 60: histogram samples are held in memory until the upkeep folds them".into(),
            ));
        }
        if !(1..=3600).contains(&self.telemetry.stats_refresh_secs) {
            return Err(err(
                "telemetry.stats_refresh_secs",
                "must be between 1 and 3600: each refresh reads every workspace's counts, so keep it at 10 or more in production".into(),
            ));
        }
        if !(1..=10_000).contains(&self.telemetry.max_agent_series) {
            return Err(err(
                "telemetry.max_agent_series",
                "must be between 1 and 10000: it bounds the per-agent series a scrape carries; agents past it are reported as agent=\"_other\"".into(),
            ));
        }
        let token = &self.telemetry.metrics_token;
        if !token.is_empty() && (token.len() < 16 || !token.chars().all(|c| c.is_ascii_graphic())) {
            return Err(err(
                "telemetry.metrics_token",
                "must be empty (open /metrics) or at least 16 printable ASCII characters without spaces; e.g. `openssl rand -hex 24`".into(),
            ));
        }
        crate::otel::validate(&self.telemetry.otlp).map_err(|(key, message)| err(key, message))?;
        let l = &self.limits;
        if l.list_scan_rows == 0 || l.list_scan_rows > 10_000_000 {
            return Err(err(
                "limits.list_scan_rows",
                "must be between 1 and 10000000 rows".into(),
            ));
        }
        if l.default_page_size == 0 || l.default_page_size > l.max_page_size {
            return Err(err(
                "limits.default_page_size",
                "must be between 1 and limits.max_page_size".into(),
            ));
        }
        if l.max_batch_items == 0
            || l.max_content_bytes == 0
            || l.max_body_bytes < l.max_content_bytes
        {
            return Err(err(
                "limits.max_body_bytes",
                "limits must be positive and max_body_bytes >= max_content_bytes".into(),
            ));
        }
        if l.key_requests_per_second > 0 && l.key_burst < l.key_requests_per_second {
            return Err(err(
                "limits.key_burst",
                "must be at least limits.key_requests_per_second (a burst of one second's worth)"
                    .into(),
            ));
        }
        let idem = &self.idempotency;
        if !(60..=30 * 86_400).contains(&idem.ttl_secs) {
            return Err(err(
                "idempotency.ttl_secs",
                "must be between 60 and 2592000 (30 days); 86400 (a day) covers a client's retries"
                    .into(),
            ));
        }
        if !(3..=3600).contains(&idem.lease_secs) || idem.lease_secs >= idem.ttl_secs {
            return Err(err(
                "idempotency.lease_secs",
                "must be between 3 and 3600 and below idempotency.ttl_secs; 30 is the default"
                    .into(),
            ));
        }
        if !(1..=86_400).contains(&idem.purge_interval_secs) {
            return Err(err(
                "idempotency.purge_interval_secs",
                "must be between 1 and 86400".into(),
            ));
        }
        if self.agents.max_queued_tasks == 0 {
            return Err(err("agents.max_queued_tasks", "must be at least 1".into()));
        }
        crate::notify::config::validate(&self.alerts.notifiers, &self.alerts.routes)
            .map_err(|(key, message)| err(&key, message))?;
        self.alerts
            .engine()
            .validate(a.disable_below_trust, a.disable_min_samples)
            .map_err(|(key, message)| err(&key, message))?;
        self.alerts
            .quarantine
            .validate()
            .map_err(|(key, message)| err(&format!("alerts.quarantine.{key}"), message))?;
        if self.alerts.quarantine.readmit_above < a.disable_below_trust {
            return Err(err(
                "alerts.quarantine.readmit_above",
                format!(
                    "must be at least agents.disable_below_trust ({}): re-admitting below the threshold that quarantines would flap",
                    a.disable_below_trust
                ),
            ));
        }
        self.costs
            .validate()
            .map_err(|(key, message)| err(&key, message))?;
        Ok(())
    }

    /// The engine's part of the settings.
    pub fn engine(&self) -> swarmwise_actors::EngineConfig {
        swarmwise_actors::EngineConfig {
            learning_enabled: self.learning.enabled,
            tracking: self.tracking.clone(),
            trust: self.trust.clone(),
            supervision: self.supervision.clone(),
            admission: swarmwise_actors::admission::controller::AdmissionPolicy {
                quarantine: self.alerts.quarantine.clone(),
                probation_every: self.agents.probation_every,
                grace_outcomes: self.agents.disable_min_samples,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quarantine_settings_are_checked_by_key() {
        let mut s = Settings::default();
        s.alerts.quarantine.max_probations = 0;
        assert_eq!(
            s.validate().unwrap_err().key,
            "alerts.quarantine.max_probations"
        );
        let mut s = Settings::default();
        s.alerts.quarantine.readmit_above = 0.2; // below disable_below_trust 0.3
        assert_eq!(
            s.validate().unwrap_err().key,
            "alerts.quarantine.readmit_above"
        );
        s.agents.disable_below_trust = 0.2;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn a_workspace_share_of_the_write_buffer_takes_the_largest_batch() {
        let mut s = Settings::default();
        s.tracking.max_pending_per_workspace = s.limits.max_batch_items as u64 - 1;
        assert_eq!(
            s.validate().unwrap_err().key,
            "tracking.max_pending_per_workspace"
        );
        s.limits.max_batch_items -= 1;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn database_redis_and_event_stream_settings_are_bounded() {
        type Case = (fn(&mut Settings), &'static str);
        let cases: [Case; 6] = [
            (
                |s| s.database.sqlite_checkpoint_interval_ms = 60_001,
                "database.sqlite_checkpoint_interval_ms",
            ),
            (|s| s.redis.op_timeout_ms = 0, "redis.op_timeout_ms"),
            (|s| s.redis.op_timeout_ms = 10_001, "redis.op_timeout_ms"),
            (|s| s.events.heartbeat_secs = 0, "events.heartbeat_secs"),
            (
                |s| s.events.max_stream_secs = 604_801,
                "events.max_stream_secs",
            ),
            (|s| s.events.replay_buffer = 100_001, "events.replay_buffer"),
        ];
        for (set, key) in cases {
            let mut s = Settings::default();
            set(&mut s);
            assert_eq!(s.validate().unwrap_err().key, key);
        }
        let mut s = Settings::default();
        s.events.max_stream_secs = 0;
        s.events.replay_buffer = 0;
        assert!(s.validate().is_ok(), "0 = no lifetime limit, no replay");
    }

    #[test]
    fn metrics_upkeep_must_be_between_1_and_60_seconds() {
        let mut s = Settings::default();
        assert!(s.validate().is_ok());
        for bad in [0, 61] {
            s.telemetry.metrics_upkeep_secs = bad;
            assert_eq!(
                s.validate().unwrap_err().key,
                "telemetry.metrics_upkeep_secs"
            );
        }
    }

    #[test]
    fn stats_refresh_and_agent_series_cap_are_bounded() {
        let mut s = Settings::default();
        for bad in [0, 3601] {
            s.telemetry.stats_refresh_secs = bad;
            assert_eq!(
                s.validate().unwrap_err().key,
                "telemetry.stats_refresh_secs"
            );
        }
        s.telemetry.stats_refresh_secs = 60;
        for bad in [0, 10_001] {
            s.telemetry.max_agent_series = bad;
            assert_eq!(s.validate().unwrap_err().key, "telemetry.max_agent_series");
        }
        s.telemetry.max_agent_series = 200;
        for bad in ["short", "a token with spaces in it"] {
            s.telemetry.metrics_token = bad.into();
            assert_eq!(s.validate().unwrap_err().key, "telemetry.metrics_token");
        }
        s.telemetry.metrics_token = "0123456789abcdef".into();
        assert!(s.validate().is_ok());
    }
}
