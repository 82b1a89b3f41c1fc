//! What the binary carries so that it stands alone: the documented default
//! configuration, the shipped workflow definitions and the demo swarm,
//! compiled in from `config/`.
//!
//! Files on disk override them: a `workflows.dir` folder that exists
//! replaces the built-in workflows, a `demo.swarm_file` that exists replaces
//! the built-in demo swarm. `swarmwise init [DIR]` writes editable copies of
//! all three (see [`init`]).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// `config/default.toml`, every knob with its comment.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// The shipped workflow definitions: (file name, TOML).
pub const WORKFLOWS: &[(&str, &str)] = &[
    (
        "move_creation.toml",
        include_str!("../config/workflows/move_creation.toml"),
    ),
    (
        "quick_strategy.toml",
        include_str!("../config/workflows/quick_strategy.toml"),
    ),
];

/// `config/demo/swarm.toml`, the demo's simulated agents.
pub const DEMO_SWARM: &str = include_str!("../config/demo/swarm.toml");

/// Writes `DIR/config/default.toml`, `DIR/config/workflows/*.toml` and
/// `DIR/config/demo/swarm.toml`; refuses to overwrite an existing file unless
/// `force`. Returns the files written.
pub fn init(dir: &Path, force: bool) -> anyhow::Result<Vec<PathBuf>> {
    let config = dir.join("config");
    let mut files: Vec<(PathBuf, &str)> = vec![
        (config.join("default.toml"), DEFAULT_CONFIG),
        (config.join("demo").join("swarm.toml"), DEMO_SWARM),
    ];
    for (name, text) in WORKFLOWS {
        files.push((config.join("workflows").join(name), text));
    }
    if !force {
        if let Some((existing, _)) = files.iter().find(|(p, _)| p.exists()) {
            anyhow::bail!(
                "{} already exists; edit it, or pass --force to overwrite the shipped files",
                existing.display()
            );
        }
    }
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every shipped workflow file is compiled in.
    #[test]
    fn every_shipped_workflow_is_built_in() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/workflows");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut built_in: Vec<String> = WORKFLOWS.iter().map(|(n, _)| (*n).to_owned()).collect();
        built_in.sort();
        assert_eq!(on_disk, built_in);
    }

    #[test]
    fn init_writes_copies_and_does_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let written = init(dir.path(), false).unwrap();
        assert_eq!(written.len(), 2 + WORKFLOWS.len());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("config/default.toml")).unwrap(),
            DEFAULT_CONFIG
        );
        let e = init(dir.path(), false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert!(init(dir.path(), true).is_ok());
    }
}
