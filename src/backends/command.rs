//! `command` agents: run a local program with the task as JSON on stdin and
//! read `{content, confidence, reasoning?}` from stdout. Past the timeout the
//! process is killed.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use swarmwise_actors::agent::backend::{
    parse_answer, AgentAnswer, AgentBackend, BackendError, Task,
};
use swarmwise_actors::domain::ParseError;
use tokio::io::AsyncWriteExt;

/// Config of a `command` agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The program (a path, or a name on PATH).
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill it after this many milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    60_000
}

/// The backend.
#[derive(Debug, Clone)]
pub struct Command {
    config: CommandConfig,
}

impl Command {
    /// Validates the config.
    pub fn new(config: CommandConfig) -> Result<Self, ParseError> {
        if config.program.trim().is_empty() {
            return Err(ParseError::new("config.program", "must not be empty"));
        }
        Ok(Self { config })
    }
}

#[async_trait]
impl AgentBackend for Command {
    async fn execute(&self, task: &Task) -> Result<AgentAnswer, BackendError> {
        let mut child = tokio::process::Command::new(&self.config.program)
            .args(&self.config.args)
            .envs(&self.config.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                BackendError::Failed(format!("could not start {:?}: {e}", self.config.program))
            })?;
        let input = serde_json::to_vec(task).map_err(|e| BackendError::Failed(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A program may answer without reading its input: a closed pipe is fine.
            match stdin.write_all(&input).await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(BackendError::Failed(format!(
                        "could not write the task to stdin: {e}"
                    )));
                }
                _ => {}
            }
        }
        let out = tokio::time::timeout(
            Duration::from_millis(self.config.timeout_ms),
            child.wait_with_output(),
        )
        .await
        .map_err(|_| BackendError::Timeout)?
        .map_err(|e| BackendError::Failed(format!("waiting for {:?}: {e}", self.config.program)))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(BackendError::Failed(format!(
                "{:?} exited with {}: {}",
                self.config.program,
                out.status,
                err.chars().take(200).collect::<String>()
            )));
        }
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            BackendError::InvalidAnswer(format!(
                "stdout is not JSON ({e}); print {{content, confidence, reasoning}}"
            ))
        })?;
        parse_answer(value)
    }
}
