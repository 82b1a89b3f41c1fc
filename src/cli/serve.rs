//! `swarmwise serve`: build the application, print where it listens and how
//! to reach it, run until a signal; and the malloc-arena cap it starts with.

use crate::config::Settings;
use crate::startup::Application;

/// Caps glibc's malloc arenas for the server: glibc reads `MALLOC_ARENA_MAX`
/// only at start, so the binary re-executes itself once with it set (same
/// pid, arguments and environment otherwise). Does nothing when `max` is 0,
/// when the variable is already set (an operator's choice, or the
/// re-executed process), or off glibc. If the re-execution fails the server
/// runs with the default arenas.
pub(super) fn limit_malloc_arenas(max: u32) {
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

/// Builds and runs the service until SIGINT/SIGTERM.
pub(super) async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings.clone()).await?;
    println!("swarmwise listening on http://{}", app.address());
    println!(
        "  database: {}",
        crate::store::redact(&settings.database.url)
    );
    if app.admin_key_generated() {
        println!("  admin key (generated for this run; set auth.admin_key or SWARMWISE__AUTH__ADMIN_KEY to keep one): {}", app.admin_key());
    } else {
        // A configured key is a secret the operator already has: never echo it.
        println!(
            "  admin key: configured (fingerprint {}, the first 8 hex digits of its SHA-256)",
            crate::auth::fingerprint(app.admin_key())
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
