//! The `swarmwise` binary: `serve`, `migrate`, `check-config`, `schedule`,
//! `learn`, `init`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use swarmwise::config::Settings;
use swarmwise::startup::Application;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Init { dir, force }) = &cli.command {
        return match swarmwise::assets::init(dir, *force) {
            Ok(files) => {
                for f in &files {
                    println!("wrote {}", f.display());
                }
                println!(
                    "edit them, then run `swarmwise serve` in {} (or pass --config {})",
                    dir.display(),
                    dir.join("config").join("default.toml").display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
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
        limit_malloc_arenas(settings.server.malloc_arena_max);
    }
    swarmwise::telemetry::init_logging(&settings.telemetry.log_level);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config(&settings),
        Command::Migrate => actix_web::rt::System::new().block_on(async {
            swarmwise::store::migrate(&settings.database).await?;
            println!(
                "migrations applied to {}",
                swarmwise::store::redact(&settings.database.url)
            );
            Ok(())
        }),
        Command::Serve => {
            let system = actix_web::rt::System::new();
            let result = system.block_on(serve(settings));
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
            for job in settings
                .scheduler
                .jobs(chrono::Utc::now(), settings.learning.cycle_every_outcomes)
            {
                let next = job.next_run.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                );
                println!(
                    "{:<28} {:<24} next: {:<24} {}",
                    job.name, job.schedule, next, job.description
                );
            }
            if !settings.scheduler.enabled {
                println!("(scheduler.enabled = false: the cron jobs do not run)");
            }
            Ok(())
        }
        Command::Learn { workspace } => {
            actix_web::rt::System::new().block_on(learn(settings, workspace))
        }
        Command::Init { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Caps glibc's malloc arenas for the server: glibc reads `MALLOC_ARENA_MAX`
/// only at start, so the binary re-executes itself once with it set (same
/// pid, arguments and environment otherwise). Does nothing when `max` is 0,
/// when the variable is already set (an operator's choice, or the
/// re-executed process), or off glibc. If the re-execution fails the server
/// runs with the default arenas.
fn limit_malloc_arenas(max: u32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt as _;
        if max == 0 || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("MALLOC_ARENA_MAX", max.to_string())
            .exec();
        eprintln!("warning: could not re-execute with MALLOC_ARENA_MAX={max} ({err}); running with the default malloc arenas");
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = max;
}

fn check_config(settings: &Settings) -> anyhow::Result<()> {
    let mut shown = settings.clone();
    if !shown.auth.admin_key.is_empty() {
        shown.auth.admin_key = "***".into();
    }
    shown.database.url = swarmwise::store::redact(&shown.database.url);
    println!("{}", toml_like(&serde_json::to_value(&shown)?));
    println!("configuration OK");
    Ok(())
}

/// Prints settings as `section.key = value` lines.
fn toml_like(v: &serde_json::Value) -> String {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            other => out.push(format!("{prefix} = {other}")),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.join("\n")
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings.clone()).await?;
    println!("swarmwise listening on http://{}", app.address());
    println!(
        "  database: {}",
        swarmwise::store::redact(&settings.database.url)
    );
    if app.admin_key_generated() {
        println!("  admin key (generated for this run; set auth.admin_key or SWARMWISE__AUTH__ADMIN_KEY to keep one): {}", app.admin_key());
    } else {
        // A configured key is a secret the operator already has: never echo it.
        println!(
            "  admin key: configured (fingerprint {}, the first 8 hex digits of its SHA-256)",
            swarmwise::auth::fingerprint(app.admin_key())
        );
    }
    if let Some(key) = app.demo_key() {
        println!(
            "  demo: a simulated swarm runs {} in workspace \"demo\" (its key is kept in {}); watch it learn with\n        curl -s http://{}/api/v1/learning/trust-scores -H 'Authorization: Bearer {key}'",
            settings.demo.workflow,
            settings.demo.key_file,
            app.address()
        );
    }
    println!("  try: curl -s -X POST http://{}/api/v1/workspaces -H 'Authorization: Bearer <admin key>' -H 'Content-Type: application/json' -d '{{\"name\":\"demo\"}}'", app.address());
    app.run().await
}

async fn learn(settings: Settings, workspace: uuid::Uuid) -> anyhow::Result<()> {
    use std::sync::Arc;
    let store = swarmwise::store::connect(&settings.database).await?;
    let ws = swarmwise_actors::domain::WorkspaceId(workspace);
    if !store.workspace_ids().await?.contains(&ws) {
        anyhow::bail!(
            "workspace {workspace} does not exist in {}; create one with POST /api/v1/workspaces",
            swarmwise::store::redact(&settings.database.url)
        );
    }
    let engine = swarmwise_actors::Engine::start(store.clone(), settings.engine());
    let bar = indicatif::ProgressBar::new(4);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("loading trust");
    engine.trust_settled().await?;
    bar.inc(1);
    let b = bar.clone();
    let progress: swarmwise_actors::learner::actor::Progress = Arc::new(move |m: &str| {
        b.set_message(m.to_owned());
        b.inc(1);
    });
    let report = swarmwise_actors::learner::actor::cycle(
        store,
        engine,
        Arc::new(settings.learner.clone()),
        ws,
        "cli".into(),
        progress,
        Default::default(),
    )
    .await?;
    bar.finish_with_message("done");
    println!("cycle {} {}", report.id, report.status);
    println!(
        "  outcomes {} | patterns discovered {}, confirmed {}, retired {} | rules updated {}",
        report.recommendations_processed,
        report.patterns_discovered,
        report.patterns_confirmed,
        report.patterns_retired,
        report.rules_updated
    );
    if let (Some(a), Some(c)) = (report.model_accuracy, report.coverage) {
        println!(
            "  model accuracy {:.1}% (held out), coverage {:.1}%",
            100.0 * a,
            100.0 * c
        );
    }
    for key in ["key_insights", "recommended_actions"] {
        if let Some(items) = report.insights.get(key).and_then(|v| v.as_array()) {
            println!("  {}:", key.replace('_', " "));
            for i in items {
                println!("    - {}", i.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}
