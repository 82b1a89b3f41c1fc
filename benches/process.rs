//! Helpers of the benchmarks that run the built `swarmwise serve` binary as
//! processes of their own (soak, cluster): a fresh PostgreSQL database, the
//! binary's path, and a server process killed when dropped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

/// A fresh PostgreSQL database named `swarmwise_<prefix>_<pid>` → (URL,
/// name); `None` when PostgreSQL is unreachable.
pub async fn pg_database(prefix: &str) -> Option<(String, String)> {
    let base = std::env::var("SWARMWISE_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut c = PgConnection::connect(&base).await.ok()?;
    let name = format!("swarmwise_{prefix}_{}", std::process::id());
    c.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await
        .ok()?;
    c.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .ok()?;
    let i = base.rfind('/')?;
    Some((format!("{}/{name}", &base[..i]), name))
}

/// Drops a database [`pg_database`] created.
pub async fn drop_pg_database(name: &str) {
    let base = std::env::var("SWARMWISE_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    if let Ok(mut c) = PgConnection::connect(&base).await {
        let _ = c
            .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
            .await;
    }
}

/// The server binary: the one cargo built for this bench, or `SWARMWISE_SOAK_BIN`
/// (to compare a build from another commit in the same conditions).
pub fn binary() -> String {
    std::env::var("SWARMWISE_SOAK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_swarmwise").into())
}

/// The server process; killed when dropped (a panic must not leave it running).
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

impl Server {
    /// Starts `swarmwise serve` on a free port with `database_url`, the admin
    /// key `admin`, no demo (its key file in `dir`), warn-level logs, no
    /// per-key rate limit, plus `envs` (`SWARMWISE__...` pairs).
    pub fn start(
        database_url: &str,
        dir: &std::path::Path,
        admin: &str,
        envs: &[(&str, &str)],
    ) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary())
            .arg("serve")
            .env("SWARMWISE__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("SWARMWISE__DATABASE__URL", database_url)
            .env("SWARMWISE__AUTH__ADMIN_KEY", admin)
            .env("SWARMWISE__DEMO__ENABLED", "false")
            // One client key at 5k req/s: the per-key limit would measure itself.
            .env("SWARMWISE__LIMITS__KEY_REQUESTS_PER_SECOND", "0")
            .env(
                "SWARMWISE__DEMO__KEY_FILE",
                dir.join("demo.key").display().to_string(),
            )
            .env("SWARMWISE__TELEMETRY__LOG_LEVEL", "warn")
            .env_remove("RUST_LOG")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the swarmwise binary");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits for `/readyz` (fails after 60 s, or when the process exits).
    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited before it was ready: {status}");
            }
            assert!(Instant::now() < deadline, "server not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then wait for the graceful drain (killed after 60 s).
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("server did not stop within 60 s of SIGTERM; killing it");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
