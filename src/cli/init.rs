//! `swarmwise init [DIR]`: write editable copies of the built-in config,
//! workflows and demo swarm (see [`crate::assets::init`]).

use std::path::Path;
use std::process::ExitCode;

/// Writes the files and says what to do next; an error is printed with its
/// cause chain and exits 1.
pub(super) fn run(dir: &Path, force: bool) -> ExitCode {
    match crate::assets::init(dir, force) {
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
    }
}
