//! Workflow definitions: every `*.toml` in `workflows.dir`, or the built-in
//! ones ([`crate::assets::WORKFLOWS`]) when the folder does not exist. Read
//! and checked at start, before any actor runs.

use std::path::Path;

use anyhow::Context as _;
use swarmwise_actors::workflow::WorkflowDef;

/// Reads every `*.toml` in `dir` (sorted). A folder that does not exist
/// means the built-in workflows ([`crate::assets::WORKFLOWS`]).
pub fn load_definitions(dir: &str) -> anyhow::Result<Vec<WorkflowDef>> {
    let path = Path::new(dir);
    let sources: Vec<(String, String)> = if path.exists() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading workflows.dir {dir}"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|f| {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?;
                Ok((f.display().to_string(), text))
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        tracing::info!(
            dir,
            "workflows.dir not found: using the built-in workflows (`swarmwise init` writes editable copies)"
        );
        crate::assets::WORKFLOWS
            .iter()
            .map(|(name, text)| (format!("built-in {name}"), (*text).to_owned()))
            .collect()
    };
    let mut defs: Vec<WorkflowDef> = Vec::new();
    for (origin, text) in sources {
        let def: WorkflowDef = toml::from_str(&text)
            .with_context(|| format!("{origin}: not a valid workflow definition"))?;
        def.validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        if defs.iter().any(|d| d.name == def.name) {
            anyhow::bail!("{origin}: a workflow named {:?} is defined twice", def.name);
        }
        defs.push(def);
    }
    Ok(defs)
}
