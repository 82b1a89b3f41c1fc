//! The `swarmwise` binary: `serve`, `migrate`, `check-config`.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("fix the key in the config file or its SWARMWISE__... environment variable, then retry");
            return ExitCode::from(2);
        }
    };
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
        Command::Serve => actix_web::rt::System::new().block_on(serve(settings)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
        println!("  admin key (configured): {}", app.admin_key());
    }
    if let Some(key) = app.demo_key() {
        println!(
            "  demo: a simulated swarm runs {} in workspace \"demo\"; watch it learn with\n        curl -s http://{}/api/v1/learning/trust-scores -H 'Authorization: Bearer {key}'",
            settings.demo.workflow,
            app.address()
        );
    }
    println!("  try: curl -s -X POST http://{}/api/v1/workspaces -H 'Authorization: Bearer <admin key>' -H 'Content-Type: application/json' -d '{{\"name\":\"demo\"}}'", app.address());
    app.run().await
}
