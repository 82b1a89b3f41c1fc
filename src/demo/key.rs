//! The demo workspace's API key, kept across restarts.
//!
//! The database stores only a key's hash, yet the demo prints its key at
//! every start, so the key itself must live somewhere: in `demo.key_file`
//! (default `data/demo.key`, beside the SQLite file), created with mode 0600
//! and replaced atomically. At start the file's key is used when the
//! database knows it for the demo workspace; added when the database does
//! not know it (a new database); and replaced by a fresh key when it was
//! revoked (an operator revoked the demo key: it never comes back). We chose
//! a file over deriving the key from a stored secret because the secret
//! would itself need the same protection, and a file is what an operator
//! expects to delete to get a new key.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use chrono::Utc;
use serde_json::json;
use swarmwise_actors::domain::{to_micros, WorkspaceId};
use swarmwise_actors::ports::StoreError;

use crate::audit;
use crate::auth::{generate_key, hash_key, stored_form, Caller};
use crate::routes::workspaces::KEY_PREFIX;
use crate::store::{AdminStore, NewApiKey};

/// The demo workspace (created if missing, named "demo") and its key.
pub async fn ensure(
    store: &dyn AdminStore,
    ws: WorkspaceId,
    key_file: &str,
) -> anyhow::Result<String> {
    let path = Path::new(key_file);
    let exists = store.workspace(ws).await?.is_some();
    let from_file = read(path)?;
    if let Some(key) = &from_file {
        if store.workspace_for_key(&hash_key(key)).await? == Some(ws) {
            return Ok(key.clone());
        }
        // Unknown here: a new database. Add it; a conflict means the hash is
        // taken, i.e. the key was revoked, and a new one replaces it.
        let stored = stored_form(key, KEY_PREFIX.len());
        match add(store, ws, exists, &stored).await {
            Ok(()) => return Ok(key.clone()),
            Err(StoreError::Conflict(_)) => {
                tracing::warn!(
                    file = key_file,
                    "the demo key in the file was revoked; a new one replaces it"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (key, stored) = generate_key(KEY_PREFIX);
    write(path, &key)?;
    add(store, ws, exists, &stored).await?;
    Ok(key)
}

/// Adds the key (creating the workspace with it when missing) and audits it.
async fn add(
    store: &dyn AdminStore,
    ws: WorkspaceId,
    exists: bool,
    stored: &NewApiKey,
) -> Result<(), StoreError> {
    let at = to_micros(Utc::now());
    if exists {
        store.add_api_key(ws, stored, at).await?;
    } else {
        store.create_workspace(ws, "demo", stored, at).await?;
        audit::record(
            store,
            Caller::Admin,
            audit::actions::WORKSPACE_CREATE,
            Some(ws),
            &ws.to_string(),
            json!({"name": "demo", "source": "demo"}),
        )
        .await;
    }
    audit::record(
        store,
        Caller::Admin,
        audit::actions::API_KEY_CREATE,
        Some(ws),
        &stored.id.to_string(),
        json!({"prefix": stored.prefix, "source": "demo"}),
    )
    .await;
    Ok(())
}

/// The key in the file, if there is one.
fn read(path: &Path) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("reading demo.key_file {}", path.display()))
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %path.display(), "the demo key file is readable by others; chmod 600 it");
            }
        }
    }
    let key = text.trim();
    let well_formed = key
        .strip_prefix(KEY_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        anyhow::bail!(
            "demo.key_file {} does not hold a workspace key ({KEY_PREFIX} and 64 hex digits); delete it to get a new one",
            path.display()
        );
    }
    Ok(Some(key.to_owned()))
}

/// Writes the key to the file, mode 0600, replacing it atomically.
fn write(path: &Path, key: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("creating the folder of demo.key_file {}", path.display())
            })?;
        }
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("writing demo.key_file {}", tmp.display()))?;
    writeln!(file, "{key}")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("writing demo.key_file {}", path.display()))?;
    Ok(())
}
