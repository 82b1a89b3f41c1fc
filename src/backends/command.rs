//! `command` agents: run a program the operator declared in
//! `[agents.programs.NAME]`, with the task as JSON on stdin, and read
//! `{content, confidence, reasoning?}` from stdout.
//!
//! A registration names the program (`"program": "NAME"`) and may shorten its
//! timeout; it never supplies a path, arguments or environment. The program
//! runs in its own process group without the service's `SWARMWISE__*`
//! settings in its environment, and the whole group (children and
//! grandchildren) is killed when the task ends: on timeout, when the caller
//! stops waiting (the stage deadline, cancellation, shutdown), and after a
//! normal exit, so nothing a task started outlives it.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use swarmwise_actors::agent::backend::{
    parse_answer, AgentAnswer, AgentBackend, BackendError, Task,
};
use swarmwise_actors::domain::ParseError;
use swarmwise_actors::swarm::ProgramConfig;
use tokio::io::AsyncWriteExt;

use super::policy::{AgentPolicy, SETTINGS_ENV_PREFIX};

/// Config of a `command` agent, as registered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The name of a program in `[agents.programs]`.
    pub program: String,
    /// Kill it after this many milliseconds (at most the program's own
    /// `timeout_ms`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The backend.
#[derive(Debug, Clone)]
pub struct Command {
    name: String,
    program: ProgramConfig,
    timeout: Duration,
    limits: super::AnswerLimits,
}

/// Most bytes of a program's stderr quoted in an error.
const STDERR_BYTES: usize = 4096;

/// Reads at most `cap + 1` bytes of a pipe (one more than allowed tells the
/// output was too large); the pipe is then closed, so a program writing
/// without end stops on SIGPIPE.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>, cap: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(cap as u64 + 1).read_to_end(&mut out).await;
    }
    out
}

impl Command {
    /// Resolves the program by name under the policy.
    pub fn new(
        policy: &AgentPolicy,
        limits: super::AnswerLimits,
        config: CommandConfig,
    ) -> Result<Self, ParseError> {
        if config.program.trim().is_empty() {
            return Err(ParseError::new("config.program", "must not be empty"));
        }
        let program = policy.program("config.program", &config.program)?.clone();
        let timeout_ms = config
            .timeout_ms
            .map_or(program.timeout_ms, |t| t.min(program.timeout_ms));
        if timeout_ms == 0 {
            return Err(ParseError::new("config.timeout_ms", "must be at least 1"));
        }
        Ok(Self {
            name: config.program,
            program,
            timeout: Duration::from_millis(timeout_ms),
            limits,
        })
    }
}

/// Kills a process group when dropped: every path out of `execute` (answer,
/// error, timeout, or the future being dropped by a deadline) ends what the
/// task started.
struct GroupGuard(Option<nix::unistd::Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // ESRCH (nothing left in the group) is the normal case.
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[async_trait]
impl AgentBackend for Command {
    async fn execute(&self, task: &Task) -> Result<AgentAnswer, BackendError> {
        let mut cmd = tokio::process::Command::new(&self.program.program);
        cmd.args(&self.program.args)
            .envs(&self.program.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own group (pgid = its pid), so one signal reaches every descendant.
            .process_group(0);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with(SETTINGS_ENV_PREFIX) {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            BackendError::Failed(format!("could not start program {:?}: {e}", self.name))
        })?;
        let _group = GroupGuard(
            child
                .id()
                .and_then(|pid| i32::try_from(pid).ok())
                .map(nix::unistd::Pid::from_raw),
        );
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
        let cap = self.limits.max_answer_bytes;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let run = async {
            let (out, err, status) = tokio::join!(
                read_capped(stdout, cap),
                read_capped(stderr, STDERR_BYTES),
                child.wait()
            );
            (out, err, status)
        };
        let (stdout, stderr, status) = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| BackendError::Timeout)?;
        let status = status
            .map_err(|e| BackendError::Failed(format!("waiting for {:?}: {e}", self.name)))?;
        if stdout.len() > cap {
            return Err(BackendError::InvalidAnswer(format!(
                "program {:?} printed more than limits.max_body_bytes = {cap} bytes",
                self.name
            )));
        }
        if !status.success() {
            let err = String::from_utf8_lossy(&stderr);
            return Err(BackendError::Failed(format!(
                "program {:?} exited with {}: {}",
                self.name,
                status,
                err.chars().take(200).collect::<String>()
            )));
        }
        let value: serde_json::Value = serde_json::from_slice(&stdout).map_err(|e| {
            BackendError::InvalidAnswer(format!(
                "stdout is not JSON ({e}); print {{content, confidence, reasoning}}"
            ))
        })?;
        self.limits.check(parse_answer(value)?)
    }
}
