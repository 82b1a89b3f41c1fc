//! The `swarmwise` command line: `serve`, `migrate`, `check-config`,
//! `schedule`, `learn`, `alerts`, `retention`, `init`. `main.rs` calls [`run`]; each
//! command with more than a few lines has its own module (`serve`,
//! `check_config`, `schedule`, `learn`, `alerts`, `init`).

mod alerts;
mod check_config;
mod init;
mod learn;
mod retention;
mod schedule;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Settings;
use clap::{Parser, Subcommand};

/// Swarmwise: a self-improving orchestration runtime for swarms of AI agents.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Default: config/default.toml when it exists, else built-in defaults.
    /// Any key can be overridden by SWARMWISE__SECTION__KEY, e.g. SWARMWISE__SERVER__BIND=0.0.0.0:8080.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: migrate (unless database.migrate = false), start the actors,
    /// serve the API on server.bind, print the admin key; SIGINT/SIGTERM flush and exit.
    Serve,
    /// Apply database migrations to database.url and exit.
    Migrate,
    /// Validate the configuration and print the effective settings; on error name the offending key.
    CheckConfig,
    /// List the scheduled jobs (learning cycle, trust recompute, outcome trigger) with their next run times (UTC).
    Schedule,
    /// Write editable copies of the default config, the shipped workflows and the demo swarm
    /// to DIR/config/ (default: the current folder); `swarmwise serve` run in DIR uses them.
    Init {
        /// Where to write `config/` (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
    /// Run one learning cycle for a workspace now, with a progress bar, and print its report.
    Learn {
        /// The workspace id (from POST /api/v1/workspaces).
        #[arg(long)]
        workspace: uuid::Uuid,
    },
    /// List alerts, newest first, read from database.url: every workspace's and the
    /// node-level ones, or one workspace's.
    Alerts {
        /// firing, resolved or all.
        #[arg(long, default_value = "all")]
        status: String,
        /// Only this workspace's alerts (its id).
        #[arg(long)]
        workspace: Option<uuid::Uuid>,
        /// At most this many (up to alerts.max_alerts_listed).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove (or archive, retention.mode) settled recommendations older than
    /// retention.max_age_days in every workspace now, in batches, printing progress and
    /// the counts per workspace; runs whether or not retention.enabled is set.
    Retention {
        /// Count what would go, per workspace, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Parses the command line, runs the command, and returns the exit status:
/// 0 on success, 2 for a configuration that does not load, 1 for any other
/// error (its whole cause chain on stderr).
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Init { dir, force }) = &cli.command {
        return init::run(dir, *force);
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("fix the key in the config file or its SWARMWISE__... environment variable, then retry");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, None | Some(Command::Serve)) {
        serve::limit_malloc_arenas(settings.server.malloc_arena_max);
    }
    let exporting = crate::telemetry::init(&settings.telemetry);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config::check_config(&settings),
        Command::Migrate => actix_web::rt::System::new().block_on(async {
            crate::store::migrate(&settings.database).await?;
            println!(
                "migrations applied to {}",
                crate::store::redact(&settings.database.url)
            );
            Ok(())
        }),
        Command::Serve => {
            let system = actix_web::rt::System::new();
            let result = system.block_on(serve::serve(settings));
            if result.is_err() {
                // Start-up checks run before any actor starts; should a later
                // step still fail, actors hold actix timers that panic when
                // dropped outside the runtime. The process exits right after
                // printing the error, so the runtime is not dropped.
                std::mem::forget(system);
            }
            result
        }
        Command::Schedule => {
            schedule::print(&settings);
            Ok(())
        }
        Command::Learn { workspace } => {
            actix_web::rt::System::new().block_on(learn::learn(settings, workspace))
        }
        Command::Alerts {
            status,
            workspace,
            limit,
            json,
        } => actix_web::rt::System::new().block_on(alerts::alerts(
            settings,
            alerts::AlertsArgs {
                status: Some(status),
                workspace,
                limit,
                json,
            },
        )),
        Command::Retention { dry_run } => {
            actix_web::rt::System::new().block_on(retention::retention(settings, dry_run))
        }
        Command::Init { .. } => Ok(()),
    };
    if let Some(exporting) = exporting {
        exporting.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
